"""Converted weights on disk, and the one way every port builds a module that holds given weights.

Every converter (`disentangle-jax convert <network> SRC DST`) writes this layout, and every `load(path)` reads it
back without the original checkpoint:

    DST/network.json   {"network": "stylegan2", "config": {...}, "source": "<original file>"}
    DST/params/        Orbax StandardCheckpointer tree of float32 numpy arrays (the Flax parameter tree)

`build` makes the module abstractly and fills it (`trees.assign` checks every entry), so loading never draws
random weights only to overwrite them; `read` and `write` are the two halves every package's `load` and
`convert_to` share.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
from collections.abc import Callable
from typing import Any

from flax import nnx

from disentangle_jax import trees

_META = "network.json"
_PARAMS = "params"

# Orbax's asynchronous save keeps process-wide state (operation ids and the signals that say a temporary directory
# exists), so two saves running at once in threads of one process can write into each other's unfinished
# directories and fail ("Directory not empty") or mix files. Saves here run one at a time, each to the end.
_SAVE_LOCK = threading.Lock()


def is_converted(path: str | os.PathLike) -> bool:
  """True if `path` is a directory written by `save`."""
  return (pathlib.Path(path) / _META).is_file()


def save(dst: str | os.PathLike, network: str, config: dict[str, Any], params: Any, source: str = "") -> None:
  """Writes `params` (a pytree of arrays) and `config` to `dst`; refuses to overwrite an existing conversion."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  dst = pathlib.Path(dst).absolute()
  if dst.exists() and any(dst.iterdir()):
    raise FileExistsError(f"{dst} exists and is not empty; choose a new destination")
  dst.mkdir(parents=True, exist_ok=True)
  params = trees.to_numpy(params)
  with _SAVE_LOCK, ocp.StandardCheckpointer() as ckptr:
    ckptr.save(dst / _PARAMS, params)
    ckptr.wait_until_finished()
  # Written last: a directory without it is an unfinished conversion and `load` says so.
  (dst / _META).write_text(json.dumps({"network": network, "config": config, "source": str(source)}, indent=2))


def load(path: str | os.PathLike, network: str) -> tuple[dict[str, Any], Any]:
  """Reads a conversion written by `save`; returns (config dict, params pytree of numpy arrays)."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(path).absolute()
  if not is_converted(path):
    raise FileNotFoundError(f"{path} is not a converted-weights directory (no {_META}); run `disentangle-jax convert`")
  meta = json.loads((path / _META).read_text())
  if meta.get("network") != network:
    raise ValueError(f"{path} holds converted {meta.get('network')!r} weights, not {network!r}")
  with ocp.StandardCheckpointer() as ckptr:
    params = ckptr.restore(path / _PARAMS)
  return meta["config"], trees.to_numpy(params)


def build(module_cls: Callable[..., nnx.Module], config: Any, params: Any, source: str) -> nnx.Module:
  """`module_cls(config, rngs=...)` holding `params`, every entry and shape checked (errors prefixed by `source`).

  The module is built with `nnx.eval_shape`, so no random initial weights are drawn only to be replaced.
  """
  module = nnx.eval_shape(lambda: module_cls(config, rngs=nnx.Rngs(0)))
  trees.assign(module, params, source)
  return module


def read(
  path: str | os.PathLike, network: str, config_cls: Any, convert: Callable[..., tuple[Any, Any]], **convert_kwargs: Any
) -> tuple[Any, Any]:
  """(config, params) of a directory written by `save` (for `network`), or else `convert(path, **convert_kwargs)`."""
  if is_converted(path):
    config_dict, params = load(path, network)
    return config_cls.from_dict(config_dict), params
  return convert(path, **convert_kwargs)


def write(dst: str | os.PathLike, network: str, module: nnx.Module, source: str | os.PathLike) -> None:
  """Saves a built module's parameters and `module.config` (so only what `build` accepted is ever written)."""
  save(dst, network, module.config.to_dict(), trees.params_of(module), source=str(source))
