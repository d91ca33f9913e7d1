"""FFHQ-style alignment of real photos: face detection -> eye and mouth landmarks -> oriented crop -> 256x256.

The generator only ever rendered faces framed the FFHQ way (eyes level, at a fixed height, the face filling the
frame), so a real photo must be framed the same way before it is encoded. The framing is the FFHQ dataset script's:
from the two eye centres and the mouth centre it builds an oriented square (`ffhq_quad`) and resamples it
(`warp_quad`). The landmarks come from the ported MediaPipe BlazeFace detector (boxes and six key points) refined,
when available, by the ported face mesh (468 points, whose eye contours and mouth corners give the same three
points more precisely).

`align_image` is the entry point; it raises `NoFaceError` when a photo has no face, and returns every face found
(largest first) so the caller can use the largest or list each.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import numpy as np
from PIL import Image

from disentangle_jax import errors

OUTPUT_SIZE = 256


class NoFaceError(errors.UserError, ValueError):
  """The detector found no face in a photo; the message names the photo."""


@dataclasses.dataclass(frozen=True)
class FaceLandmarks:
  """The three points the FFHQ framing needs, in input-image pixels (x, y), plus where the face was found."""

  eye_left: np.ndarray  # centre of the eye on the image's left (the subject's right eye)
  eye_right: np.ndarray
  mouth: np.ndarray  # centre of the mouth (mean of the two corners)
  box: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(4))  # x0, y0, x1, y1
  score: float = 1.0

  @property
  def area(self) -> float:
    return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


@dataclasses.dataclass(frozen=True)
class AlignedFace:
  image: np.ndarray  # uint8 [size, size, 3]
  quad: np.ndarray  # [4, 2] the source quadrilateral: upper-left, lower-left, lower-right, upper-right
  landmarks: FaceLandmarks


class FaceLocator(Protocol):
  """Finds faces in a uint8 RGB image and returns their framing landmarks (any order)."""

  def __call__(self, image: np.ndarray) -> list[FaceLandmarks]: ...


# ---------------------------------------------------------------------------------------------------------------
# Geometry.
# ---------------------------------------------------------------------------------------------------------------


def ffhq_quad(eye_left: np.ndarray, eye_right: np.ndarray, mouth: np.ndarray) -> np.ndarray:
  """The FFHQ crop square from the eye centres and the mouth centre, as a quad [4, 2] in (x, y) pixels.

  The square's horizontal axis follows the eye line corrected by the eye-to-mouth direction, its half-size is the
  larger of twice the eye distance and 1.8 times the eye-to-mouth distance, and its centre sits a tenth of the way
  from the eyes to the mouth: exactly the FFHQ dataset script's construction.
  """
  eye_left, eye_right, mouth = (np.asarray(p, np.float64) for p in (eye_left, eye_right, mouth))
  eye_avg = (eye_left + eye_right) * 0.5
  eye_to_eye = eye_right - eye_left
  eye_to_mouth = mouth - eye_avg
  x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
  norm = np.hypot(*x)
  if not np.isfinite(norm) or norm < 1e-6:
    raise ValueError(f"degenerate face landmarks: eyes {eye_left}, {eye_right}, mouth {mouth}")
  x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
  y = np.flipud(x) * [-1, 1]
  c = eye_avg + eye_to_mouth * 0.1
  return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_to_affine(quad: np.ndarray, size: int) -> np.ndarray:
  """The 2x3 matrix A with input_xy = A @ [u, v, 1] for output pixel coordinates (u, v) in [0, size]."""
  ul, ll, _, ur = np.asarray(quad, np.float64)
  return np.stack([(ur - ul) / size, (ll - ul) / size, ul], axis=1)


def to_aligned(points: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
  """Maps input-image points [..., 2] into the aligned crop's pixel coordinates."""
  a = quad_to_affine(quad, size)
  return (np.asarray(points, np.float64) - a[:, 2]) @ np.linalg.inv(a[:, :2]).T


