"""pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` -> the FID Inception's parameters, with numpy alone.

The file is a plain torchvision-layout state_dict (no `AuxLogits.*`, a 1008-way `fc`), read with
`common.torch_pickle` (either `torch.save` format) and mapped by the shared InceptionV3's `keymap` rules, so every
missing, unexpected or mis-shaped key is named. torchvision's ImageNet InceptionV3 has the same trunk keys but other
weights and layer semantics: it is refused by name rather than converted into a network that runs and is wrong.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from disentangle_jax.nets import inception
from disentangle_jax.third_party.common import checkpoint_files
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError
from disentangle_jax.third_party.fid_inception.model import FID
from disentangle_jax.third_party.fid_inception.model import Config

NETWORK = "fid_inception"
NUM_CLASSES = 1008  # the 2015 graph's classifier: 1000 ImageNet classes + 8 unused


def infer_config(state_dict: dict[str, np.ndarray], source: str) -> Config:
  """The FID conventions at the width the stem has (1.0 for the released file); refuses other networks by name."""
  if any(k.startswith("AuxLogits.") for k in state_dict):
    raise CheckpointFormatError(
      f"{source}: has AuxLogits.* keys: a torchvision ImageNet InceptionV3 (convert it as inception_v3), not "
      "pytorch-fid's pt_inception-2015-12-05"
    )
  config = inception.infer_config(state_dict, source)
  if config.num_classes != NUM_CLASSES:
    raise CheckpointFormatError(
      f"{source}: fc.weight has {config.num_classes} classes; pytorch-fid's pt_inception-2015-12-05 has "
      f"{NUM_CLASSES} (a 1000-class file is torchvision's ImageNet InceptionV3: convert it as inception_v3)"
    )
  return dataclasses.replace(FID, width_multiplier=config.width_multiplier)


def rules(config: Config) -> list[keymap.Rule]:
  """The shared InceptionV3's rules: the FID patches change no key or shape."""
  return inception.rules(config)


def expected_state_dict(config: Config = FID) -> dict[str, tuple[int, ...]]:
  """pytorch-fid key -> shape (no `num_batches_tracked`)."""
  return keymap.expected(rules(config))


def convert(path: str | os.PathLike) -> tuple[Config, dict[str, Any]]:
  """Reads the `.pth` (or a `.npz` of the same keys), checking every key and shape; `num_batches_tracked` unused."""
  path = os.fspath(path)
  state_dict = checkpoint_files.read_state_dict(path)
  config = infer_config(state_dict, path)
  return config, keymap.apply(state_dict, rules(config), path, ignore=("num_batches_tracked",))
