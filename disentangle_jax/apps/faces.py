"""Finding faces and their framing landmarks in real photos: ported MediaPipe BlazeFace, refined by the face mesh.

MediaPipe's own pipeline, re-expressed with the ported networks (`third_party/mediapipe_facemesh`):
  1. BlazeFace (short range) finds face boxes and six key points (eyes, nose, mouth centre, ears).
  2. Each face is cropped the way MediaPipe's face-landmark graph crops it: a square 1.5 times the box's longer
     side, rotated so the eye line is level, resampled to the mesh's 192x192 input.
  3. The face mesh gives 468 points in that crop; mapped back to the photo, the means of the two eye contours and
     of the mouth corners are the three points the FFHQ framing needs.
If the mesh is not confident it sees a face there, the detector's own eye and mouth key points are used.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np
from PIL import Image

from disentangle_jax.apps import align as align_lib

ROI_SCALE = 1.5  # RectTransformationCalculator scale of face_landmark_front (square_long)


def crop_affine(
  box: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray, size: int, scale: float = ROI_SCALE
) -> np.ndarray:
  """2x3 A mapping crop pixels (u, v) to photo pixels: A @ [u, v, 1]. The crop is level with the eyes."""
  centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)
  side = max(box[2] - box[0], box[3] - box[1]) * scale
  d = np.asarray(left_eye, np.float64) - np.asarray(right_eye, np.float64)
  theta = np.arctan2(d[1], d[0])
  rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]]) * (side / size)
  return np.concatenate([rot, (centre - rot @ np.array([size / 2, size / 2]))[:, None]], axis=1)


def crop(image: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
  """Resamples the crop `affine` describes (photo pixels from crop pixels) into uint8 [size, size, 3]."""
  out = Image.fromarray(image).transform(
    (size, size), Image.Transform.AFFINE, tuple(affine.flatten()), Image.Resampling.BILINEAR
  )
  return np.asarray(out, np.uint8)


class MediaPipeLocator:
  """Callable face locator for `align.align_image`: BlazeFace boxes, face-mesh eye and mouth points."""

  def __init__(self, detector: Any, mesh: Any | None = None, min_score: float = 0.5, min_presence: float = 0.5):
    self.detector = detector
    self.mesh = mesh
    self.min_score = min_score
    self.min_presence = min_presence

  @classmethod
  def from_path(cls, path: str | os.PathLike, **kwargs: Any) -> MediaPipeLocator:
    """From the mediapipe==0.10.21 wheel (both .tflite models inside), or a directory holding the converted
    `blazeface/` and `mediapipe_facemesh/` weights (`disentangle-jax convert blazeface|mediapipe_facemesh`)."""
    from disentangle_jax.third_party import mediapipe_facemesh as mp  # pylint: disable=import-outside-toplevel

    p = pathlib.Path(path)
    if not p.exists():
      raise FileNotFoundError(
        f"{p}: no MediaPipe weights for face detection; pass --detector=<the "
        "mediapipe-0.10.21 wheel> or a directory with converted blazeface/ and "
        "mediapipe_facemesh/"
      )
    if p.is_dir():
      det_path, mesh_path = p / "blazeface", p / "mediapipe_facemesh"
      if not det_path.exists():
        raise FileNotFoundError(
          f"{p}: has no converted blazeface/ (run `disentangle-jax convert blazeface <wheel> {det_path}`)"
        )
      mesh = mp.load(mesh_path) if mesh_path.exists() else None
      return cls(mp.load_blazeface(det_path), mesh, **kwargs)
    return cls(mp.load_blazeface(p), mp.load(p), **kwargs)

  def __call__(self, image: np.ndarray) -> list[align_lib.FaceLandmarks]:
    faces = []
    for det in self.detector.detect(image, min_score=self.min_score):
      kp = np.asarray(det.keypoints, np.float64)
      box = np.asarray(det.box, np.float64)
      points = self._mesh_points(image, box, kp[0], kp[1])
      if points is None:  # the detector's own points: its right eye is on the image's left
        eye_left, eye_right, mouth = kp[0], kp[1], kp[3]
      else:
        eye_left, eye_right, mouth = points
      faces.append(align_lib.FaceLandmarks(eye_left, eye_right, mouth, box, float(det.score)))
    return faces

  def _mesh_points(
    self, image: np.ndarray, box: np.ndarray, right_eye: np.ndarray, left_eye: np.ndarray
  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    if self.mesh is None:
      return None
    size = int(self.mesh.config.input_size)
    affine = crop_affine(box, right_eye, left_eye, size)
    x = crop(image, affine, size).astype(np.float32)[None] / 127.5 - 1.0
    from disentangle_jax.third_party import mediapipe_facemesh as mp  # pylint: disable=import-outside-toplevel

    coords, presence = mp.landmarks_and_score(self.mesh, x)
    if float(np.asarray(presence)[0]) < self.min_presence:
      return None
    from disentangle_jax.third_party.mediapipe_facemesh import mesh_indices  # pylint: disable=import-outside-toplevel

    uv = np.asarray(mesh_indices.eye_mouth_points(np.asarray(coords)[0]), np.float64)  # eyes, mouth corners
    xy = uv @ affine[:, :2].T + affine[:, 2]
    return xy[0], xy[1], xy[2:].mean(0)
