"""The paper's table for one split of image pairs: ArcFace identity, FID, pose and expression error, reconstruction.

For every pair (I_id, I_attr) the model's swap `out` and reconstruction `rec = swap(I_id, I_id)` are computed once
(`evaluation.Evaluator.outputs`, which also gives the E_id metrics training logs), then handed to the independent
networks of `metrics.nets.MetricNets`:
  arcface/id_to_out, attr_to_out, id_to_attr     cosines of ArcFace embeddings (`metrics.identity`)
  fid/real                                       FID of the swaps against a folder of real faces (their statistics
                                                 computed once per folder and weights: `fid.folder_statistics`)
  fid/generator                                  FID of the swaps against as many of G's own samples
  pose/yaw, pitch, roll, error                   |angle(I_attr) - angle(out)| in degrees, and their mean (`pose`)
  expression/error                               landmark distance after a similarity fit, 256 px (`expression`)
  reconstruction/psnr, ms_ssim                   rec against I_id (from the Evaluator)
A group whose network is missing is left out of the result (its reason is in `MetricNets.skipped`).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Iterator
from typing import Any

import numpy as np

from disentangle_jax import fid as fid_lib
from disentangle_jax.metrics import expression
from disentangle_jax.metrics import identity
from disentangle_jax.metrics import nets as nets_lib
from disentangle_jax.metrics import pose
from disentangle_jax.metrics import templates

Pairs = Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
GENERATOR_SEED_OFFSET = 7919  # G's samples for FID use their own seed, apart from the dataset's


class Progress:
  """A one-line progress bar on stderr: pairs (or other `unit`s) done of the budget, their rate and time left."""

  def __init__(self, total: int, label: str, stream: Any = None, width: int = 30, unit: str = "pairs"):
    self.total, self.label, self.width, self.done, self.unit = max(int(total), 1), label, width, 0, unit
    self.stream = stream or sys.stderr
    self.start = time.perf_counter()

  def update(self, n: int) -> None:
    self.done = min(self.done + int(n), self.total)
    rate = self.done / max(time.perf_counter() - self.start, 1e-9)
    filled = int(self.width * self.done / self.total)
    left = (self.total - self.done) / rate if rate > 0 else 0.0
    self.stream.write(
      f"\r{self.label}: [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} pairs, "
      f"{rate:.1f}/s, {left:.0f}s left"
    )
    self.stream.flush()

  def close(self) -> None:
    self.stream.write("\n")
    self.stream.flush()


def limit(pairs: Pairs, num_pairs: int | None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """The batches of `pairs` with at most `num_pairs` valid examples in all (masks narrowed; None: all)."""
  left = math.inf if num_pairs is None else int(num_pairs)
  for a, b, valid in pairs:
    if left <= 0:
      return
    mask = np.ones(len(a), bool) if valid is None else np.asarray(valid, bool).copy()
    mask[np.cumsum(mask) > left] = False
    left -= int(mask.sum())
    yield a, b, mask


def generator_samples(model: Any, n: int, batch_size: int, seed: int) -> Iterator[np.ndarray]:
  """Full batches of G's own samples, at least n in all (z ~ N(0, I), the dataset's truncation, one w for all style
  inputs), in [-1, 1]. Every batch has `batch_size` rows, so the networks that measure them compile once."""
  import jax  # pylint: disable=import-outside-toplevel
  from flax import nnx  # pylint: disable=import-outside-toplevel

  config = model.config
  graph, state = nnx.split(model.frozen.generator)
  z_dim = int(model.frozen.generator.config.z_dim)
  psi, cutoff = float(config.data.truncation_psi), config.data.get("truncation_cutoff")

  @jax.jit
  def mapping(state, key):
    z = jax.random.normal(key, (batch_size, z_dim))
    return nnx.merge(graph, state).mapping(z, truncation_psi=psi, truncation_cutoff=cutoff)[:, 0]

  key = jax.random.key(seed)
  for start in range(0, n, batch_size):
    images = np.asarray(model.render(mapping(state, jax.random.fold_in(key, start))))
    yield np.clip(images, -1.0, 1.0)


class GeneratorReference:
  """Inception features of G's own samples, rendered once and shared by the splits (as many as the largest asks)."""

  def __init__(self, model: Any, features: nets_lib.Embed, batch_size: int, seed: int):
    self.model, self.features, self.batch_size, self.seed = model, features, batch_size, seed
    self._feats = np.zeros((0, 0))

  def __call__(self, n: int) -> np.ndarray:
    if len(self._feats) < n:
      batches = generator_samples(self.model, n, self.batch_size, self.seed)
      self._feats = np.concatenate([self.features(b) for b in batches])
    return self._feats[:n]


