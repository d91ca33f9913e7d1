"""Reads a flat `name -> array` state_dict from the file formats the CNN converters accept, with numpy alone.

Formats: `.npz` (numpy), PyTorch `torch.save` files of either format (`.pth`, `.pt`, `.pth.tar`), and plain
pickles of numpy arrays such as the Caffe-converted VGGFace2 weights (`resnet50_ft_weight.pkl`), which were written
by Python 2 and need `encoding="latin1"` to unpickle their arrays' raw bytes. Training checkpoints that wrap the
weights (`{"state_dict": ...}`, `{"model_state_dict": ...}`) and `nn.DataParallel` key prefixes (`module.`) are
unwrapped. Any file that is not one of these, or is truncated, raises `CheckpointFormatError` naming the file.
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any
from typing import BinaryIO

import numpy as np

from disentangle_jax.third_party.common import torch_pickle
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError

_WRAPPERS = ("state_dict", "model_state_dict", "model", "net")


class _Latin1Unpickler(torch_pickle.SafeUnpickler):
  """`SafeUnpickler` that decodes Python 2 byte strings as latin1 (how numpy arrays pickled by Python 2 load)."""

  def __init__(self, file: BinaryIO, persistent_load: Callable[[Any], Any] | None = None):
    pickle.Unpickler.__init__(self, file, encoding="latin1")  # pylint: disable=non-parent-init-called
    self._persistent = persistent_load


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Loads `path` (.npz, torch checkpoint or pickle) as an ordered dict of numpy arrays."""
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such checkpoint file")
  if path.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as data:
        obj = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
      raise CheckpointFormatError(f"{path}: not a readable .npz file ({e})") from e
  else:
    obj = torch_pickle.load(path, unpickler_cls=_Latin1Unpickler)  # its errors name the file already
  return _as_state_dict(obj, path)


def _as_state_dict(obj: Any, path: str) -> dict[str, np.ndarray]:
  if isinstance(obj, Mapping):
    for key in _WRAPPERS:
      if key in obj and isinstance(obj[key], Mapping) and not isinstance(obj[key], np.ndarray):
        obj = obj[key]
        break
  if not isinstance(obj, Mapping):
    raise CheckpointFormatError(f"{path}: holds a {type(obj).__name__}, not a state_dict of arrays")
  out = {}
  for k, v in obj.items():
    if not isinstance(v, (np.ndarray, np.generic, int, float)):
      raise CheckpointFormatError(f"{path}: entry {k!r} is a {type(v).__name__}, not an array")
    key = str(k)
    out[key[len("module.") :] if key.startswith("module.") else key] = np.asarray(v)
  return out
