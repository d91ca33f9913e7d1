"""face-alignment FAN-2D checkpoints -> this port's parameters, with the architecture read off the checkpoint.

Reads the released `2DFAN4-*.pth.tar` (a bare `torch.save` state_dict in face-alignment 1.5.0), any other
`torch.save` of a FAN state_dict (optionally wrapped as {"state_dict": ...} and/or with DataParallel's `module.`
prefixes, as training scripts save them) or an `.npz` of the same keys, through the shared reader
(`common/checkpoint_files`); torch is never imported.

Key mapping. Every Flax variable path maps to one upstream key by joining with dots (`rename`), except that
ConvBlock's `downsample_bn` / `downsample_conv` are upstream's `downsample.0` / `downsample.2` (a Sequential with a
ReLU at index 1); leaf names and layouts follow `common/torch_layout`. `num_batches_tracked` is unused in eval mode
and ignored. The rules are derived from the module itself, so a key the module lacks or a module variable the
checkpoint lacks is reported, never skipped.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import checkpoint_files
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.common import torch_layout
from disentangle_jax.third_party.fan import model

NETWORK = "fan"
_MODULE_RENAMES = {"downsample_bn": "downsample.0", "downsample_conv": "downsample.2"}


def rename(module_path: tuple[str, ...]) -> str:
  """Flax module path -> face-alignment module name, e.g. ('m0', 'b1_4', 'downsample_bn') -> 'm0.b1_4.downsample.0'."""
  return ".".join(_MODULE_RENAMES.get(m, m) for m in module_path)


def rules(config: model.Config) -> list[keymap.Rule]:
  """One `keymap.Rule` per variable of the FAN `config` describes, derived from the module (no allocation)."""
  return torch_layout.rules(lambda: model.FAN(config, rngs=nnx.Rngs(0)), rename)


def infer_config(state_dict: dict[str, np.ndarray], source: str) -> model.Config:
  """Reads num_modules (the `l<i>.weight` heads), width (4x conv1's channels) and the landmark count."""
  missing = [k for k in ("conv1.weight", "l0.weight") if k not in state_dict]
  if missing:
    raise state_dict_lib.CheckpointMismatchError(source, missing=missing)
  heads = sorted(int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"l(\d+)\.weight", k)))
  if heads != list(range(len(heads))):
    raise state_dict_lib.CheckpointMismatchError(
      source, missing=[f"l{i}.weight" for i in range(max(heads) + 1) if i not in heads]
    )
  conv1, head = state_dict["conv1.weight"], state_dict["l0.weight"]
  if conv1.ndim != 4 or head.ndim != 4:
    raise state_dict_lib.CheckpointMismatchError(
      source,
      misshaped=[
        (k, tuple(state_dict[k].shape), "[out, in, kh, kw]")
        for k in ("conv1.weight", "l0.weight")
        if state_dict[k].ndim != 4
      ],
    )
  try:
    return model.Config(num_modules=len(heads), width=4 * int(conv1.shape[0]), num_landmarks=int(head.shape[0]))
  except ValueError as e:
    raise state_dict_lib.CheckpointMismatchError(
      source, misshaped=[("conv1.weight", tuple(conv1.shape), f"a supported FAN size ({e})")]
    ) from e


def to_state_dict(params: dict[str, Any]) -> dict[str, np.ndarray]:
  """Flax parameters -> a face-alignment state_dict (the inverse of `convert`; for export and for tests)."""
  return torch_layout.state_dict_from_params(params, rename)


def convert(path: str | os.PathLike) -> tuple[model.Config, dict[str, Any]]:
  """Any supported FAN checkpoint (not a converted directory) -> (Config, Flax parameter dict)."""
  state_dict = checkpoint_files.read_state_dict(path)
  config = infer_config(state_dict, str(path))
  return config, keymap.apply(state_dict, rules(config), str(path), ignore=("num_batches_tracked",))
