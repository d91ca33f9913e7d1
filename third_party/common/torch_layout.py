"""Maps a Flax NNX module's variables onto PyTorch `state_dict` keys and layouts, and back.

Ported CNNs mirror their upstream module tree, so a Flax variable path such as `("layer1", "block0", "bn1",
"scale")` names one upstream tensor (`layer1.0.bn1.weight`) up to two conventions: leaf names (`kernel`/`scale`
vs `weight`, `mean`/`var` vs `running_mean`/`running_var`) and layouts (Flax conv kernels are HWIO and dense
kernels `[in, out]`; PyTorch uses OIHW and `[out, in]`). A converter supplies only how module paths are renamed;
this module derives from the module itself the upstream key and shape of every variable, so the expected key set
used for checking a checkpoint can never drift from the network that receives it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import state_dict as state_dict_lib

# Flax leaf name -> PyTorch leaf name (BatchNorm scale/mean/var, conv/dense kernel, bias).
LEAF_NAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}

Path = tuple[str, ...]


def _flatten(tree: Mapping[Any, Any], prefix: Path = ()) -> dict[Path, Any]:
  out: dict[Path, Any] = {}
  for k, v in tree.items():
    path = prefix + (str(k),)
    if isinstance(v, Mapping):
      out.update(_flatten(v, path))
    else:
      out[path] = v
  return out


def _unflatten(flat: Mapping[Path, Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, v in flat.items():
    node = out
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = v
  return out


def torch_shape(flax_shape: tuple[int, ...], leaf: str) -> tuple[int, ...]:
  """The upstream shape of a Flax variable: kernels are reordered, everything else is unchanged."""
  if leaf == "kernel" and len(flax_shape) == 4:  # HWIO -> OIHW
    h, w, i, o = flax_shape
    return (o, i, h, w)
  if leaf == "kernel" and len(flax_shape) == 2:  # [in, out] -> [out, in]
    return (flax_shape[1], flax_shape[0])
  return tuple(flax_shape)


def from_torch(array: np.ndarray, leaf: str) -> np.ndarray:
  """An upstream tensor in the Flax layout (float32)."""
  array = np.asarray(array, dtype=np.float32)
  if leaf == "kernel" and array.ndim == 4:
    return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
  if leaf == "kernel" and array.ndim == 2:
    return np.ascontiguousarray(array.T)
  return array


def to_torch(array: np.ndarray, leaf: str) -> np.ndarray:
  """A Flax variable in the upstream layout (the inverse of `from_torch`)."""
  array = np.asarray(array)
  if leaf == "kernel" and array.ndim == 4:
    return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
  if leaf == "kernel" and array.ndim == 2:
    return np.ascontiguousarray(array.T)
  return array


def variable_shapes(module_factory: Callable[[], nnx.Module]) -> dict[Path, tuple[int, ...]]:
  """Path -> shape of every variable of the module `module_factory()` builds, without allocating it."""
  abstract = nnx.eval_shape(module_factory)
  pure = nnx.to_pure_dict(nnx.state(abstract, nnx.Variable))
  return {path: tuple(leaf.shape) for path, leaf in _flatten(pure).items()}


def torch_key(path: Path, rename: Callable[[Path], str]) -> str:
  """The upstream key of the Flax variable at `path`; `rename` maps the module part of the path to a prefix."""
  *module_path, leaf = path
  if leaf not in LEAF_NAMES:
    raise KeyError(f"variable {'/'.join(path)} has no PyTorch counterpart (leaf {leaf!r})")
  prefix = rename(tuple(module_path))
  return f"{prefix}.{LEAF_NAMES[leaf]}" if prefix else LEAF_NAMES[leaf]


def expected_state_dict(shapes: Mapping[Path, tuple[int, ...]], rename: Callable[[Path], str]) -> dict[str, tuple]:
  """Upstream key -> upstream shape for the variables `shapes` (from `variable_shapes`)."""
  return {torch_key(p, rename): torch_shape(s, p[-1]) for p, s in shapes.items()}


def params_from_state_dict(state_dict: Mapping[str, np.ndarray], shapes: Mapping[Path, tuple[int, ...]],
                           rename: Callable[[Path], str], source: str,
                           ignore: tuple[str, ...] = ("num_batches_tracked",)) -> dict[str, Any]:
  """Checks `state_dict` against the module's variables and returns the nested Flax parameter dict.

  Raises `CheckpointMismatchError` naming every missing, unexpected or mis-shaped key.
  """
  expected = expected_state_dict(shapes, rename)
  state_dict_lib.check(state_dict, expected, source, ignore=ignore)
  flat = {p: from_torch(state_dict[torch_key(p, rename)], p[-1]) for p in shapes}
  return _unflatten(flat)


def state_dict_from_params(params: Mapping[str, Any], rename: Callable[[Path], str]) -> dict[str, np.ndarray]:
  """The upstream state_dict (numpy) of a nested Flax parameter dict: what an `.npz` export holds."""
  flat = _flatten(jax.tree.map(np.asarray, dict(params)))
  return {torch_key(p, rename): to_torch(v, p[-1]) for p, v in flat.items()}
