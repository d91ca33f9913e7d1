"""Nested parameter dicts and NNX modules: the one place that flattens, converts and assigns them.

Parameter trees travel as nested dicts of arrays: what `nnx.to_pure_dict` gives, what Orbax restores and what the
converters of `third_party/` produce. Their keys are strings on disk but ints where an `nnx.List` holds submodules,
so every path here is a tuple of *strings*; a tree read back from disk and the module it came from then agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from flax import traverse_util

from disentangle_jax.third_party.common import state_dict as state_dict_lib

Path = tuple[str, ...]


def flatten(tree: Mapping[Any, Any]) -> dict[Path, Any]:
  """`{path of string keys: leaf}` of a nested dict (empty sub-dicts hold no leaf and are dropped)."""
  return {tuple(str(k) for k in path): leaf for path, leaf in traverse_util.flatten_dict(dict(tree)).items()}


def unflatten(flat: Mapping[Path, Any]) -> dict[str, Any]:
  """The nested dict of `{path: leaf}`; the inverse of `flatten`."""
  return traverse_util.unflatten_dict(dict(flat))


def to_numpy(tree: Mapping[Any, Any]) -> dict[str, Any]:
  """A host copy of a nested dict of arrays, with string keys (what Orbax writes and reads back)."""
  return unflatten({path: np.asarray(leaf) for path, leaf in flatten(tree).items()})


def params_of(module: nnx.Module, variable_type: Any = nnx.Variable) -> dict[str, Any]:
  """The module's variables of `variable_type` as a nested dict of numpy arrays."""
  return to_numpy(nnx.to_pure_dict(nnx.state(module, variable_type)))


def assign(module: nnx.Module, params: Mapping[str, Any], source: str, variable_type: Any = nnx.Variable) -> None:
  """Overwrites every variable of `module` (of `variable_type`) with `params`, each cast to the variable's dtype.

  The trees must match exactly: `CheckpointMismatchError` names every missing, unexpected and mis-shaped entry
  (as `a/b/c` paths, prefixed by `source`) instead of broadcasting or silently keeping an initial value. `module`
  may be abstract (`nnx.eval_shape`), so nothing is randomly initialised only to be overwritten.
  """
  state = nnx.state(module, variable_type)
  pure = nnx.to_pure_dict(state)
  given = {"/".join(path): leaf for path, leaf in flatten(params).items()}
  wanted = {"/".join(path): leaf for path, leaf in flatten(pure).items()}
  state_dict_lib.check(given, {key: tuple(np.shape(leaf)) for key, leaf in wanted.items()}, source)

  def fill(path: tuple[jax.tree_util.DictKey, ...], leaf: Any) -> jax.Array:
    return jnp.asarray(given["/".join(str(k.key) for k in path)], leaf.dtype)

  nnx.replace_by_pure_dict(state, jax.tree_util.tree_map_with_path(fill, pure))
  nnx.update(module, state)
