"""Tiny random-weight ArcFace and FID Inception networks, drawn with numpy and written to disk as the converters
read and write them: the real metric networks at test sizes, for the ports' own tests and the evaluation tests.

Weights are drawn with numpy, not with the ports' `init`: compiling JAX's random initialisers takes seconds per
network (tens of seconds for InceptionV3) on a loaded 2-core machine; numpy takes milliseconds.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.third_party import arcface
from disentangle_jax.third_party import fid_inception
from disentangle_jax.third_party.common import converted
from tests import recipe

# Four stride-2 stages as IR-SE50 has, one unit each; 16 px input, so larger faces get the identity crop first.
ARCFACE_TINY = arcface.Config(
  stem_width=8, widths=(8, 16, 24, 32), units=(1, 1, 1, 1), se_reduction=4, embedding_dim=16, input_size=16
)
# A narrow FID Inception at the smallest input InceptionV3 takes (pool3 of 256 features).
FID_SMALL = dataclasses.replace(fid_inception.FID, width_multiplier=0.125, input_size=75)


def arcface_state_dict(config: arcface.Config, seed: int) -> dict[str, np.ndarray]:
  """An upstream-named (TreB1eN) state_dict of random weights, for `arcface.convert` / `arcface.load`."""
  out = {}
  for index, (key, shape) in enumerate(arcface.expected_state_dict(config).items()):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    out[key] = recipe.generated_array(seed, index, list(shape), 1.0 / np.sqrt(fan_in) if len(shape) > 1 else 0.2)
    if key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1):
      out[key] = np.abs(out[key]) + 0.5  # variances and BatchNorm / PReLU scales positive
  return out


def fid_inception_net(seed: int, config: fid_inception.Config = FID_SMALL) -> fid_inception.Module:
  """A FID Inception of `config` with numpy-drawn weights (He-scaled kernels, BatchNorm near identity)."""
  rng = np.random.default_rng(seed)
  abstract = nnx.eval_shape(lambda: fid_inception.init(config, seed=0))

  def draw(path: tuple[str, ...], shape: tuple[int, ...]) -> np.ndarray:
    if path[-1] == "kernel":
      return rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[:-1])), shape)
    if path[-1] in ("var", "scale"):
      return rng.uniform(0.5, 1.5, shape)
    return rng.normal(0.0, 0.1, shape)

  flat = trees.flatten(nnx.to_pure_dict(nnx.state(abstract)))
  params = trees.unflatten({p: draw(p, v.shape).astype(np.float32) for p, v in flat.items()})
  return converted.build(fid_inception.Module, config, params, f"test network {seed}")


def paths(directory: str | os.PathLike) -> tuple[str, str]:
  """Where `write` puts the (ArcFace, FID Inception) weights under `directory`."""
  return os.path.join(directory, "arcface_tiny.npz"), os.path.join(directory, "fid_inception_small")


def write(directory: str | os.PathLike, seed: int = 0) -> tuple[str, str]:
  """(ArcFace, FID Inception) weights under `directory`: ArcFace as a TreB1eN-named `.npz` (`arcface.load` converts
  it), the FID Inception as the converted directory `disentangle-jax convert` writes (it records the small input
  size, which a pytorch-fid file cannot)."""
  os.makedirs(directory, exist_ok=True)
  arc, inception = paths(directory)
  np.savez(arc, **arcface_state_dict(ARCFACE_TINY, seed))
  converted.write(inception, fid_inception.NETWORK, fid_inception_net(seed), "tests/metric_weights.py")
  return arc, inception
