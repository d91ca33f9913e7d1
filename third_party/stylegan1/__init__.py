"""StyleGAN v1 (Karras et al. 2019), the generator the identity-disentanglement paper used, as a frozen NNX module.

    from disentangle_jax.third_party import stylegan1
    g = stylegan1.load("stylegan-256px-new.model")  # rosinality .pt/.npz, NVlabs .pkl/.npz, Keras .h5, converted dir
    ws = stylegan1.mapping(g, z, truncation_psi=0.7)      # z [B, 512] -> ws [B, num_ws, 512], jitted
    img = stylegan1.synthesis(g, ws, noise_mode="const")  # [B, 256, 256, 3] float32 NHWC, jitted

The API matches `stylegan2`; the methods of `g` itself are for use inside a larger jitted function (and `jax.grad`
w.r.t. ws).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.stylegan1.convert import convert
from disentangle_jax.third_party.stylegan1.model import Buffer
from disentangle_jax.third_party.stylegan1.model import Config
from disentangle_jax.third_party.stylegan1.model import Generator
from disentangle_jax.third_party.stylegan1.model import const_noise
from disentangle_jax.third_party.stylegan1.model import mix_styles

NETWORK = "stylegan1"
Module = Generator
# rosinality's released FFHQ model `stylegan-256px-new.model` (progressive step 6).
FFHQ256 = Config(resolution=256)

__all__ = [
  "Buffer",
  "Config",
  "FFHQ256",
  "Generator",
  "Module",
  "NETWORK",
  "const_noise",
  "convert",
  "convert_to",
  "from_params",
  "init",
  "load",
  "mapping",
  "mix_styles",
  "synthesis",
  "truncate",
]


def from_params(config: Config, params: dict[str, Any], source: str = "params") -> Generator:
  """A `Generator` holding `params`, built without a random init, every entry and shape checked first."""
  return converted.build(Generator, config, params, source)


def init(config: Config, seed: int, w_avg_samples: int = 4096) -> Generator:
  """Random generator from `seed` (upstream's init: N(0, 1) weights, zero biases and noise strengths), with
  `w_avg` the mean w of `w_avg_samples` z (so truncation pulls toward the centre of this network's W)."""
  module = Generator(config, rngs=nnx.Rngs(seed))
  if w_avg_samples:
    z = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 1), (w_avg_samples, config.z_dim), jnp.float32)
    module.w_avg[...] = jnp.mean(mapping(module, z)[:, 0], axis=0)
  return module


def load(path: str | os.PathLike, resolution: int | None = None, **overrides: Any) -> Generator:
  """A converted directory or any file `convert` reads.

  `resolution` picks a rosinality checkpoint's progressive step; `overrides` replace Config fields that do not
  change the parameter shapes (`compute_dtype="bfloat16"`, `truncation_cutoff=8`, ...).
  """
  config, params = converted.read(path, NETWORK, Config, convert, resolution=resolution)
  return from_params(dataclasses.replace(config, **overrides), params, str(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike, resolution: int | None = None) -> Config:
  """`disentangle-jax convert stylegan1 SRC DST`: writes the converted-weights directory; returns the Config."""
  config, params = convert(src, resolution=resolution)
  converted.write(dst, NETWORK, from_params(config, params, str(src)), src)
  return config


@functools.partial(jax.jit, static_argnames=("truncation_psi", "truncation_cutoff"))
def mapping(
  generator: Generator, z: jax.Array, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
) -> jax.Array:
  """`generator.mapping`, compiled once per truncation setting and input shape."""
  return generator.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


@functools.partial(jax.jit, static_argnames=("truncation_psi", "truncation_cutoff"))
def truncate(
  generator: Generator, ws: jax.Array, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
) -> jax.Array:
  """`generator.truncate`, compiled once per truncation setting and input shape."""
  return generator.truncate(ws, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


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
