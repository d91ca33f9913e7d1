"""StyleGAN v1 (Karras et al. 2019), the generator the identity-disentanglement paper used, as a frozen NNX module.

    from disentangle_jax.third_party import stylegan1
    g = stylegan1.load("stylegan-256px-new.model")      # rosinality checkpoint, NVlabs .npz, Keras .h5 or converted dir
    ws = g.mapping(z, truncation_psi=0.7)               # z [B, 512] -> ws [B, num_ws, 512]
    img = g.synthesis(ws, noise_mode="const")           # [B, 256, 256, 3] float32 NHWC

The API matches `stylegan2`; `g.module` is the NNX module for use inside a larger jitted function.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import bundle as bundle_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.stylegan1.convert import convert
from disentangle_jax.third_party.stylegan1.model import Buffer, Config, Generator, const_noise, mix_styles

NETWORK = "stylegan1"
# rosinality's released FFHQ model `stylegan-256px-new.model`: progressive step 6.
FFHQ256 = Config(resolution=256)
_METHODS = {"mapping": ("truncation_cutoff",), "synthesis": ("noise_mode",), "truncate": ("truncation_cutoff",)}

__all__ = ["Buffer", "Config", "FFHQ256", "Generator", "const_noise", "convert", "convert_to", "init", "load",
           "mix_styles", "module_from_params"]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    key = f"{prefix}/{k}" if prefix else str(k)
    out.update(_flatten(v, key) if isinstance(v, dict) else {key: v})
  return out


def module_from_params(config: Config, params: dict[str, Any], source: str = "params") -> Generator:
  """Builds a `Generator` directly from a parameter tree (no random init), checking every entry and shape."""
  abstract = nnx.eval_shape(lambda: Generator(config, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  expected = {k: tuple(v.shape) for k, v in _flatten(nnx.to_pure_dict(state)).items()}
  state_dict_lib.check(_flatten(params), expected, source)
  nnx.replace_by_pure_dict(state, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params))
  return nnx.merge(graphdef, state)


def _bundle(module: Generator) -> bundle_lib.Bundle:
  return bundle_lib.Bundle(module, module.config, _METHODS)


def init(config: Config, seed: int) -> bundle_lib.Bundle:
  """A randomly initialised generator (upstream's init: N(0, 1) weights, zero biases and noise strengths)."""
  return _bundle(Generator(config, rngs=nnx.Rngs(seed)))


def load(path: str | os.PathLike, dtype: str | None = None, resolution: int | None = None) -> bundle_lib.Bundle:
  """A converted directory or any file `convert` reads -> bundle; `dtype` overrides the compute dtype."""
  if converted.is_converted(path):
    config_dict, params = converted.load(path, NETWORK)
    config = Config.from_dict(config_dict)
  else:
    config, params = convert(path, resolution=resolution)
  if dtype is not None:
    config = dataclasses.replace(config, dtype=dtype)
  return _bundle(module_from_params(config, params, str(path)))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike, resolution: int | None = None) -> None:
  """`disentangle-jax convert stylegan1 SRC DST`: writes the converted-weights directory (Orbax + config)."""
  config, params = convert(src, resolution=resolution)
  module_from_params(config, params, str(src))  # checks every entry before anything is written
  converted.save(dst, NETWORK, config.to_dict(), params, source=str(src))
