"""StyleGAN v1 (Karras et al. 2019), the generator the identity-disentanglement paper used, as a frozen NNX module.

    from disentangle_jax.third_party import stylegan1
    g = stylegan1.load("stylegan-256px-new.model")  # rosinality .pt/.npz, NVlabs .pkl/.npz, Keras .h5, converted dir
    ws = g.mapping(z, truncation_psi=0.7)           # z [B, 512] -> ws [B, num_ws, 512]
    img = g.synthesis(ws, noise_mode="const")       # [B, 256, 256, 3] float32 NHWC

The API matches `stylegan2`; `g.module` is the NNX module for use inside a larger jitted function (and `jax.grad`
w.r.t. ws).
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import bundle as bundle_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.stylegan1.model import Buffer, Config, Generator, const_noise, mix_styles

convert_lib = importlib.import_module("disentangle_jax.third_party.stylegan1.convert")  # the module (readers)
convert = convert_lib.convert  # shadows the submodule name on purpose: `stylegan1.convert(path)` is the API
NETWORK = "stylegan1"
Module = Generator
# rosinality's released FFHQ model `stylegan-256px-new.model` (progressive step 6).
FFHQ256 = Config(resolution=256)
# Keyword arguments of the jitted bundle methods that are compile-time constants.
STATIC_ARGS = {"mapping": ("truncation_psi", "truncation_cutoff"), "synthesis": ("noise_mode", "dtype"),
               "truncate": ("truncation_psi", "truncation_cutoff")}

__all__ = ["Buffer", "Config", "FFHQ256", "Generator", "Module", "bundle", "const_noise", "convert", "convert_lib",
           "convert_to", "from_params", "init", "load", "mix_styles"]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    key = f"{prefix}/{k}" if prefix else str(k)
    out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
  return out


def from_params(config: Config, params: dict[str, Any], source: str = "params") -> Generator:
  """A `Generator` holding `params`, built without a random init, every entry and shape checked first."""
  abstract = nnx.eval_shape(lambda: Generator(config, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  expected = {k: tuple(v.shape) for k, v in _flatten(nnx.to_pure_dict(state)).items()}
  state_dict_lib.check(_flatten(params), expected, source)
  nnx.replace_by_pure_dict(state, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params))
  return nnx.merge(graphdef, state)


module_from_params = from_params


def bundle(module: Generator) -> bundle_lib.Bundle:
  """Wraps a generator so that `.mapping(...)` and `.synthesis(...)` run jitted."""
  return bundle_lib.Bundle(module, module.config, STATIC_ARGS)


def init(config: Config, seed: int, w_avg_samples: int = 4096) -> bundle_lib.Bundle:
  """Random generator from `seed` (upstream's init: N(0, 1) weights, zero biases and noise strengths), with
  `w_avg` the mean w of `w_avg_samples` z (so truncation pulls toward the centre of this network's W)."""
  module = Generator(config, rngs=nnx.Rngs(seed))
  if w_avg_samples:
    z = jax.random.normal(jax.random.fold_in(jax.random.key(seed), 1), (w_avg_samples, config.z_dim), jnp.float32)
    module.w_avg[...] = jnp.mean(jax.jit(lambda m, z: m.mapping(z)[:, 0])(module, z), axis=0)
  return bundle(module)


def load(path: str | os.PathLike, resolution: int | None = None, **overrides: Any) -> bundle_lib.Bundle:
  """A converted directory or any file `convert` reads -> bundle.

  `resolution` picks a rosinality checkpoint's progressive step; `overrides` replace Config fields that do not
  change the parameter shapes (`compute_dtype="bfloat16"`, `truncation_cutoff=8`, ...).
  """
  if converted.is_converted(path):
    config_dict, params = converted.load(path, NETWORK)
    config = Config.from_dict(config_dict)
  else:
    config, params = convert(path, resolution=resolution)
  if overrides:
    config = dataclasses.replace(config, **overrides)
  return bundle(from_params(config, params, str(path)))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike, resolution: int | None = None) -> Config:
  """`disentangle-jax convert stylegan1 SRC DST`: writes the converted-weights directory; returns the Config."""
  config, params = convert(src, resolution=resolution)
  from_params(config, params, str(src))  # checks every entry before anything is written
  converted.save(dst, NETWORK, config.to_dict(), params, source=str(src))
  return config
