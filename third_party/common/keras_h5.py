"""The one reader of Keras 2 HDF5 weight files (`Model.save_weights("x.h5")`, or `model.save` full-model files).

Layout (tf.keras / tf_keras `hdf5_format`): the root (or its `model_weights` group, in full-model files) lists its
layers, in the order of `model.layers`, in the attribute `layer_names`; each layer group lists its arrays, in the
order of `layer.weights`, in the attribute `weight_names` (paths relative to the group, such as `dense/kernel:0`).
An attribute over HDF5's 64 KiB limit is split by Keras into `layer_names0`, `layer_names1`, ...

Keras' auto-generated names depend on what else the saving process had built (`dense_4` in one run is `dense` in
another), so ports of subclassed or application models map layers by their order here, not by name. Every error
names the file, the layer and the weight at fault, and derives from `UserError`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError


@dataclasses.dataclass(frozen=True)
class Layer:
  """One layer group: its name and its (weight name, float32 array) pairs in file order."""

  name: str
  weights: tuple[tuple[str, np.ndarray], ...]

  @property
  def leaves(self) -> tuple[str, ...]:
    """The weights' short names (`dense/kernel:0` -> `kernel`), in order."""
    return tuple(short_name(n) for n, _ in self.weights)


def short_name(weight_name: str) -> str:
  """`block/conv/kernel:0` -> `kernel`: the variable's own name, without scopes or the `:0` output index."""
  return weight_name.split("/")[-1].split(":")[0]


def names(attrs: Any, key: str) -> list[str]:
  """An HDF5 name-list attribute, joined back from Keras' `key0`, `key1`, ... chunks when it was split."""
  if key in attrs:
    values = list(attrs[key])
  else:
    values, n = [], 0
    while f"{key}{n}" in attrs:
      values += list(attrs[f"{key}{n}"])
      n += 1
  return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def is_hdf5(path: str | os.PathLike) -> bool:
  """True if the file starts with the HDF5 signature."""
  with open(path, "rb") as f:
    return f.read(8) == b"\x89HDF\r\n\x1a\n"


def read(path: str | os.PathLike, *, skip_empty: bool = True) -> list[Layer]:
  """Every layer of a Keras HDF5 weights file, in `layer_names` order (layers without weights dropped if asked)."""
  import h5py  # pylint: disable=import-outside-toplevel

  path = os.fspath(path)
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise CheckpointFormatError(f"{path}: not a readable HDF5 file ({e})") from e
  out: list[Layer] = []
  with f:
    root = f["model_weights"] if "model_weights" in f else f
    layer_names = names(root.attrs, "layer_names")
    if not layer_names:
      raise CheckpointFormatError(f"{path}: no 'layer_names' attribute: not a Keras HDF5 weights file")
    for layer in layer_names:
      if layer not in root:
        raise CheckpointFormatError(f"{path}: layer {layer!r} is listed in 'layer_names' but has no group")
      group = root[layer]
      weights = []
      for weight in names(group.attrs, "weight_names"):
        try:
          array = np.asarray(group[weight][()], np.float32)
        except (KeyError, OSError, ValueError) as e:
          raise CheckpointFormatError(
            f"{path}: layer {layer!r}, weight {weight!r} is missing or unreadable ({e})"
          ) from e
        weights.append((weight, array))
      if weights or not skip_empty:
        out.append(Layer(layer, tuple(weights)))
  return out


def write(
  path: str | os.PathLike, layers: list[tuple[str, list[tuple[str, np.ndarray]]]], attrs: dict[str, Any] | None = None
) -> None:
  """Writes `save_weights`' legacy layout (tests and fixtures rebuild Keras files from their recorded layout)."""
  import h5py  # pylint: disable=import-outside-toplevel

  with h5py.File(os.fspath(path), "w") as f:
    for k, v in (attrs or {}).items():
      f.attrs[k] = v
    f.attrs["layer_names"] = np.array([n.encode("utf8") for n, _ in layers])
    for name, weights in layers:
      group = f.create_group(name)
      group.attrs["weight_names"] = np.array([w.encode("utf8") for w, _ in weights])
      for w, array in weights:
        group.create_dataset(w, data=np.asarray(array))
