"""Identity similarity by an independent face recogniser (ArcFace), from embeddings already computed.

The model trains against E_id, so E_id's own similarity flatters it; the table reports ArcFace cosines instead:
  id_to_out    cos(ArcFace(I_id), ArcFace(out))     identity kept: higher is better
  attr_to_out  cos(ArcFace(I_attr), ArcFace(out))   the attribute image's identity leaking in: lower is better
  id_to_attr   cos(ArcFace(I_id), ArcFace(I_attr))  the baseline between the two inputs
"""

from __future__ import annotations

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Row-wise cosine similarity [B] of [B, D] arrays (normalised here: callers may pass raw embeddings)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
  b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
  return np.sum(a * b, axis=-1)


def similarities(e_id: np.ndarray, e_attr: np.ndarray, e_out: np.ndarray) -> dict[str, np.ndarray]:
  """Per-example id_to_out, attr_to_out, id_to_attr [B] from the three embeddings [B, D]."""
  return {
    "id_to_out": cosine(e_id, e_out),
    "attr_to_out": cosine(e_attr, e_out),
    "id_to_attr": cosine(e_id, e_attr),
  }
