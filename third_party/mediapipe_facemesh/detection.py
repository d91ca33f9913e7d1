"""BlazeFace post-processing: SSD anchors, box and keypoint decoding, weighted non-max suppression, letterboxing.

The facts are those of MediaPipe's short-range face detector graph (face_detection_short_range.pbtxt and the
FaceDetection subgraph, face_detection.pbtxt):

  SsdAnchorsCalculator: 128x128 input, num_layers 4, strides (8, 16, 16, 16), anchor offset 0.5,
    aspect_ratios [1.0], interpolated_scale_aspect_ratio 1.0, fixed_anchor_size true. Consecutive layers with the
    same stride share one feature map, each layer adding 2 anchors per cell (the aspect ratio and the
    interpolated scale): 16x16 x 2 + 8x8 x 6 = 896 anchors, ordered row, column, anchor.
  TensorsToDetectionsCalculator: 16 coords per anchor (reverse_output_order: x_center, y_center, w, h, then 6
    keypoints as x, y), all divided by the scale 128 and offset by the anchor centre (fixed anchors: w = h = 1);
    score = sigmoid(clip(logit, -100, 100)), kept if >= 0.5.
  NonMaxSuppressionCalculator: WEIGHTED, IoU threshold 0.3: each kept detection's box and keypoints become the
    score-weighted mean of every remaining detection overlapping it by more than the threshold (itself included);
    its score stays the best one.
  ImageToTensorCalculator: keep_aspect_ratio (letterbox to a centred square), float range [-1, 1].

Keypoint order (mediapipe.python.solutions.face_detection.FaceKeyPoint): right eye, left eye, nose tip, mouth
centre, right ear tragion, left ear tragion (the subject's right, so on the image's left for a frontal face).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

KEYPOINT_NAMES = ("right_eye", "left_eye", "nose_tip", "mouth_center", "right_ear_tragion", "left_ear_tragion")


def ssd_anchors(
  input_size: int = 128, strides: tuple[int, ...] = (8, 16, 16, 16), anchors_per_layer: int = 2, offset: float = 0.5
) -> np.ndarray:
  """Anchor centres [N, 2] (x, y, normalised to [0, 1]) of MediaPipe's fixed-size SSD anchors."""
  centres = []
  layer = 0
  while layer < len(strides):
    stride = strides[layer]
    same = 0
    while layer < len(strides) and strides[layer] == stride:
      same += 1
      layer += 1
    cells = int(np.ceil(input_size / stride))
    per_cell = anchors_per_layer * same
    ys, xs = np.meshgrid((np.arange(cells) + offset) / cells, (np.arange(cells) + offset) / cells, indexing="ij")
    grid = np.stack([xs, ys], -1).reshape(-1, 1, 2)
    centres.append(np.broadcast_to(grid, (cells * cells, per_cell, 2)).reshape(-1, 2))
  return np.concatenate(centres).astype(np.float32)


