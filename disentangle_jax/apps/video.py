"""A fixed identity driven by the frames of a video, and how steady that identity stays over time.

The identity code is computed once; each frame contributes only its attribute code, so the output should keep one
face while following the clip's pose and expression. The temporal identity metric measures that: the cosine
similarity (by E_id) between the identity image and every output frame, summarised by its mean and spread, and the
similarity of consecutive output frames (flicker shows up as dips there).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any
from typing import Protocol

import numpy as np

from disentangle_jax.apps import images as images_lib


class Driver(Protocol):
  """What driving needs of a loaded model (`disentangle_jax.load`)."""

  resolution: int

  def id_code(self, images: np.ndarray) -> np.ndarray: ...
  def attr_code(self, images: np.ndarray) -> np.ndarray: ...
  def map(self, code: np.ndarray) -> np.ndarray: ...
  def render(self, w: np.ndarray) -> np.ndarray: ...


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
  batch = []
  for f in frames:
    batch.append(f)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def drive(
  model: Driver,
  id_image: np.ndarray,
  frames: Iterable[np.ndarray],
  batch_size: int = 8,
  prepare: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[np.ndarray, float, np.ndarray]]:
  """Yields (output frame uint8 [R, R, 3], identity similarity to `id_image`, the output's identity code) per frame.

  Args:
    model: a loaded model.
    id_image: [R, R, 3] float in [-1, 1], the identity to keep.
    frames: uint8 RGB frames of any size (e.g. `media.iter_video`).
    batch_size: frames per model call; the last batch is padded so only one shape is compiled.
    prepare: turns a uint8 frame into the uint8 face crop to encode (e.g. alignment); default: resize.
  """
  res = model.resolution
  prepare = prepare or (lambda f: images_lib.resize(f, res))
  id_code = np.asarray(model.id_code(np.asarray(id_image)[None]))  # [1, D], unit norm
  for batch in _batches(frames, batch_size):
    k = len(batch)
    x = images_lib.to_model(np.stack([images_lib.resize(prepare(f), res) for f in batch]))
    if k < batch_size:
      x = np.concatenate([x, np.repeat(x[-1:], batch_size - k, 0)])
    attr = np.asarray(model.attr_code(x))
    w = model.map(np.concatenate([np.repeat(id_code, batch_size, 0), attr], -1))
    out = np.asarray(model.render(w))[:k]
    codes = np.asarray(model.id_code(out))
    for frame, code in zip(images_lib.to_uint8(out), codes):
      yield frame, float(code @ id_code[0]), code


def temporal_identity(similarities: list[float], output_codes: np.ndarray | None = None) -> dict[str, Any]:
  """Summary of per-frame identity similarity: mean, spread (std), min, and frame count."""
  s = np.asarray(similarities, np.float64)
  if s.size == 0:
    raise ValueError("no frames to summarise")
  out = {
    "frames": int(s.size),
    "id_similarity_mean": float(s.mean()),
    "id_similarity_std": float(s.std()),
    "id_similarity_min": float(s.min()),
    "id_similarity_max": float(s.max()),
  }
  if output_codes is not None and len(output_codes) > 1:
    consecutive = np.sum(output_codes[1:] * output_codes[:-1], -1)
    out["consecutive_similarity_mean"] = float(consecutive.mean())
    out["consecutive_similarity_min"] = float(consecutive.min())
  return out
