"""Evaluating a loaded model: the validation split of the generated dataset, and a folder of real photos.

Both use the training code's metric definitions (`disentangle_jax.evaluate.batch_metrics`), so the numbers match
what training logs: identity similarities id->out, attr->out, id->attr and the disentanglement score, landmark
distances, reconstruction MSE / PSNR / MS-SSIM / identity similarity. The landmark net is not part of an inference
model, so it is built here from the model's config (the same seed offset as training for a random one).

Real photos have no pairing of their own: photo i gives its identity and photo i+1 (cyclically) its attributes;
reconstruction uses each photo for both. Photos should be aligned (see `apps/align.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax import evaluate as evaluate_lib
from disentangle_jax import frozen as frozen_lib
from disentangle_jax import inference
from disentangle_jax import model as model_lib


class Evaluator:
  """Per-batch metrics of a loaded model, jitted once per batch shape."""

  def __init__(self, model: inference.InferenceModel):
    config = model.config
    lnd = frozen_lib.landmark_net(config.landmarks, int(config.seed) + model_lib.SEED_OFFSETS["landmarks"])
    lnd.eval()
    inner = model.frozen
    frozen = model_lib.Frozen(inner.generator, inner.id_encoder, lnd)
    keep = tuple(int(i) for i in frozen_lib.landmark_keep_indices(config.landmarks.kind))
    scale = model_lib.landmark_scale(config.landmarks, lnd, model.resolution)  # the units training evaluates in
    self.spec = dataclasses.replace(model.spec, landmark_keep=keep, landmark_scale=scale)
    self.resolution = model.resolution
    frozen_graph, frozen_state = nnx.split(frozen)
    trainable_graph, trainable_state = nnx.split(model.trainable)
    spec = self.spec

    def step(frozen_state, trainable_state, id_images, attr_images):
      frozen, trainable = nnx.merge(frozen_graph, frozen_state), nnx.merge(trainable_graph, trainable_state)
      metrics = evaluate_lib.batch_metrics(frozen, trainable, spec, id_images, attr_images)
      # The swap and the reconstruction once more, for the paper metrics' networks: XLA merges the repeats.
      out = jnp.clip(model_lib.swap(frozen, trainable, spec, id_images, attr_images)[0], -1.0, 1.0)
      rec = jnp.clip(model_lib.swap(frozen, trainable, spec, id_images, id_images)[0], -1.0, 1.0)
      return metrics, out, rec

    jitted = jax.jit(step)
    self._run = lambda a, b: jitted(frozen_state, trainable_state, jnp.asarray(a), jnp.asarray(b))

  def batch(self, id_images: np.ndarray, attr_images: np.ndarray) -> dict[str, np.ndarray]:
    """Per-example metrics [B] of one batch."""
    return self.outputs(id_images, attr_images)[0]

  def outputs(
    self, id_images: np.ndarray, attr_images: np.ndarray
  ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(per-example metrics [B], swaps [B, R, R, 3], reconstructions of the identity images), images in [-1, 1]."""
    metrics, out, rec = self._run(id_images, attr_images)
    return {k: np.asarray(v) for k, v in metrics.items()}, np.asarray(out), np.asarray(rec)

  def mean(self, pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> dict[str, float]:
    """Means over all valid examples of (id_images, attr_images, valid mask or None) batches."""
    sums: dict[str, float] = {}
    count = 0
    for a, b, valid in pairs:
      metrics = self.batch(a, b)
      mask = np.ones(len(a), bool) if valid is None else np.asarray(valid, bool)
      for k, v in metrics.items():
        sums[k] = sums.get(k, 0.0) + float(np.sum(v[mask]))
      count += int(mask.sum())
    if not count:
      raise ValueError("no examples to evaluate")
    out = {k: v / count for k, v in sums.items()}
    out["examples"] = count
    return out


def validation_pairs(
  data_dir: str, batch_size: int, num_batches: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray, None]]:
  """Cross batches (different identity and attribute images) of the generated validation split."""
  from disentangle_jax.data import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel

  pipe = pipeline_lib.Pipeline(
    data_dir, "validation", batch_size=batch_size, seed=seed, cross_every=1, num_steps=num_batches
  )
  for batch in pipe:
    yield np.asarray(batch["id"]), np.asarray(batch["attr"]), None


def photo_pairs(images: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Photo i as identity and photo i+1 (cyclically) as attributes, in padded fixed-size batches."""
  n = len(images)
  attrs = np.roll(images, -1, axis=0)
  for start in range(0, n, batch_size):
    a, b = images[start : start + batch_size], attrs[start : start + batch_size]
    k = len(a)
    valid = np.arange(batch_size) < k
    if k < batch_size:
      a = np.concatenate([a, np.repeat(a[-1:], batch_size - k, 0)])
      b = np.concatenate([b, np.repeat(b[-1:], batch_size - k, 0)])
    yield a, b, valid
