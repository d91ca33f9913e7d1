"""Converted weights on disk: an Orbax checkpoint of a network's parameters plus the config that sizes it.

Every converter (`disentangle-jax convert <network> SRC DST`) writes this layout, and every `load(path)` reads it
back without the original checkpoint:

    DST/network.json   {"network": "stylegan2", "config": {...}, "source": "<original file>"}
    DST/params/        Orbax StandardCheckpointer tree of float32 numpy arrays (the Flax parameter tree)
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import numpy as np

_META = "network.json"
_PARAMS = "params"


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
  params = _to_numpy(params)
  with ocp.StandardCheckpointer() as ckptr:
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
  return meta["config"], _to_numpy(params)


def _to_numpy(tree: Any) -> Any:
  if isinstance(tree, dict):
    return {str(k): _to_numpy(v) for k, v in tree.items()}
  return np.asarray(tree)
