"""Reads PyTorch checkpoints (zip and legacy formats) with numpy alone, so converting needs no torch install.

`torch.save` writes either a zip archive (`<name>/data.pkl` plus one raw file per storage under `<name>/data/`)
or, before PyTorch 1.6 and for `_use_new_zipfile_serialization=False`, a "legacy" stream: magic number, protocol
version, system info, the object pickle, the list of storage keys, then each storage as an 8-byte element count
followed by its raw bytes. Both pickles refer to storages through `persistent_id`s and rebuild tensors with
`torch._utils._rebuild_tensor_v2`. This module answers those calls with numpy arrays and refuses every other
global it does not know, so loading an untrusted file cannot run code.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from typing import Any
from typing import BinaryIO

import numpy as np

from disentangle_jax import errors

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_STORAGE_DTYPES: dict[str, np.dtype] = {
  "DoubleStorage": np.dtype("<f8"),
  "FloatStorage": np.dtype("<f4"),
  "HalfStorage": np.dtype("<f2"),
  "BFloat16Storage": np.dtype("<u2"),  # reinterpreted as bfloat16 below
  "LongStorage": np.dtype("<i8"),
  "IntStorage": np.dtype("<i4"),
  "ShortStorage": np.dtype("<i2"),
  "CharStorage": np.dtype("i1"),
  "ByteStorage": np.dtype("u1"),
  "BoolStorage": np.dtype("?"),
}


class CheckpointFormatError(errors.UserError, ValueError):
  """A checkpoint file is not in the format its reader expects (truncated, corrupt, or another format)."""


class _StorageType:
  """Stands for a `torch.<X>Storage` class inside a pickle: only its element dtype matters."""

  def __init__(self, name: str):
    if name not in _STORAGE_DTYPES:
      raise CheckpointFormatError(f"unsupported torch storage type {name!r}")
    self.name = name
    self.dtype = _STORAGE_DTYPES[name]


class _Storage:
  """A flat typed buffer: what a tensor views."""

  def __init__(self, data: np.ndarray):
    self.data = data


def _as_array(storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> np.ndarray:
  data = storage.data
  if data.dtype == np.dtype("<u2") and getattr(storage, "bfloat16", False):
    data = (data.astype(np.uint32) << 16).view(np.float32)
  size = tuple(int(s) for s in size)
  if not size:
    return np.array(data[offset])
  itemsize = data.dtype.itemsize
  needed = offset + sum((s - 1) * st for s, st in zip(size, stride)) + 1 if all(size) else offset
  if needed > data.size:
    raise CheckpointFormatError(f"tensor of shape {size} reads past the end of its storage ({data.size} elements)")
  view = np.lib.stride_tricks.as_strided(
    data[offset:], shape=size, strides=tuple(int(s) * itemsize for s in stride), writeable=False
  )
  return np.ascontiguousarray(view)


class _LazyTensor:
  """A tensor of a legacy file, whose storage bytes come after the pickle that refers to them."""

  def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
    self.args = (storage, offset, size, stride)

  def resolve(self) -> np.ndarray:
    return _as_array(*self.args)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride):
  if getattr(storage, "pending", False):
    return _LazyTensor(storage, offset, tuple(size), tuple(stride))
  return _as_array(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data


def _rebuild_parameter_with_state(data, requires_grad=False, backward_hooks=None, state=None):
  del requires_grad, backward_hooks, state
  return data


class _TorchSize(tuple):
  pass


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
  ("collections", "OrderedDict"): collections.OrderedDict,
  ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
  ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
  ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
  ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
  ("torch", "Size"): _TorchSize,
  ("builtins", "set"): set,
  ("builtins", "frozenset"): frozenset,
  ("builtins", "slice"): slice,
  ("_codecs", "encode"): lambda text, encoding="utf-8": text.encode(encoding),  # protocol-2 bytes
  ("numpy", "dtype"): np.dtype,
  ("numpy", "ndarray"): np.ndarray,
}
# Plain pickles of numpy arrays (cydonia999's VGGFace2 weights) name numpy's reconstructors under either path.
_np_multiarray = getattr(np, "_core", None) or np.core  # pylint: disable=protected-access
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
  _SAFE_GLOBALS[(_module, "_reconstruct")] = _np_multiarray.multiarray._reconstruct  # pylint: disable=protected-access
  _SAFE_GLOBALS[(_module, "scalar")] = _np_multiarray.multiarray.scalar


class SafeUnpickler(pickle.Unpickler):
  """An unpickler that knows torch tensors, numpy arrays and plain containers, and nothing else.

  Subclasses extend `extra_globals` (for instance with stand-ins for upstream classes) and may override
  `persistent_load`. Anything not listed raises `CheckpointFormatError` naming the global.
  """

  extra_globals: dict[tuple[str, str], Any] = {}

  def __init__(self, file: BinaryIO, persistent_load: Callable[[Any], Any] | None = None):
    super().__init__(file)
    self._persistent = persistent_load

  def find_class(self, module: str, name: str) -> Any:
    if (module, name) in self.extra_globals:
      return self.extra_globals[(module, name)]
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[(module, name)]
    if module == "torch" and name.endswith("Storage"):
      return _StorageType(name)
    if module == "torch" and name in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool"):
      return name
    if module == "torch.storage" and name == "_load_from_bytes":
      return lambda b: load_legacy(io.BytesIO(b), unpickler_cls=type(self))
    raise CheckpointFormatError(f"the checkpoint refers to {module}.{name}, which this reader does not load")

  def persistent_load(self, pid: Any) -> Any:
    if self._persistent is None:
      raise CheckpointFormatError("unexpected persistent id in a plain pickle")
    return self._persistent(pid)


def _parse_storage_pid(pid: Any) -> tuple[_StorageType, str, int]:
  if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
    raise CheckpointFormatError(f"unknown persistent id {pid!r}")
  storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
  if isinstance(storage_type, str):  # a dtype name (UntypedStorage + dtype in newer files)
    storage_type = _StorageType({"float32": "FloatStorage", "float16": "HalfStorage"}.get(storage_type, storage_type))
  return storage_type, key, numel


def load_zip(path_or_file: str | BinaryIO, unpickler_cls: type[SafeUnpickler] = SafeUnpickler) -> Any:
  """Loads a zip-format `torch.save` file; tensors become numpy arrays."""
  try:
    archive = zipfile.ZipFile(path_or_file)
  except (zipfile.BadZipFile, OSError) as e:
    raise CheckpointFormatError(f"not a readable PyTorch zip checkpoint: {e}") from e
  with archive:
    names = archive.namelist()
    pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
    if not pkl:
      raise CheckpointFormatError("zip archive holds no data.pkl: not a PyTorch checkpoint")
    prefix = pkl[0][: -len("data.pkl")]
    byteorder = "little"
    if prefix + "byteorder" in names:
      byteorder = archive.read(prefix + "byteorder").decode().strip()
    cache: dict[str, _Storage] = {}

    def persistent(pid):
      storage_type, key, numel = _parse_storage_pid(pid)
      if key not in cache:
        try:
          raw = archive.read(f"{prefix}data/{key}")
        except (KeyError, zipfile.BadZipFile, OSError) as e:
          raise CheckpointFormatError(f"storage {key} is missing or corrupt: {e}") from e
        dtype = storage_type.dtype if byteorder == "little" else storage_type.dtype.newbyteorder(">")
        if len(raw) < numel * dtype.itemsize:
          raise CheckpointFormatError(f"storage {key} is truncated: {len(raw)} bytes for {numel} elements")
        storage = _Storage(np.frombuffer(raw, dtype=dtype, count=numel))
        storage.bfloat16 = storage_type.name == "BFloat16Storage"
        cache[key] = storage
      return cache[key]

    try:
      return unpickler_cls(io.BytesIO(archive.read(pkl[0])), persistent).load()
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile) as e:
      raise CheckpointFormatError(f"corrupt pickle in the PyTorch checkpoint: {e}") from e


def load_legacy(file: BinaryIO, unpickler_cls: type[SafeUnpickler] = SafeUnpickler) -> Any:
  """Loads a legacy (pre-zip) `torch.save` stream; tensors become numpy arrays."""
  try:
    magic = SafeUnpickler(file).load()
    if magic != _LEGACY_MAGIC:
      raise CheckpointFormatError("not a PyTorch checkpoint (bad magic number)")
    SafeUnpickler(file).load()  # protocol version
    SafeUnpickler(file).load()  # system info
    pending: dict[str, tuple[_StorageType, int]] = {}
    storages: dict[str, _Storage] = {}

    def persistent(pid):
      storage_type, key, numel = _parse_storage_pid(pid)
      if key not in storages:
        pending[key] = (storage_type, numel)
        storages[key] = _Storage(np.empty(0, storage_type.dtype))
        storages[key].pending = True
      return storages[key]

    result = unpickler_cls(file, persistent).load()
    keys = SafeUnpickler(file).load()
    for key in keys:
      storage_type, _ = pending[str(key)]
      (count,) = struct.unpack("<q", _read_exact(file, 8))
      raw = _read_exact(file, count * storage_type.dtype.itemsize)
      storages[str(key)].data = np.frombuffer(raw, dtype=storage_type.dtype)
      storages[str(key)].bfloat16 = storage_type.name == "BFloat16Storage"
      storages[str(key)].pending = False
  except (pickle.UnpicklingError, EOFError, struct.error) as e:
    raise CheckpointFormatError(f"corrupt or truncated legacy PyTorch checkpoint: {e}") from e
  return _resolve(result)


def _resolve(obj: Any, seen: set[int] | None = None) -> Any:
  """Replaces every `_LazyTensor` in a loaded object tree (containers and plain objects) by its array."""
  seen = set() if seen is None else seen
  if isinstance(obj, _LazyTensor):
    return obj.resolve()
  if id(obj) in seen or isinstance(obj, (np.ndarray, str, bytes, int, float, bool, type(None))):
    return obj
  seen.add(id(obj))
  if isinstance(obj, dict):
    for k in list(obj):
      obj[k] = _resolve(obj[k], seen)
  elif isinstance(obj, list):
    obj[:] = [_resolve(v, seen) for v in obj]
  elif isinstance(obj, tuple):
    return type(obj)(_resolve(v, seen) for v in obj) if type(obj) is tuple else obj
  elif hasattr(obj, "__dict__"):
    for k, v in vars(obj).items():
      setattr(obj, k, _resolve(v, seen))
  return obj


def _read_exact(file: BinaryIO, n: int) -> bytes:
  data = file.read(n)
  if len(data) != n:
    raise CheckpointFormatError(f"file truncated: wanted {n} bytes, got {len(data)}")
  return data


def load(path: str, unpickler_cls: type[SafeUnpickler] = SafeUnpickler) -> Any:
  """Loads a `torch.save` file of either format (or a plain pickle of numpy arrays); tensors become numpy.

  Its `CheckpointFormatError`s start with `path`, so callers pass them on as they are.
  """
  with open(path, "rb") as f:
    head = f.read(4)
  if head[:2] == b"PK":
    try:
      return load_zip(path, unpickler_cls)
    except CheckpointFormatError as e:
      raise CheckpointFormatError(f"{path}: {e}") from e
  with open(path, "rb") as f:
    try:
      is_legacy = SafeUnpickler(f).load() == _LEGACY_MAGIC
    except Exception:  # pylint: disable=broad-except
      is_legacy = False
    f.seek(0)
    if is_legacy:
      try:
        return load_legacy(f, unpickler_cls)
      except CheckpointFormatError as e:
        raise CheckpointFormatError(f"{path}: {e}") from e
    try:
      return _resolve(unpickler_cls(f).load())
    except CheckpointFormatError as e:
      raise CheckpointFormatError(f"{path}: {e}") from e
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointFormatError(f"{path}: neither a PyTorch checkpoint nor a readable pickle ({e})") from e
