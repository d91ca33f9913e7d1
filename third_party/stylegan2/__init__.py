"""StyleGAN2 generator (frozen G): Flax NNX port plus converters for stylegan2-ada-pytorch and rosinality weights.

    from disentangle_jax.third_party import stylegan2
    g = stylegan2.load(path)                                    # .pkl / .pt / .npz / converted dir -> Generator
    ws = stylegan2.mapping(g, z, truncation_psi=0.7)            # [B, z_dim] -> [B, num_ws, w_dim], jitted
    img = stylegan2.synthesis(g, ws, noise_mode="const")        # -> [B, H, W, 3] float32 NHWC, jitted

`g.mapping` / `g.synthesis` are the same computations as plain methods, for use inside a larger jitted function
(and for `jax.grad` w.r.t. ws).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import numpy as np
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.stylegan2.convert import convert
from disentangle_jax.third_party.stylegan2.convert import mean_w
from disentangle_jax.third_party.stylegan2.model import FFHQ256
from disentangle_jax.third_party.stylegan2.model import PAPER256
from disentangle_jax.third_party.stylegan2.model import ROSINALITY256
from disentangle_jax.third_party.stylegan2.model import Buffer
from disentangle_jax.third_party.stylegan2.model import Config
from disentangle_jax.third_party.stylegan2.model import Generator

NETWORK = "stylegan2"
Module = Generator

__all__ = [
  "Buffer",
  "Config",
  "FFHQ256",
  "Generator",
  "Module",
  "NETWORK",
  "PAPER256",
  "ROSINALITY256",
  "convert",
  "convert_to",
  "from_params",
  "init",
  "load",
  "mapping",
  "synthesis",
]


def from_params(config: Config, params: dict[str, Any], source: str) -> Generator:
  """A generator holding `params`, checked key by key and shape by shape against the module `config` builds."""
  return converted.build(Generator, config, params, source)


def init(config: Config, seed: int, w_avg_samples: int = 4096) -> Generator:
  """Random generator from `seed` with upstream's init; `w_avg` = the mean w of `w_avg_samples` z from the seed.

  Weights are drawn with numpy (PCG64 seeded `seed`) rather than by the module's constructor: drawing them op by
  op in JAX dispatches (or compiles) hundreds of small computations, which takes tens of seconds on a small CPU.
  """
  abstract = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: Generator(config, rngs=nnx.Rngs(0)))))
  rng = np.random.default_rng(seed)

  def draw(path: trees.Path, leaf: Any) -> np.ndarray:
    name, shape = path[-1], tuple(leaf.shape)
    if name in ("weight", "const", "noise_const"):
      scale = 1.0 / config.lr_multiplier if path[0] == "mapping_net" else 1.0
      return (rng.standard_normal(shape) * scale).astype(np.float32)
    fill = 1.0 if (name == "bias" and path[-2] == "affine") else 0.0  # affine biases start at 1
    return np.full(shape, fill, np.float32)

  params = trees.unflatten({path: draw(path, leaf) for path, leaf in trees.flatten(abstract).items()})
  if w_avg_samples:
    params["mapping_net"]["w_avg"] = mean_w(config, params, seed, w_avg_samples)
  return from_params(config, params, f"init(seed={seed})")


def load(path: str | os.PathLike, **overrides: Any) -> Generator:
  """Any supported checkpoint (see `convert`) or a directory written by `convert_to`; `overrides` as in `convert`."""
  if converted.is_converted(path):
    config, params = converted.read(path, NETWORK, Config, convert)
    config = Config.from_dict({**config.to_dict(), **overrides})
  else:
    config, params = convert(path, **overrides)
  return from_params(config, params, str(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike, **overrides: Any) -> Config:
  """`disentangle-jax convert stylegan2 SRC DST`: writes the converted-weights layout; returns the Config."""
  config, params = convert(src, **overrides)
  converted.write(dst, NETWORK, from_params(config, params, str(src)), src)
  return config


@functools.partial(jax.jit, static_argnames=("truncation_psi", "truncation_cutoff"))
def mapping(
  generator: Generator, z: jax.Array, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
) -> jax.Array:
  """`generator.mapping`, compiled once per truncation setting and input shape."""
  return generator.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


@functools.partial(jax.jit, static_argnames=("noise_mode", "dtype"))
def synthesis(
  generator: Generator,
  ws: jax.Array,
  noise_mode: str = "const",
  rng: jax.Array | None = None,
  noise: Any = None,
  dtype: Any = None,
) -> jax.Array:
  """`generator.synthesis`, compiled once per noise mode, dtype and input shape."""
  return generator.synthesis(ws, noise_mode=noise_mode, rng=rng, noise=noise, dtype=dtype)
