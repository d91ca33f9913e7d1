"""Puts a converted parameter tree into a Flax NNX module, checking that the two trees match exactly."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import state_dict as state_dict_lib


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in tree.items():
    key = f"{prefix}/{k}" if prefix else str(k)
    if isinstance(v, dict):
      out.update(_flatten(v, key))
    else:
      out[key] = v
  return out


def assign(module: nnx.Module, params: dict[str, Any], source: str, variable_type: type = nnx.Variable) -> None:
  """Overwrites every variable of `module` (of `variable_type`) with `params`, a nested dict of arrays.

  Raises `CheckpointMismatchError` naming missing, unexpected and mis-shaped entries instead of broadcasting or
  silently keeping an initial value. `module` may be abstract (from `nnx.eval_shape`), which skips the random
  initialisation of weights that are overwritten anyway.
  """
  state = nnx.state(module, variable_type)
  pure = nnx.to_pure_dict(state)
  current = _flatten(pure)
  given = _flatten(params)  # keys as strings: a tree read back from disk has "0" where nnx.List has 0
  state_dict_lib.check(given, {k: tuple(np.shape(v)) for k, v in current.items()}, source)

  def fill(tree: dict[Any, Any], prefix: str) -> dict[Any, Any]:
    out = {}
    for k, v in tree.items():
      key = f"{prefix}/{k}" if prefix else str(k)
      out[k] = fill(v, key) if isinstance(v, dict) else np.asarray(given[key], dtype=v.dtype)
    return out

  nnx.replace_by_pure_dict(state, fill(pure, ""))
  nnx.update(module, state)


def params_of(module: nnx.Module, variable_type: type = nnx.Variable) -> dict[str, Any]:
  """The module's variables as a nested dict of numpy arrays (what `converted.save` stores)."""
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(module, variable_type)))
