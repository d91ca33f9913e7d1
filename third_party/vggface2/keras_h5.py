"""Reads the Keras VGGFace2 ResNet-50 `.h5` (WeidiXie/Keras-VGGFace2-ResNet50) as a PyTorch-named state_dict.

Keras 2 HDF5 files (`model.save` or `save_weights`) list their layers in the root attribute `layer_names` (under
the `model_weights` group for full-model files), and each layer group lists its arrays, in order, in the attribute
`weight_names` (paths relative to the layer group, such as `conv2_1_1x1_reduce/kernel:0`). Names are read from
those attributes, not assumed; only the mapping of the model's layer names onto the cydonia999 key scheme is fixed:

    conv1/7x7_s2[/bn]                       -> conv1 / bn1
    conv{S}_{B}_1x1_reduce|_3x3|_1x1_increase[/bn] -> layer{S-1}.{B-1}.conv1|conv2|conv3 (bn1|bn2|bn3)
    conv{S}_{B}_1x1_proj[/bn]               -> layer{S-1}.{B-1}.downsample.0 (.1)
    dim_proj                                -> dim_proj         (Dense 2048 -> 512, ReLU)
    classifier_low_dim                      -> fc               (Dense 512 -> 8631, no bias; training mode only)

Kernels are converted to the PyTorch layouts (conv HWIO -> OIHW, dense [in, out] -> [out, in]) and BatchNorm's
gamma / beta / moving_mean / moving_variance to weight / bias / running_mean / running_var, so the result goes
through the same checked conversion as the other formats.
"""

from __future__ import annotations

import os
import re

import numpy as np

from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError

_BLOCK = re.compile(r"^conv(\d+)_(\d+)_(1x1_reduce|3x3|1x1_increase|1x1_proj)(/bn)?$")
_CONV = {"1x1_reduce": "conv1", "3x3": "conv2", "1x1_increase": "conv3", "1x1_proj": "downsample.0"}
_BN = {"1x1_reduce": "bn1", "3x3": "bn2", "1x1_increase": "bn3", "1x1_proj": "downsample.1"}
_BN_LEAVES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _decode(names) -> list[str]:
  return [n.decode("utf8") if isinstance(n, bytes) else str(n) for n in names]


def module_name(layer: str) -> str | None:
  """PyTorch module name of a Keras layer (None for layers without weights we port)."""
  if layer == "conv1/7x7_s2":
    return "conv1"
  if layer == "conv1/7x7_s2/bn":
    return "bn1"
  if layer in ("dim_proj", "classifier_low_dim"):
    return {"dim_proj": "dim_proj", "classifier_low_dim": "fc"}[layer]
  m = _BLOCK.match(layer)
  if m:
    stage, block, kind, bn = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
    return f"layer{stage - 1}.{block - 1}.{(_BN if bn else _CONV)[kind]}"
  return None


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """The file's weights as a PyTorch-named, PyTorch-layout state_dict of float32 arrays."""
  import h5py  # pylint: disable=import-outside-toplevel

  path = os.fspath(path)
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise CheckpointFormatError(f"{path}: not a readable HDF5 file ({e})") from e
  with f:
    root = f["model_weights"] if "model_weights" in f else f
    if "layer_names" not in root.attrs:
      raise CheckpointFormatError(f"{path}: no 'layer_names' attribute: not a Keras HDF5 weights file")
    out: dict[str, np.ndarray] = {}
    for layer in _decode(root.attrs["layer_names"]):
      try:
        group = root[layer]
        weight_names = _decode(group.attrs.get("weight_names", []))
        arrays = {name.split("/")[-1].split(":")[0]: np.asarray(group[name], np.float32) for name in weight_names}
      except (KeyError, OSError) as e:
        raise CheckpointFormatError(f"{path}: layer {layer!r} is missing or unreadable ({e})") from e
      if not arrays:
        continue
      prefix = module_name(layer)
      if prefix is None:
        raise CheckpointFormatError(f"{path}: unexpected layer {layer!r} with weights {sorted(arrays)}")
      for leaf, array in arrays.items():
        if leaf == "kernel":
          array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
          out[f"{prefix}.weight"] = np.ascontiguousarray(array)
        elif leaf == "bias":
          out[f"{prefix}.bias"] = array
        elif leaf in _BN_LEAVES:
          out[f"{prefix}.{_BN_LEAVES[leaf]}"] = array
        else:
          raise CheckpointFormatError(f"{path}: layer {layer!r} has an unexpected weight {leaf!r}")
  return out