def decode(
  regressors: jax.Array, logits: jax.Array, anchors: jax.Array, scale: float = 128.0
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Raw outputs -> (boxes [..., N, 4] as x0, y0, x1, y1; keypoints [..., N, K, 2]; scores [..., N]).

  Coordinates are normalised to the detector's input square; differentiable (jnp), works on numpy inputs too.
  """
  regressors = jnp.asarray(regressors)
  anchors = jnp.asarray(anchors)
  centre = regressors[..., 0:2] / scale + anchors
  size = regressors[..., 2:4] / scale
  boxes = jnp.concatenate([centre - size / 2, centre + size / 2], axis=-1)
  keypoints = regressors[..., 4:].reshape(*regressors.shape[:-1], -1, 2) / scale + anchors[:, None, :]
  scores = jax.nn.sigmoid(jnp.clip(jnp.asarray(logits), -100.0, 100.0))
  return boxes, keypoints, scores


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
  x0 = np.maximum(box[0], boxes[:, 0])
  y0 = np.maximum(box[1], boxes[:, 1])
  x1 = np.minimum(box[2], boxes[:, 2])
  y1 = np.minimum(box[3], boxes[:, 3])
  inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
  area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
  union = area(box) + area(boxes) - inter
  return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def weighted_nms(
  boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
) -> list[tuple[np.ndarray, np.ndarray, float]]:
  """MediaPipe's weighted NMS over one image's candidates; returns [(box [4], keypoints [K, 2], score)]."""
  order = np.argsort(-scores, kind="stable")
  out = []
  while order.size:
    top = order[0]
    overlap = _iou(boxes[top], boxes[order]) > iou_threshold
    group = order[overlap]
    if group.size == 0:  # a degenerate (empty) top box overlaps nothing, not even itself
      group = order[:1]
      overlap = np.zeros_like(overlap)
      overlap[0] = True
    w = scores[group][:, None]
    box = (boxes[group] * w).sum(0) / w.sum()
    kps = (keypoints[group] * w[:, :, None]).sum(0) / w.sum()
    out.append((box, kps, float(scores[top])))
    order = order[~overlap]
  return out


@dataclasses.dataclass(frozen=True)
class Detection:
  """A face in original-image pixels: box (x0, y0, x1, y1), 6 keypoints [6, 2] (see KEYPOINT_NAMES), score."""

  box: np.ndarray
  keypoints: np.ndarray
  score: float

  def roi(self, scale: float = 1.5) -> np.ndarray:
    """A square (x0, y0, x1, y1) around the box centre, `scale` x its longer side: the face mesh's crop."""
    cx, cy = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2
    half = max(self.box[2] - self.box[0], self.box[3] - self.box[1]) * scale / 2
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def to_unit_range(image: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] or float [-1, 1] HWC RGB -> float32 [-1, 1]."""
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"expected one RGB image [H, W, 3], got shape {image.shape}")
  if image.dtype == np.uint8:
    return image.astype(np.float32) / 127.5 - 1.0
  if not np.issubdtype(image.dtype, np.floating):
    raise ValueError(f"expected a uint8 or float image, got dtype {image.dtype}")
  return image.astype(np.float32)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, float, float]:
  """Pads a [-1, 1] image to a centred black square and resizes it to `size`; returns (x, side, left, top).

  A point (u, v) normalised to the square maps back to original pixels as (u * side - left, v * side - top).
  """
  h, w = image.shape[:2]
  side = max(h, w)
  top, left = (side - h) // 2, (side - w) // 2
  square = np.full((side, side, 3), -1.0, np.float32)
  square[top : top + h, left : left + w] = image
  x = jax.image.resize(jnp.asarray(square), (size, size, 3), method="linear", antialias=True)
  return np.asarray(x), float(side), float(left), float(top)


def detect(
  raw: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
  image: np.ndarray,
  anchors: np.ndarray,
  input_size: int,
  min_score: float = 0.5,
  iou_threshold: float = 0.3,
) -> list[Detection]:
  """Faces in one image (uint8 or [-1, 1] float HWC), best first, in the image's pixel coordinates.

  `raw(x)` maps [1, S, S, 3] in [-1, 1] to (regressors [1, N, C], logits [1, N]): the detector net.
  """
  x, side, left, top = letterbox(to_unit_range(image), input_size)
  regressors, logits = raw(jnp.asarray(x[None]))
  boxes, keypoints, scores = (np.asarray(a[0]) for a in decode(regressors, logits, anchors, float(input_size)))
  keep = scores >= min_score
  found = weighted_nms(boxes[keep], keypoints[keep], scores[keep], iou_threshold)
  shift = np.array([left, top], np.float32)
  return [
    Detection(box=(box.reshape(2, 2) * side - shift).reshape(4), keypoints=kps * side - shift, score=score)
    for box, kps, score in found
  ]