def evaluate_split(
  outputs: Callable[[np.ndarray, np.ndarray], tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]],
  pairs: Pairs,
  nets: nets_lib.MetricNets,
  *,
  total: int,
  label: str,
  generator_features: Callable[[int], np.ndarray] | None = None,
  real_reference: tuple[np.ndarray, np.ndarray] | None = None,
  stream: Any = None,
) -> dict[str, float]:
  """Means of every metric over the valid pairs of `pairs` (see the module docstring).

  Args:
    outputs: `Evaluator.outputs`: (E_id metrics, swaps, reconstructions) of a batch.
    pairs: (id_images, attr_images, valid mask or None) batches, e.g. through `limit`.
    nets: the metric networks; a missing one's group is left out.
    total: the number of pairs expected (the progress bar's length).
    label: the split's name, for the progress bar.
    generator_features: n -> Inception features of n of G's samples (FID against the generator); None: skipped.
    real_reference: (mu, sigma) of real faces' features (FID against real faces); None: skipped.
  """
  sums: dict[str, float] = {}
  per_example: dict[str, list[np.ndarray]] = {}
  swap_features = []
  count = 0
  bar = Progress(total, label, stream)

  def add(name: str, values: np.ndarray) -> None:
    per_example.setdefault(name, []).append(np.asarray(values, np.float64))

  for a, b, valid in pairs:
    mask = np.ones(len(a), bool) if valid is None else np.asarray(valid, bool)
    if not mask.any():
      continue
    metrics, out, _ = outputs(a, b)
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + float(np.sum(np.asarray(v)[mask]))
    if nets.arcface is not None:
      sims = identity.similarities(nets.arcface(a), nets.arcface(b), nets.arcface(out))
      for k, v in sims.items():
        add(f"arcface/{k}", v[mask])
    if nets.inception is not None:
      swap_features.append(nets.pool3(out)[mask])
    if nets.landmarks is not None:
      lnd = nets.landmarks
      la, lo = np.asarray(lnd.points(b))[mask], np.asarray(lnd.points(out))[mask]
      tmpl = templates.template(lnd.kind)
      err = pose.pose_error(pose.head_pose(la, tmpl), pose.head_pose(lo, tmpl))
      for i, name in enumerate(pose.ANGLES):
        add(f"pose/{name}", err[:, i])
      add("pose/error", err.mean(1))
      add("expression/error", expression.expression_error(la, lo, lnd.keep, lnd.frame))
    count += int(mask.sum())
    bar.update(int(mask.sum()))
  bar.close()
  if not count:
    raise ValueError(f"{label}: no pairs to evaluate")
  result = {k: v / count for k, v in sums.items()}
  result.update({k: float(np.mean(np.concatenate(v))) for k, v in per_example.items()})
  if swap_features:
    feats = np.concatenate(swap_features)
    if len(feats) < 2:
      nets.skipped.setdefault(f"{nets_lib.FID} ({label})", f"{label}: FID needs at least 2 pairs, got {len(feats)}")
    else:
      if real_reference is not None:
        result["fid/real"] = fid_lib.distance(feats, real_reference)
      if generator_features is not None:
        result["fid/generator"] = fid_lib.distance(feats, generator_features(len(feats)))
  result["examples"] = count
  return result
