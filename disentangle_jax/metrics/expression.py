"""Expression error: how far the landmarks of two faces differ once head pose, size and position are removed.

The second face's points are fitted onto the first's by a similarity (`pose.similarity_fit`: rotation, scale and
shift; in 3-D for the face mesh, whose depth lets the fit remove yaw and pitch too, in the image plane for FAN),
using only the expression points (`keep`: the jaw / face-oval contour dropped, as in the landmark loss, since it
follows the silhouette rather than the expression). The error is the mean Euclidean distance over those points,
in pixels of a 256x256 face: `frame` is the side of the landmark net's input the coordinates are measured in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from disentangle_jax.metrics import pose

REFERENCE_FRAME = 256


def expression_error(a: np.ndarray, b: np.ndarray, keep: Sequence[int], frame: float) -> np.ndarray:
  """Per-example error [B] between landmark sets a, b [B, N, D] (D = 2 or 3), in pixels of a 256 px face."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape or a.ndim != 3:
    raise ValueError(f"expression_error: landmark batches must match as [B, N, D], got {a.shape} and {b.shape}")
  keep = np.asarray(keep, np.int64)
  out = []
  for pa, pb in zip(a[:, keep], b[:, keep]):
    s, rot, t = pose.similarity_fit(pb, pa)
    fitted = s * pb @ rot.T + t
    out.append(np.mean(np.linalg.norm(fitted - pa, axis=-1)))
  return np.asarray(out) * (REFERENCE_FRAME / float(frame))
