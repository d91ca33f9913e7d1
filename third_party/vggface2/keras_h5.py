"""Reads the Keras VGGFace2 ResNet-50 `.h5` (WeidiXie/Keras-VGGFace2-ResNet50) as a PyTorch-named state_dict.

The file is read by the shared `third_party/common/keras_h5` (layer and weight names from the file's attributes,
not assumed); this model names its layers itself (no auto-generated names), so only the mapping of those names onto
the cydonia999 key scheme is fixed here:

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

from disentangle_jax.third_party.common import keras_h5
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError

_BLOCK = re.compile(r"^conv(\d+)_(\d+)_(1x1_reduce|3x3|1x1_increase|1x1_proj)(/bn)?$")
_CONV = {"1x1_reduce": "conv1", "3x3": "conv2", "1x1_increase": "conv3", "1x1_proj": "downsample.0"}
_BN = {"1x1_reduce": "bn1", "3x3": "bn2", "1x1_increase": "bn3", "1x1_proj": "downsample.1"}
_BN_LEAVES = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


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
  path = os.fspath(path)
  out: dict[str, np.ndarray] = {}
  for layer in keras_h5.read(path):
    prefix = module_name(layer.name)
    if prefix is None:
      raise CheckpointFormatError(f"{path}: unexpected layer {layer.name!r} with weights {sorted(layer.leaves)}")
    for leaf, (_, array) in zip(layer.leaves, layer.weights):
      if leaf == "kernel":
        array = array.transpose(3, 2, 0, 1) if array.ndim == 4 else array.T
        out[f"{prefix}.weight"] = np.ascontiguousarray(array)
      elif leaf == "bias":
        out[f"{prefix}.bias"] = array
      elif leaf in _BN_LEAVES:
        out[f"{prefix}.{_BN_LEAVES[leaf]}"] = array
      else:
        raise CheckpointFormatError(f"{path}: layer {layer.name!r} has an unexpected weight {leaf!r}")
  return out
