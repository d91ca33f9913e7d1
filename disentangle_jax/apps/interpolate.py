"""Interpolation with one factor held: morph the identity (or the attributes) from image A to image B.

Two spaces, because they answer different questions:
  * `w`: map both endpoints through M and interpolate StyleGAN's latent linearly. The original implementation
    exposes only this; the path is straight in W but the identity code along it is whatever M makes of it.
  * `code`: interpolate the concatenated code (identity, attributes) before M. The varied factor moves and the held
    one stays exactly fixed at M's input. The identity code lives on the unit sphere (E_id's embedding is
    L2-normalised), so it is interpolated along the great circle (slerp); attribute codes linearly.
"""

from __future__ import annotations

from typing import Protocol

import jax.numpy as jnp
import numpy as np

FACTORS = ("identity", "attributes")
SPACES = ("w", "code")


class Encoder(Protocol):
  """What interpolation needs of a loaded model (`disentangle_jax.load`)."""

  def id_code(self, images: np.ndarray) -> np.ndarray: ...
  def attr_code(self, images: np.ndarray) -> np.ndarray: ...
  def map(self, code: np.ndarray) -> np.ndarray: ...
  def render(self, w: np.ndarray) -> np.ndarray: ...


def lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Linear interpolation; `t` [T] -> [T, ...]."""
  t = np.asarray(t, np.float32).reshape(-1, *([1] * np.ndim(a)))
  return (1.0 - t) * a[None] + t * b[None]


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
  """Great-circle interpolation of unit vectors [D] (falls back to lerp for (anti)parallel ends)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  na, nb = np.linalg.norm(a), np.linalg.norm(b)
  cos = np.clip(np.dot(a / na, b / nb), -1.0, 1.0)
  omega = np.arccos(cos)
  t = np.asarray(t, np.float64).reshape(-1, 1)
  if np.sin(omega) < 1e-6:
    return lerp(a, b, t.ravel()).astype(np.float32)
  out = (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)
  return out.astype(np.float32)


def interpolate(
  model: Encoder,
  image_a: np.ndarray,
  image_b: np.ndarray,
  fixed: np.ndarray,
  *,
  factor: str = "identity",
  space: str = "w",
  steps: int = 8,
) -> np.ndarray:
  """Frames [steps, H, W, 3] in [-1, 1]: `factor` goes from image A's to image B's, the other comes from `fixed`.

  Args:
    model: a loaded model.
    image_a, image_b: [H, W, 3] in [-1, 1], the endpoints of the varied factor.
    fixed: [H, W, 3], the image whose other factor is held.
    factor: "identity" (morph who it is) or "attributes" (morph pose/expression/lighting).
    space: "w" or "code" (see the module docstring).
    steps: number of frames, both ends included.
  """
  if factor not in FACTORS:
    raise ValueError(f"factor must be one of {FACTORS}, got {factor!r}")
  if space not in SPACES:
    raise ValueError(f"space must be one of {SPACES}, got {space!r}")
  if steps < 2:
    raise ValueError(f"steps must be at least 2 (both ends), got {steps}")
  t = np.linspace(0.0, 1.0, steps, dtype=np.float32)
  ends = np.stack([image_a, image_b])
  fixed = np.asarray(fixed)[None]
  if factor == "identity":
    ids = np.asarray(model.id_code(ends))
    attr = np.asarray(model.attr_code(fixed))[0]
  else:
    ids = np.asarray(model.id_code(fixed))[0]
    attr = np.asarray(model.attr_code(ends))
  if space == "code":
    if factor == "identity":
      id_path = slerp(ids[0], ids[1], t)
      codes = np.concatenate([id_path, np.repeat(attr[None], steps, 0)], -1)
    else:
      codes = np.concatenate([np.repeat(ids[None], steps, 0), lerp(attr[0], attr[1], t)], -1)
    w = model.map(codes)
  else:
    if factor == "identity":
      end_codes = np.concatenate([ids, np.repeat(attr[None], 2, 0)], -1)
    else:
      end_codes = np.concatenate([np.repeat(ids[None], 2, 0), attr], -1)
    w_ends = np.asarray(model.map(end_codes))
    w = lerp(w_ends[0], w_ends[1], t)
  return np.asarray(model.render(jnp.asarray(w)))
