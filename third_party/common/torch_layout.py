"""Maps a Flax NNX module's variables onto PyTorch `state_dict` keys and layouts, and back.

Ported CNNs mirror their upstream module tree, so a Flax variable path such as `("layer1", "block0", "bn1",
"scale")` names one upstream tensor (`layer1.0.bn1.weight`) up to two conventions: leaf names (`kernel`/`scale`
vs `weight`, `mean`/`var` vs `running_mean`/`running_var`) and layouts (Flax conv kernels are HWIO and dense
kernels `[in, out]`; PyTorch uses OIHW and `[out, in]`). A converter supplies only how module paths are renamed;
`rules` derives from the module itself the `keymap.Rule` (upstream key, shape, layout change) of every variable,
so the expected key set used for checking a checkpoint can never drift from the network that receives it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.third_party.common import keymap

# Flax leaf name -> PyTorch leaf name (BatchNorm scale/mean/var, conv/dense kernel, bias, PReLU slope).
LEAF_NAMES = {
  "kernel": "weight",
  "scale": "weight",
  "bias": "bias",
  "mean": "running_mean",
  "var": "running_var",
  "slope": "weight",
}


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


def torch_key(path: trees.Path, rename: Callable[[trees.Path], str]) -> str:
  """The upstream key of the Flax variable at `path`; `rename` maps the module part of the path to a prefix."""
  *module_path, leaf = path
  if leaf not in LEAF_NAMES:
    raise KeyError(f"variable {'/'.join(path)} has no PyTorch counterpart (leaf {leaf!r})")
  prefix = rename(tuple(module_path))
  return f"{prefix}.{LEAF_NAMES[leaf]}" if prefix else LEAF_NAMES[leaf]


def rules(module_factory: Callable[[], nnx.Module], rename: Callable[[trees.Path], str]) -> list[keymap.Rule]:
  """One `keymap.Rule` per variable of the module `module_factory()` builds (abstractly: nothing is allocated).

  `rename` maps a module path to its upstream prefix; the leaf names, shapes and layouts follow from the module.
  """
  abstract = nnx.eval_shape(module_factory)
  shapes = trees.flatten(nnx.to_pure_dict(nnx.state(abstract, nnx.Variable)))
  return [
    keymap.Rule(
      torch_key(p, rename), torch_shape(tuple(leaf.shape), p[-1]), p, functools.partial(from_torch, leaf=p[-1])
    )
    for p, leaf in shapes.items()
  ]


def state_dict_from_params(params: Mapping[str, Any], rename: Callable[[trees.Path], str]) -> dict[str, np.ndarray]:
  """The upstream state_dict (numpy) of a nested Flax parameter dict: what an `.npz` export holds."""
  return {torch_key(p, rename): to_torch(v, p[-1]) for p, v in trees.flatten(trees.to_numpy(params)).items()}
