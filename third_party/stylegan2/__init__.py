"""StyleGAN2 generator (frozen G): Flax NNX port plus converters for stylegan2-ada-pytorch and rosinality weights.

    from disentangle_jax.third_party import stylegan2
    g = stylegan2.load(path)                       # .pkl / .pt / .npz / converted dir
    ws = g.mapping(z, truncation_psi=0.7)          # [B, z_dim] -> [B, num_ws, w_dim]
    img = g.synthesis(ws, noise_mode="const")      # -> [B, H, W, 3] float32 NHWC

`g.module` is the NNX module itself, for use inside a larger jitted function (and for `jax.grad` w.r.t. ws).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import bundle as bundle_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import nnx_params
from disentangle_jax.third_party.stylegan2.convert import convert
from disentangle_jax.third_party.stylegan2.model import FFHQ256
from disentangle_jax.third_party.stylegan2.model import PAPER256
from disentangle_jax.third_party.stylegan2.model import ROSINALITY256
from disentangle_jax.third_party.stylegan2.model import Buffer
from disentangle_jax.third_party.stylegan2.model import Config
from disentangle_jax.third_party.stylegan2.model import Generator

NETWORK = "stylegan2"
Module = Generator
# Keyword arguments of the jitted bundle methods that are compile-time constants.
STATIC_ARGS = {"mapping": ("truncation_psi", "truncation_cutoff"), "synthesis": ("noise_mode", "dtype")}

__all__ = ["Buffer", "Config", "FFHQ256", "Generator", "Module", "PAPER256", "ROSINALITY256", "bundle", "convert",
           "convert_to", "init", "load"]


def bundle(module: Generator) -> bundle_lib.Bundle:
  """Wraps a generator so that `.mapping(...)` and `.synthesis(...)` run jitted."""
  return bundle_lib.Bundle(module, module.config, STATIC_ARGS)


def _abstract(config: Config) -> Generator:
  return nnx.eval_shape(lambda: Generator(config, rngs=nnx.Rngs(0)))


def from_params(config: Config, params: dict[str, Any], source: str) -> Generator:
  """A generator holding `params` (checked key by key against the module built from `config`)."""
  module = Generator(config, rngs=nnx.Rngs(0))  # every variable is overwritten below
  nnx_params.assign(module, params, source)
  return module


def init(config: Config, seed: int, w_avg_samples: int = 4096) -> bundle_lib.Bundle:
  """Random generator drawn from `seed` (upstream's init), with `w_avg` set to the mean w of `w_avg_samples` z."""
  module = Generator(config, rngs=nnx.Rngs(seed))
  if w_avg_samples:
    z = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 1), (w_avg_samples, config.z_dim), jnp.float32)
    module.mapping_net.w_avg[...] = jnp.mean(jax.jit(lambda m, z: m.mapping_net(z))(module, z), axis=0)
  return bundle(module)


def load(path: str | os.PathLike, **overrides: Any) -> bundle_lib.Bundle:
  """Any supported checkpoint (see `convert`) or a directory written by `convert_to`; `overrides` as in `convert`."""
  if converted.is_converted(path):
    config_dict, params = converted.load(path, NETWORK)
    config = Config.from_dict({**config_dict, **overrides})
  else:
    config, params = convert(path, **overrides)
  return bundle(from_params(config, params, str(path)))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike, **overrides: Any) -> Config:
  """`disentangle-jax convert stylegan2 SRC DST`: writes the converted-weights layout; returns the Config."""
  config, params = convert(src, **overrides)
  from_params(config, params, str(src))  # checks the tree against the module before anything is written
  converted.save(dst, NETWORK, config.to_dict(), params, source=str(src))
  return config
