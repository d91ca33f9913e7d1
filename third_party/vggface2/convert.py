"""Converts VGGFace2 ResNet-50 weights into this port's parameters, inferring the architecture from the file.

Accepted: cydonia999's `resnet50_ft_weight.pkl` / `resnet50_scratch_weight.pkl` (Python 2 pickles of numpy arrays
keyed by the PyTorch `state_dict` names, converted from the authors' Caffe models, without
`num_batches_tracked`), a PyTorch `state_dict` of that `models.resnet.ResNet` (`.pth`/`.pt`), or a `.npz` of the
same keys. An optional `dim_proj.weight` [proj_dim, 2048] / `dim_proj.bias` pair (PyTorch layout) holds the
Keras model's projection head. The Keras model's `.h5` (WeidiXie/Keras-VGGFace2-ResNet50, the paper's E_id) is
read by `keras_h5` into the same key scheme and gives a `flavor="keras"` network. Width, blocks per stage and classifier size come from the keys and shapes; every
key and shape is then checked, so a truncated or mis-shaped file fails naming the key.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import checkpoint_files
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import torch_layout
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError
from disentangle_jax.third_party.vggface2 import keras_h5
from disentangle_jax.third_party.vggface2 import model as model_lib

NETWORK = "vggface2"
_BLOCK = re.compile(r"^layer(\d+)\.(\d+)\.conv1\.weight$")


def rename(module_path: tuple[str, ...]) -> str:
  """Flax module path -> upstream module name (`layer1/block0/downsample_conv` -> `layer1.0.downsample.0`)."""
  names = {"downsample_conv": "downsample.0", "downsample_bn": "downsample.1", "proj": "dim_proj"}
  parts = []
  for p in module_path:
    parts.append(p[len("block") :] if p.startswith("block") and p[5:].isdigit() else names.get(p, p))
  return ".".join(parts)


def infer_config(
  state_dict: dict[str, np.ndarray], source: str, input_size: int = 224, flavor: str = "caffe"
) -> model_lib.Config:
  """The `Config` a state_dict was saved from: width from `conv1`, blocks per stage, classifier and head sizes."""
  if "conv1.weight" not in state_dict:
    raise CheckpointMismatchError(source, missing=["conv1.weight"])
  width = int(np.shape(state_dict["conv1.weight"])[0])
  blocks: dict[int, set[int]] = {}
  for key in state_dict:
    m = _BLOCK.match(key)
    if m:
      blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
  if not blocks or sorted(blocks) != list(range(1, len(blocks) + 1)):
    raise CheckpointMismatchError(source, missing=[f"layer{s}.0.conv1.weight" for s in range(1, 5) if s not in blocks])
  layers = []
  for s in sorted(blocks):
    n = max(blocks[s]) + 1
    if sorted(blocks[s]) != list(range(n)):
      raise CheckpointMismatchError(
        source, missing=[f"layer{s}.{i}.conv1.weight" for i in range(n) if i not in blocks[s]]
      )
    layers.append(n)
  num_classes = int(np.shape(state_dict["fc.weight"])[0]) if "fc.weight" in state_dict else 0
  proj_dim = int(np.shape(state_dict["dim_proj.weight"])[0]) if "dim_proj.weight" in state_dict else 0
  return model_lib.Config(
    width=width, layers=tuple(layers), num_classes=num_classes, proj_dim=proj_dim, input_size=input_size, flavor=flavor
  )


def rules(config: model_lib.Config) -> list[keymap.Rule]:
  """One `keymap.Rule` per variable of the network `config` describes, derived from the module (no allocation)."""
  return torch_layout.rules(lambda: model_lib.ResNet(config, rngs=nnx.Rngs(0)), rename)


def expected_state_dict(config: model_lib.Config) -> dict[str, tuple[int, ...]]:
  """Upstream key -> shape of the state_dict of `config` (without `num_batches_tracked`)."""
  return keymap.expected(rules(config))


def params_from_state_dict(
  state_dict: dict[str, np.ndarray], source: str, input_size: int = 224, flavor: str = "caffe"
) -> tuple[model_lib.Config, dict[str, Any]]:
  """(config, Flax params) from an upstream state_dict, checked key by key and shape by shape."""
  config = infer_config(state_dict, source, input_size, flavor)
  return config, keymap.apply(state_dict, rules(config), source, ignore=("num_batches_tracked",))


def convert(path: str | os.PathLike) -> tuple[model_lib.Config, dict[str, Any]]:
  """Reads any supported checkpoint file; returns its `Config` and the Flax parameter tree (numpy)."""
  path = os.fspath(path)
  if path.endswith((".h5", ".hdf5")):
    return params_from_state_dict(keras_h5.read_state_dict(path), path, flavor="keras")
  return params_from_state_dict(checkpoint_files.read_state_dict(path), path)
