"""Writes PyTorch checkpoint files without torch, so tests can exercise the converters' torch-format paths.

The pickles name the same globals PyTorch writes (`torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`,
`collections.OrderedDict`, `torch.storage._load_from_bytes`): Python's pickler resolves a global by importing its
module, so while pickling, `fake_modules` puts stand-in modules of those names into `sys.modules` and takes them out
again afterwards.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_NAMES = {
  np.dtype("float32"): "FloatStorage",
  np.dtype("float64"): "DoubleStorage",
  np.dtype("float16"): "HalfStorage",
  np.dtype("int64"): "LongStorage",
  np.dtype("int32"): "IntStorage",
  np.dtype("uint8"): "ByteStorage",
  np.dtype("bool"): "BoolStorage",
}


@contextlib.contextmanager
def fake_modules(globals_by_module: dict[str, dict[str, Any]]) -> Iterator[None]:
  """Makes `module.name` resolvable for the pickler: {"torch._utils": {"_rebuild_tensor_v2": fn}, ...}."""
  saved = {}
  for module_name, members in globals_by_module.items():
    saved[module_name] = sys.modules.get(module_name)
    module = types.ModuleType(module_name)
    for name, obj in members.items():
      setattr(module, name, obj)
      if isinstance(obj, (types.FunctionType, type)):
        obj.__module__, obj.__qualname__ = module_name, name
    sys.modules[module_name] = module
  try:
    yield
  finally:
    for module_name, old in saved.items():
      if old is None:
        sys.modules.pop(module_name, None)
      else:
        sys.modules[module_name] = old


def _rebuild_tensor_v2(*args):  # only its name is pickled
  raise NotImplementedError


def _load_from_bytes(data):  # only its name is pickled
  raise NotImplementedError


def _storage_type(dtype: np.dtype) -> type:
  return type(_STORAGE_NAMES[np.dtype(dtype)], (), {})


class _StorageRef:
  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, np.ascontiguousarray(array)


def _torch_globals(storage_types: dict[str, type]) -> dict[str, dict[str, Any]]:
  return {
    "torch": dict(storage_types),
    "torch._utils": {"_rebuild_tensor_v2": _rebuild_tensor_v2},
    "torch.storage": {"_load_from_bytes": _load_from_bytes},
  }


def _strides(shape: tuple[int, ...]) -> tuple[int, ...]:
  strides, acc = [], 1
  for size in reversed(shape):
    strides.append(acc)
    acc *= max(size, 1)
  return tuple(reversed(strides))


class _Pickler(pickle.Pickler):
  """Pickles numpy arrays as torch tensors whose storages are persistent ids (zip and legacy formats)."""

  def __init__(
    self,
    file,
    storages: dict[int, _StorageRef],
    storage_types: dict[str, type],
    tensor_reducer: Callable[[np.ndarray], Any] | None = None,
  ):
    super().__init__(file, protocol=2)
    self.storages = storages
    self.storage_types = storage_types
    self.tensor_reducer = tensor_reducer

  def reducer_override(self, obj):
    if isinstance(obj, np.ndarray):
      if self.tensor_reducer is not None:
        return self.tensor_reducer(obj)
      ref = self.storages.setdefault(id(obj), _StorageRef(str(len(self.storages)), obj))
      return _rebuild_tensor_v2, (ref, 0, tuple(obj.shape), _strides(obj.shape), False, collections.OrderedDict())
    return NotImplemented

  def persistent_id(self, obj):
    if isinstance(obj, _StorageRef):
      return ("storage", self.storage_types[_STORAGE_NAMES[obj.array.dtype]], obj.key, "cpu", obj.array.size)
    return None


def _types_for(obj: Any) -> dict[str, type]:
  return {name: type(name, (), {}) for name in _STORAGE_NAMES.values()}


def save(obj: Any, path: str, extra_globals: dict[str, dict[str, Any]] | None = None) -> None:
  """Writes `obj` (dicts / lists of numpy arrays) as a zip-format `torch.save` file."""
  types_ = _types_for(obj)
  storages: dict[int, _StorageRef] = {}
  buf = io.BytesIO()
  with fake_modules({**_torch_globals(types_), **(extra_globals or {})}):
    _Pickler(buf, storages, types_).dump(obj)
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/byteorder", "little")
    for ref in storages.values():
      z.writestr(f"archive/data/{ref.key}", ref.array.astype(ref.array.dtype.newbyteorder("<")).tobytes())
    z.writestr("archive/version", "3\n")


def legacy_bytes(obj: Any) -> bytes:
  """`obj` in the legacy (pre-zip) `torch.save` stream format."""
  types_ = _types_for(obj)
  storages: dict[int, _StorageRef] = {}
  buf = io.BytesIO()
  with fake_modules(_torch_globals(types_)):
    pickle.dump(_LEGACY_MAGIC, buf, protocol=2)
    pickle.dump(1001, buf, protocol=2)
    pickle.dump(
      {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}},
      buf,
      protocol=2,
    )
    _Pickler(buf, storages, types_).dump(obj)
    pickle.dump([ref.key for ref in storages.values()], buf, protocol=2)
  for ref in storages.values():
    buf.write(struct.pack("<q", ref.array.size))
    buf.write(ref.array.astype(ref.array.dtype.newbyteorder("<")).tobytes())
  return buf.getvalue()


def save_legacy(obj: Any, path: str) -> None:
  """Writes `obj` as a legacy-format `torch.save` file (the format of older `.pth.tar` checkpoints)."""
  with open(path, "wb") as f:
    f.write(legacy_bytes(obj))


def _storage_only(array: np.ndarray) -> _StorageRef:
  return _StorageRef("0", np.ascontiguousarray(array).reshape(-1))


def pickle_with_tensors(obj: Any, extra_globals: dict[str, dict[str, Any]] | None = None) -> bytes:
  """A plain pickle (not `torch.save`) in which arrays are tensors, as `pickle.dump` of torch objects writes them.

  PyTorch pickles a tensor's storage through `torch.storage._load_from_bytes(<legacy torch.save of the storage>)`;
  this is how network snapshots such as stylegan2-ada-pytorch's `.pkl` hold their weights. `extra_globals` adds
  stand-in modules (e.g. for classes whose instances `obj` contains).
  """
  types_ = _types_for(obj)

  def reduce_tensor(array: np.ndarray):
    storage_bytes = _legacy_storage_bytes(array, types_)
    return _rebuild_tensor_v2, (
      _BytesStorage(storage_bytes),
      0,
      tuple(array.shape),
      _strides(array.shape),
      False,
      collections.OrderedDict(),
    )

  buf = io.BytesIO()
  with fake_modules({**_torch_globals(types_), **(extra_globals or {})}):
    _Pickler(buf, {}, types_, tensor_reducer=reduce_tensor).dump(obj)
  return buf.getvalue()


class _BytesStorage:
  def __init__(self, data: bytes):
    self.data = data

  def __reduce__(self):
    return _load_from_bytes, (self.data,)


def _legacy_storage_bytes(array: np.ndarray, types_: dict[str, type]) -> bytes:
  flat = np.ascontiguousarray(array).reshape(-1)
  ref = _StorageRef("0", flat)
  buf = io.BytesIO()
  pickle.dump(_LEGACY_MAGIC, buf, protocol=2)
  pickle.dump(1001, buf, protocol=2)
  pickle.dump(
    {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, buf, protocol=2
  )
  pickler = _Pickler(buf, {}, types_)
  pickler.dump(ref)
  pickle.dump([ref.key], buf, protocol=2)
  buf.write(struct.pack("<q", flat.size))
  buf.write(flat.astype(flat.dtype.newbyteorder("<")).tobytes())
  return buf.getvalue()
