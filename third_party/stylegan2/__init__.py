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
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import bundle as bundle_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.stylegan2 import convert as convert_lib  # the module (rules, readers)
from disentangle_jax.third_party.stylegan2.model import FFHQ256
from disentangle_jax.third_party.stylegan2.model import PAPER256
from disentangle_jax.third_party.stylegan2.model import ROSINALITY256
from disentangle_jax.third_party.stylegan2.model import Buffer
from disentangle_jax.third_party.stylegan2.model import Config
from disentangle_jax.third_party.stylegan2.model import Generator

NETWORK = "stylegan2"
convert = convert_lib.convert  # shadows the submodule name on purpose: `stylegan2.convert(path)` is the API
Module = Generator
# Keyword arguments of the jitted bundle methods that are compile-time constants.
STATIC_ARGS = {"mapping": ("truncation_psi", "truncation_cutoff"), "synthesis": ("noise_mode", "dtype")}

__all__ = ["Buffer", "Config", "FFHQ256", "Generator", "Module", "PAPER256", "ROSINALITY256", "bundle", "convert",
           "convert_lib", "convert_to", "from_params", "init", "load"]


def bundle(module: Generator) -> bundle_lib.Bundle:
  """Wraps a generator so that `.mapping(...)` and `.synthesis(...)` run jitted."""
  return bundle_lib.Bundle(module, module.config, STATIC_ARGS)


def _abstract(config: Config) -> Generator:
  return nnx.eval_shape(lambda: Generator(config, rngs=nnx.Rngs(0)))


def from_params(config: Config, params: dict[str, Any], source: str) -> Generator:
  """A generator holding `params`, checked key by key and shape by shape against the module `config` builds.

  The module is built abstractly (`nnx.eval_shape`), so no random initial weights are drawn only to be replaced.
  """
  graphdef, state = nnx.split(_abstract(config))
  expected = {"/".join(map(str, path)): tuple(np.shape(v)) for path, v in _flatten(nnx.to_pure_dict(state))}
  given = {"/".join(map(str, path)): np.asarray(v) for path, v in _flatten(params)}
  state_dict_lib.check(given, expected, source)
  nnx.replace_by_pure_dict(state, jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params))
  return nnx.merge(graphdef, state)


def _flatten(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
  out = []
  for k, v in tree.items():
    out += _flatten(v, prefix + (k,)) if isinstance(v, dict) else [(prefix + (k,), v)]
  return out


def init(config: Config, seed: int, w_avg_samples: int = 4096) -> bundle_lib.Bundle:
  """Random generator from `seed` with upstream's init; `w_avg` = the mean w of `w_avg_samples` z from the seed.

  Weights are drawn with numpy (PCG64 seeded `seed`) rather than by the module's constructor: drawing them op by
  op in JAX dispatches (or compiles) hundreds of small computations, which takes tens of seconds on a small CPU.
  """
  abstract = nnx.to_pure_dict(nnx.state(_abstract(config)))
  rng = np.random.default_rng(seed)

  def draw(path: tuple[str, ...], leaf: Any) -> np.ndarray:
    name, shape = path[-1], tuple(leaf.shape)
    if name in ("weight", "const", "noise_const"):
      scale = 1.0 / config.lr_multiplier if path[0] == "mapping_net" else 1.0
      return (rng.standard_normal(shape) * scale).astype(np.float32)
    fill = 1.0 if (name == "bias" and path[-2] == "affine") else 0.0  # affine biases start at 1
    return np.full(shape, fill, np.float32)

  params = _unflatten([(path, draw(path, leaf)) for path, leaf in _flatten(abstract)])
  if w_avg_samples:
    params["mapping_net"]["w_avg"] = convert_lib.mean_w(config, params, seed, w_avg_samples)
  return bundle(from_params(config, params, f"init(seed={seed})"))


def _unflatten(items: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, value in items:
    node = out
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  return out


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
