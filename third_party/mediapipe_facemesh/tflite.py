"""Reads a TensorFlow Lite model (its graph, op options and constant tensors) with numpy alone.

A `.tflite` file is a FlatBuffer of the `tflite.Model` schema (tensorflow/lite/schema/schema.fbs). We parse it
ourselves rather than through `tf.lite.Interpreter` because the interpreter does not expose op options (strides,
padding, fused activations), which the converters need to rebuild the network, and because it is deprecated;
every read is bounds-checked so a truncated or corrupt file fails with an error naming the file, never a segfault
or a silently short array. MediaPipe stores weights as float16 constants followed by DEQUANTIZE ops; `Model.value`
follows those ops and returns float32.

Models can be read from a `.tflite` file or straight from the MediaPipe wheel (a zip archive) that carries it.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import struct
import zipfile
from typing import Any

import numpy as np

from disentangle_jax import errors


class TFLiteFormatError(errors.UserError, ValueError):
  """A file is not a readable TFLite model (truncated, corrupt, or another format), or lacks the expected model."""


# BuiltinOperator codes of schema.fbs that the MediaPipe face models use, and their neighbours; others read as
# "BUILTIN_<code>" and are rejected by the converters by name.
_OP_NAMES = {
  0: "ADD",
  1: "AVERAGE_POOL_2D",
  2: "CONCATENATION",
  3: "CONV_2D",
  4: "DEPTHWISE_CONV_2D",
  5: "DEPTH_TO_SPACE",
  6: "DEQUANTIZE",
  9: "FULLY_CONNECTED",
  14: "LOGISTIC",
  17: "MAX_POOL_2D",
  18: "MUL",
  19: "RELU",
  20: "RELU_N1_TO_1",
  21: "RELU6",
  22: "RESHAPE",
  23: "RESIZE_BILINEAR",
  25: "SOFTMAX",
  28: "TANH",
  32: "CUSTOM",
  34: "PAD",
  39: "TRANSPOSE",
  40: "MEAN",
  41: "SUB",
  42: "DIV",
  43: "SQUEEZE",
  45: "STRIDED_SLICE",
  49: "SPLIT",
  53: "CAST",
  54: "PRELU",
  55: "MAXIMUM",
  57: "MINIMUM",
  60: "PADV2",
}

# TensorType enum -> numpy dtype (little-endian, as FlatBuffers store them).
_DTYPES = {
  0: np.dtype("<f4"),
  1: np.dtype("<f2"),
  2: np.dtype("<i4"),
  3: np.dtype("u1"),
  4: np.dtype("<i8"),
  6: np.dtype("?"),
  7: np.dtype("<i2"),
  9: np.dtype("i1"),
  10: np.dtype("<f8"),
}

_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_PADDINGS = {0: "SAME", 1: "VALID"}


@dataclasses.dataclass(frozen=True)
class Tensor:
  """One tensor of the graph: `buffer` 0 means it is computed at run time (no constant data)."""

  index: int
  name: str
  shape: tuple[int, ...]
  dtype: np.dtype
  buffer: int


@dataclasses.dataclass(frozen=True)
class Operator:
  """One op: its builtin name, tensor indices (-1 = optional input left out) and parsed options."""

  index: int
  op: str
  inputs: tuple[int, ...]
  outputs: tuple[int, ...]
  options: dict[str, Any]


class _Reader:
  """Bounds-checked little-endian FlatBuffer access into `data`."""

  def __init__(self, data: bytes, source: str):
    self.data = data
    self.source = source

  def fail(self, what: str) -> TFLiteFormatError:
    return TFLiteFormatError(f"{self.source}: truncated or corrupt TFLite file ({what})")

  def unpack(self, fmt: str, pos: int) -> Any:
    size = struct.calcsize(fmt)
    if pos < 0 or pos + size > len(self.data):
      raise self.fail(f"read of {size} bytes at offset {pos} past the end of {len(self.data)} bytes")
    return struct.unpack_from(fmt, self.data, pos)[0]

  def table(self, pos: int) -> _Table:
    vtable = pos - self.unpack("<i", pos)
    vt_size = self.unpack("<H", vtable)
    if vt_size < 4 or vtable + vt_size > len(self.data):
      raise self.fail(f"bad vtable at offset {vtable}")
    return _Table(self, pos, vtable, vt_size)


class _Table:
  """A FlatBuffer table: fields by slot number (their order in schema.fbs)."""

  def __init__(self, reader: _Reader, pos: int, vtable: int, vt_size: int):
    self.r, self.pos, self.vtable, self.vt_size = reader, pos, vtable, vt_size

  def _field(self, slot: int) -> int | None:
    entry = 4 + 2 * slot
    if entry + 2 > self.vt_size:
      return None
    offset = self.r.unpack("<H", self.vtable + entry)
    return self.pos + offset if offset else None

  def scalar(self, slot: int, fmt: str, default: Any = 0) -> Any:
    pos = self._field(slot)
    return default if pos is None else self.r.unpack(fmt, pos)

  def _indirect(self, slot: int) -> int | None:
    pos = self._field(slot)
    return None if pos is None else pos + self.r.unpack("<I", pos)

  def table(self, slot: int) -> _Table | None:
    pos = self._indirect(slot)
    return None if pos is None else self.r.table(pos)

  def _vector(self, slot: int, elem_size: int) -> tuple[int, int]:
    pos = self._indirect(slot)
    if pos is None:
      return 0, 0
    length = self.r.unpack("<I", pos)
    if pos + 4 + length * elem_size > len(self.r.data):
      raise self.r.fail(f"vector of {length} x {elem_size} bytes at offset {pos} runs past the end")
    return pos + 4, length

  def array(self, slot: int, dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    start, length = self._vector(slot, dt.itemsize)
    return np.frombuffer(self.r.data, dtype=dt, count=length, offset=start) if length else np.zeros(0, dt)

  def tables(self, slot: int) -> list[_Table]:
    start, length = self._vector(slot, 4)
    return [self.r.table(start + 4 * i + self.r.unpack("<I", start + 4 * i)) for i in range(length)]

  def string(self, slot: int) -> str:
    start, length = self._vector(slot, 1)
    return bytes(self.r.data[start : start + length]).decode("utf-8", errors="replace")


def _options(op: str, table: _Table | None) -> dict[str, Any]:
  """Parses the options table of the ops the converters rebuild (slot order from schema.fbs)."""
  if table is None:
    return {}
  if op == "CONV_2D":
    return {
      "padding": _PADDINGS.get(table.scalar(0, "<b")),
      "stride": (table.scalar(2, "<i"), table.scalar(1, "<i")),
      "activation": _ACTIVATIONS.get(table.scalar(3, "<b"), "?"),
      "dilation": (table.scalar(5, "<i", 1), table.scalar(4, "<i", 1)),
    }
  if op == "DEPTHWISE_CONV_2D":
    return {
      "padding": _PADDINGS.get(table.scalar(0, "<b")),
      "stride": (table.scalar(2, "<i"), table.scalar(1, "<i")),
      "depth_multiplier": table.scalar(3, "<i"),
      "activation": _ACTIVATIONS.get(table.scalar(4, "<b"), "?"),
      "dilation": (table.scalar(6, "<i", 1), table.scalar(5, "<i", 1)),
    }
  if op in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
    return {
      "padding": _PADDINGS.get(table.scalar(0, "<b")),
      "stride": (table.scalar(2, "<i"), table.scalar(1, "<i")),
      "filter": (table.scalar(4, "<i"), table.scalar(3, "<i")),
      "activation": _ACTIVATIONS.get(table.scalar(5, "<b"), "?"),
    }
  if op in ("ADD", "MUL", "SUB"):
    return {"activation": _ACTIVATIONS.get(table.scalar(0, "<b"), "?")}
  if op == "CONCATENATION":
    return {"axis": table.scalar(0, "<i"), "activation": _ACTIVATIONS.get(table.scalar(1, "<b"), "?")}
  if op == "RESHAPE":
    return {"new_shape": tuple(int(v) for v in table.array(0, "<i4"))}
  return {}


class Model:
  """The first subgraph of a TFLite model: tensors, operators, graph inputs/outputs and constant buffers."""

  def __init__(self, data: bytes, source: str):
    self.source = source
    if len(data) < 8:
      raise TFLiteFormatError(f"{source}: truncated or corrupt TFLite file ({len(data)} bytes)")
    if data[4:8] != b"TFL3":
      raise TFLiteFormatError(f"{source}: not a TFLite model (file identifier {bytes(data[4:8])!r}, expected b'TFL3')")
    r = _Reader(data, source)
    root = r.table(r.unpack("<I", 0))
    self.version = root.scalar(0, "<I")
    codes = []
    for code in root.tables(1):
      builtin = max(code.scalar(0, "<b"), code.scalar(3, "<i"))
      codes.append(f"CUSTOM:{code.string(1)}" if builtin == 32 else _OP_NAMES.get(builtin, f"BUILTIN_{builtin}"))
    subgraphs = root.tables(2)
    if not subgraphs:
      raise TFLiteFormatError(f"{source}: the TFLite model has no subgraph")
    graph = subgraphs[0]
    self.tensors: list[Tensor] = []
    for i, t in enumerate(graph.tables(0)):
      type_code = t.scalar(1, "<b")
      if type_code not in _DTYPES:
        raise TFLiteFormatError(f"{source}: tensor {i} has unsupported TensorType {type_code}")
      self.tensors.append(
        Tensor(i, t.string(3), tuple(int(s) for s in t.array(0, "<i4")), _DTYPES[type_code], t.scalar(2, "<I"))
      )
    self.inputs = tuple(int(i) for i in graph.array(1, "<i4"))
    self.outputs = tuple(int(i) for i in graph.array(2, "<i4"))
    self.operators: list[Operator] = []
    for i, o in enumerate(graph.tables(3)):
      opcode = o.scalar(0, "<I")
      if opcode >= len(codes):
        raise TFLiteFormatError(f"{source}: operator {i} refers to missing operator code {opcode}")
      name = codes[opcode]
      ins = tuple(int(v) for v in o.array(1, "<i4"))
      outs = tuple(int(v) for v in o.array(2, "<i4"))
      for t in ins + outs:
        if t >= len(self.tensors) or t < -1:
          raise TFLiteFormatError(f"{source}: operator {i} ({name}) refers to missing tensor {t}")
      self.operators.append(Operator(i, name, ins, outs, _options(name, o.table(4))))
    self._buffers: list[np.ndarray] = []
    for i, b in enumerate(root.tables(4)):
      offset, size = b.scalar(1, "<Q"), b.scalar(2, "<Q")
      if offset > 1:  # large models keep data outside the FlatBuffer, addressed from the file start
        if offset + size > len(data):
          raise r.fail(f"buffer {i} of {size} bytes at offset {offset} runs past the end")
        self._buffers.append(np.frombuffer(data, np.uint8, count=size, offset=offset))
      else:
        self._buffers.append(b.array(0, "u1"))
    for t in self.tensors:
      if t.buffer >= len(self._buffers):
        raise TFLiteFormatError(f"{source}: tensor {t.name!r} refers to missing buffer {t.buffer}")
      raw = self._buffers[t.buffer]
      want = int(np.prod(t.shape, dtype=np.int64)) * t.dtype.itemsize
      if raw.size and raw.size != want:
        raise TFLiteFormatError(
          f"{source}: tensor {t.name!r} of shape {t.shape} needs {want} bytes, its buffer has {raw.size}"
        )
    self._producer = {out: op for op in self.operators for out in op.outputs}
    self._consumers: dict[int, list[Operator]] = {}
    for op in self.operators:
      for t in op.inputs:
        if t >= 0:
          self._consumers.setdefault(t, []).append(op)

  def tensor(self, index: int) -> Tensor:
    return self.tensors[index]

  def producer(self, index: int) -> Operator | None:
    """The op that computes tensor `index` (None for graph inputs and constants)."""
    return self._producer.get(index)

  def consumers(self, index: int) -> list[Operator]:
    """The ops that read tensor `index`, in graph order."""
    return list(self._consumers.get(index, ()))

  def constant(self, index: int) -> np.ndarray | None:
    """The stored data of tensor `index` in its own dtype, or None if it is computed at run time."""
    t = self.tensors[index]
    raw = self._buffers[t.buffer]
    if not raw.size:
      return None
    return np.frombuffer(raw.tobytes(), dtype=t.dtype).reshape(t.shape)

  def value(self, index: int) -> np.ndarray:
    """A constant tensor as float32, following a DEQUANTIZE op back to its float16 (or float32) source."""
    data = self.constant(index)
    if data is None:
      op = self.producer(index)
      if op is None or op.op != "DEQUANTIZE":
        raise TFLiteFormatError(f"{self.source}: tensor {self.tensors[index].name!r} is not a constant")
      data = self.constant(op.inputs[0])
      if data is None:
        raise TFLiteFormatError(f"{self.source}: DEQUANTIZE input of {self.tensors[index].name!r} has no data")
      if data.dtype not in (np.dtype("<f2"), np.dtype("<f4")):
        raise TFLiteFormatError(
          f"{self.source}: {self.tensors[index].name!r} dequantizes {data.dtype} (only float16 weights are supported)"
        )
    return np.asarray(data, np.float32)

  def summary(self, skip: tuple[str, ...] = ("DEQUANTIZE",)) -> str:
    """One line per op: `index OP inputs -> outputs` with tensor names and shapes (a readable graph listing)."""

    def fmt(i: int) -> str:
      t = self.tensors[i]
      return f"{t.name}{list(t.shape)}"

    lines = []
    for op in self.operators:
      if op.op in skip:
        continue
      ins = ", ".join(fmt(i) for i in op.inputs if i >= 0)
      outs = ", ".join(fmt(i) for i in op.outputs)
      opts = f" {op.options}" if op.options else ""
      lines.append(f"{op.index:4d} {op.op} {ins} -> {outs}{opts}")
    return "\n".join(lines)


def read_bytes(path: str | os.PathLike, member: str) -> tuple[bytes, str]:
  """The bytes of a `.tflite` file, or of `member` inside a wheel / zip archive; returns (data, source name)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such file (expected a .tflite model or a mediapipe wheel)")
  with open(path, "rb") as f:
    head = f.read(8)
  # TFLite files with metadata may end in a zip of associated files, so the FlatBuffer identifier decides first.
  if head[4:8] != b"TFL3" and zipfile.is_zipfile(path):
    try:
      with zipfile.ZipFile(path) as archive:
        if member not in archive.namelist():
          raise TFLiteFormatError(
            f"{path}: the archive holds no {member} (is it a mediapipe wheel of a version "
            "that ships this model, such as mediapipe==0.10.21?)"
          )
        return archive.read(member), f"{path}!{member}"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
      raise TFLiteFormatError(f"{path}: corrupt zip archive while reading {member}: {e}") from e
  return path.read_bytes(), str(path)


def load(path: str | os.PathLike, member: str) -> Model:
  """Parses a `.tflite` file, or `member` of a wheel; raises `TFLiteFormatError` naming the file if unreadable."""
  data, source = read_bytes(path, member)
  return Model(data, source)