def warp_quad(image: np.ndarray, quad: np.ndarray, size: int = OUTPUT_SIZE, supersample: int = 2) -> np.ndarray:
  """Resamples the quad of a uint8 RGB image into a `size` x `size` square, the FFHQ way.

  A much larger source is first shrunk (so bilinear sampling does not alias), the part of the quad outside the
  photo is filled by reflection (the generator never saw flat borders), and the square is rendered at
  `supersample` times the size and reduced with a Lanczos filter.
  """
  img = Image.fromarray(np.asarray(image, np.uint8))
  quad = np.asarray(quad, np.float64).copy()
  qsize = np.hypot(*(quad[3] - quad[0]))
  shrink = int(np.floor(qsize / size * 0.5))
  if shrink > 1:
    img = img.resize((int(np.rint(img.size[0] / shrink)), int(np.rint(img.size[1] / shrink))), Image.Resampling.LANCZOS)
    quad /= shrink
    qsize /= shrink
  border = max(int(np.rint(qsize * 0.1)), 3)
  # Crop to the quad's bounding box (plus a border) to keep the padding small.
  x0, y0 = np.floor(quad.min(axis=0)).astype(int) - border
  x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + border
  cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, img.size[0]), min(y1, img.size[1])
  if cx1 <= cx0 or cy1 <= cy0:
    raise ValueError(f"the face quad {quad.tolist()} lies outside the {img.size[0]}x{img.size[1]} image")
  arr = np.asarray(img.crop((cx0, cy0, cx1, cy1)))
  quad -= (cx0, cy0)
  # Reflect-pad what the quad needs beyond the photo.
  pad = (max(cx0 - x0, 0), max(cy0 - y0, 0), max(x1 - cx1, 0), max(y1 - cy1, 0))
  if any(pad):
    arr = _reflect_pad(arr, pad)
    quad += (pad[0], pad[1])
  render = size * max(1, supersample)
  out = Image.fromarray(arr).transform(
    (render, render), Image.Transform.QUAD, tuple((quad + 0.5).flatten()), Image.Resampling.BILINEAR
  )
  if render != size:
    out = out.resize((size, size), Image.Resampling.LANCZOS)
  return np.asarray(out, np.uint8)


def _reflect_pad(arr: np.ndarray, pad: tuple[int, int, int, int]) -> np.ndarray:
  """Reflect-pads [H, W, 3] by (left, top, right, bottom), repeating the reflection when the pad exceeds the size."""
  left, top, right, bottom = pad
  while left or top or right or bottom:
    h, w = arr.shape[:2]
    step = (min(left, w - 1), min(top, h - 1), min(right, w - 1), min(bottom, h - 1))
    if not any(step):  # a one-pixel image: nothing to reflect, repeat the edge
      return np.pad(arr, ((top, bottom), (left, right), (0, 0)), mode="edge")
    arr = np.pad(arr, ((step[1], step[3]), (step[0], step[2]), (0, 0)), mode="reflect")
    left, top, right, bottom = left - step[0], top - step[1], right - step[2], bottom - step[3]
  return arr


def align_face(image: np.ndarray, face: FaceLandmarks, size: int = OUTPUT_SIZE) -> AlignedFace:
  """Aligns one face given its landmarks."""
  quad = ffhq_quad(face.eye_left, face.eye_right, face.mouth)
  return AlignedFace(warp_quad(image, quad, size), quad, face)


# ---------------------------------------------------------------------------------------------------------------
# Detection.
# ---------------------------------------------------------------------------------------------------------------


def align_image(
  image: np.ndarray,
  locator: FaceLocator | Callable[[np.ndarray], list[FaceLandmarks]],
  size: int = OUTPUT_SIZE,
  name: str = "image",
  all_faces: bool = False,
) -> list[AlignedFace]:
  """Detects, frames and crops the faces of a uint8 RGB photo.

  Args:
    image: uint8 [H, W, 3].
    locator: finds faces (e.g. `MediaPipeLocator`).
    size: output side in pixels.
    name: the photo's name, for the error message.
    all_faces: return every face (largest first); otherwise only the largest.

  Raises:
    NoFaceError: no face was found.
  """
  faces = sorted(locator(image), key=lambda f: -f.area)
  if not faces:
    raise NoFaceError(
      f"{name}: no face found (a {image.shape[1]}x{image.shape[0]} photo); use a photo with a "
      "clearly visible, roughly frontal face"
    )
  return [align_face(image, f, size) for f in (faces if all_faces else faces[:1])]


def describe(faces: list[AlignedFace]) -> str:
  """One line per face: index, box, score, as `--all-faces` prints them."""
  lines = []
  for i, f in enumerate(faces):
    x0, y0, x1, y1 = (float(v) for v in f.landmarks.box)
    lines.append(
      f"face {i}: box ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) "
      f"{x1 - x0:.0f}x{y1 - y0:.0f}px, score {f.landmarks.score:.2f}"
    )
  return "\n".join(lines)
