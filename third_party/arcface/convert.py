"""Converts TreB1eN/InsightFace_Pytorch `Backbone` weights into this port's parameters, with no torch needed.

Accepted: a PyTorch `state_dict` of `model.Backbone(num_layers, drop_ratio, mode)` (`model_ir_se50.pth`, the
checkpoint pSp / e4e identity metrics load; `.pth`/`.pt`, either `torch.save` format, read by
`common/torch_pickle.py`), or a `.npz` of the same keys. Training wrappers (`{"state_dict": ...}`) and
`nn.DataParallel`'s `module.` prefixes are unwrapped. The architecture comes from the keys and shapes: stem width,
the width of every unit (a new stage starts where it changes), the SE reduction (0 without SE), embedding size, and
the input size the head's linear layer implies. Every key and shape is then checked against the module, so a file
that is not this network fails naming the keys that do not fit.

Upstream module names (`rename` maps this port's tree onto them):
  input_layer.{0 conv, 1 BN, 2 PReLU}
  body.<i>.shortcut_layer.{0 conv, 1 BN}   (only where the width changes)
  body.<i>.res_layer.{0 BN, 1 conv, 2 PReLU, 3 conv, 4 BN, 5 SE: fc1, fc2}
  output_layer.{0 BN2d, 3 Linear, 4 BatchNorm1d}  (1 is dropout, 2 the flatten)
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import numpy as np
from flax import nnx

from disentangle_jax.third_party.arcface import model as model_lib
from disentangle_jax.third_party.common import checkpoint_files
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import torch_layout
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError

NETWORK = "arcface"
_UNIT = re.compile(r"^body\.(\d+)\.res_layer\.1\.weight$")
_TOP = {"input_conv": "input_layer.0", "input_bn": "input_layer.1", "input_prelu": "input_layer.2"}
_TOP |= {"output_bn": "output_layer.0", "output_linear": "output_layer.3", "embedding_bn": "output_layer.4"}
_IN_UNIT = {"shortcut_conv": "shortcut_layer.0", "shortcut_bn": "shortcut_layer.1", "bn1": "res_layer.0"}
_IN_UNIT |= {"conv1": "res_layer.1", "prelu": "res_layer.2", "conv2": "res_layer.3", "bn2": "res_layer.4"}
_IN_UNIT |= {"se": "res_layer.5"}


def rename(module_path: tuple[str, ...]) -> str:
  """Flax module path -> upstream module name (`unit3/se/fc1` -> `body.3.res_layer.5.fc1`)."""
  if not module_path:
    return ""
  head, *rest = module_path
  if head.startswith("unit") and head[4:].isdigit():
    parts = [f"body.{head[4:]}"] + [_IN_UNIT.get(p, p) for p in rest[:1]] + list(rest[1:])
  else:
    parts = [_TOP.get(head, head)] + list(rest)
  return ".".join(parts)


def _shape(state_dict: dict[str, np.ndarray], key: str, source: str) -> tuple[int, ...]:
  if key not in state_dict:
    raise CheckpointMismatchError(source, missing=[key])
  return tuple(np.shape(state_dict[key]))


def infer_config(state_dict: dict[str, np.ndarray], source: str) -> model_lib.Config:
  """The `Config` a state_dict was saved from (see the module docstring)."""
  stem_width = _shape(state_dict, "input_layer.0.weight", source)[0]
  indices = sorted(int(m.group(1)) for m in map(_UNIT.match, state_dict) if m)
  if indices != list(range(len(indices))) or not indices:
    missing = [f"body.{i}.res_layer.1.weight" for i in range(max(indices, default=0) + 1) if i not in indices]
    raise CheckpointMismatchError(source, missing=missing or ["body.0.res_layer.1.weight"])
  widths: list[int] = []
  units: list[int] = []
  for i in indices:
    width = _shape(state_dict, f"body.{i}.res_layer.1.weight", source)[0]
    if widths and widths[-1] == width:
      units[-1] += 1
    else:
      widths.append(width)
      units.append(1)
  se_key = "body.0.res_layer.5.fc1.weight"
  se_reduction = widths[0] // max(1, _shape(state_dict, se_key, source)[0]) if se_key in state_dict else 0
  linear = "output_layer.3.weight"
  embedding_dim, flat = _shape(state_dict, linear, source)[:2]
  side = math.isqrt(flat // widths[-1])
  if side * side * widths[-1] != flat:
    raise CheckpointMismatchError(source, misshaped=[(linear, (embedding_dim, flat), (embedding_dim, widths[-1] * 49))])
  return model_lib.Config(
    stem_width=stem_width,
    widths=tuple(widths),
    units=tuple(units),
    se_reduction=se_reduction,
    embedding_dim=embedding_dim,
    input_size=side * 2 ** len(units),
  )


def rules(config: model_lib.Config) -> list[keymap.Rule]:
  """One `keymap.Rule` per variable of the network `config` describes, derived from the module (no allocation)."""
  return torch_layout.rules(lambda: model_lib.ArcFace(config, rngs=nnx.Rngs(0)), rename)


def expected_state_dict(config: model_lib.Config) -> dict[str, tuple[int, ...]]:
  """Upstream key -> shape of the state_dict of `config` (without `num_batches_tracked`)."""
  return keymap.expected(rules(config))


def params_from_state_dict(state_dict: dict[str, np.ndarray], source: str) -> tuple[model_lib.Config, dict[str, Any]]:
  """(config, Flax params) from an upstream state_dict, checked key by key and shape by shape."""
  config = infer_config(state_dict, source)
  return config, keymap.apply(state_dict, rules(config), source, ignore=("num_batches_tracked",))


def convert(path: str | os.PathLike) -> tuple[model_lib.Config, dict[str, Any]]:
  """Reads a checkpoint file (`.pth`/`.pt`/`.npz`); returns its `Config` and the Flax parameter tree (numpy)."""
  path = os.fspath(path)
  return params_from_state_dict(checkpoint_files.read_state_dict(path), path)
