"""Turns a parsed TFLite graph into a list of layers (convolutions and BlazeBlocks) by following its data flow.

The converters do not rely on tensor names (MediaPipe's exporter numbers them in an order that is not the graph
order, and renames them between releases); they walk from the input tensor along the ops that consume it and
recognise two patterns:

  conv:   CONV_2D [-> PRELU | RELU]
  block:  DEPTHWISE_CONV_2D -> CONV_2D 1x1 -> ADD(shortcut) [-> PRELU | RELU],
          shortcut = the block input, or MAX_POOL_2D(input) [-> PAD channels]

Anything else stops the walk (a fork, the heads) or raises `GraphError` naming the file and the op. The result
holds the weights in Flax layouts: conv kernels HWIO (TFLite stores OHWI), depthwise kernels HW1C (TFLite 1HWC).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from disentangle_jax.third_party.mediapipe_facemesh import tflite


class GraphError(tflite.TFLiteFormatError):
  """The TFLite graph does not have the structure the port rebuilds."""


@dataclasses.dataclass
class Conv:
  """CONV_2D [+ activation]."""

  kernel: np.ndarray  # HWIO
  bias: np.ndarray
  stride: int
  padding: str
  activation: str
  alpha: np.ndarray | None = None

  @property
  def out_channels(self) -> int:
    return self.kernel.shape[-1]

  def params(self) -> dict[str, Any]:
    out: dict[str, Any] = {"conv": {"kernel": self.kernel, "bias": self.bias}}
    if self.activation == "prelu":
      out["act"] = {"alpha": self.alpha}
    return out


@dataclasses.dataclass
class Block:
  """A BlazeBlock: depthwise + pointwise + shortcut + activation."""

  dw_kernel: np.ndarray  # HW1C
  dw_bias: np.ndarray
  pw_kernel: np.ndarray  # 11IO
  pw_bias: np.ndarray
  stride: int
  activation: str
  alpha: np.ndarray | None = None

  @property
  def out_channels(self) -> int:
    return self.pw_kernel.shape[-1]

  def params(self) -> dict[str, Any]:
    out: dict[str, Any] = {
      "depthwise": {"kernel": self.dw_kernel, "bias": self.dw_bias},
      "pointwise": {"kernel": self.pw_kernel, "bias": self.pw_bias},
    }
    if self.activation == "prelu":
      out["act"] = {"alpha": self.alpha}
    return out


class Walker:
  """Reads layers out of `model` starting from any tensor."""

  def __init__(self, model: tflite.Model):
    self.model = model

  def error(self, op: tflite.Operator | None, message: str) -> GraphError:
    where = f"op {op.index} ({op.op})" if op is not None else "graph"
    return GraphError(f"{self.model.source}: {where}: {message}")

  def _single_consumer(self, tensor: int, allowed: tuple[str, ...]) -> tflite.Operator | None:
    ops = self.model.consumers(tensor)
    if len(ops) == 1 and ops[0].op in allowed and tensor not in self.model.outputs:
      return ops[0]
    return None

  def _activation(self, tensor: int, fused: str, op: tflite.Operator) -> tuple[str, np.ndarray | None, int]:
    """The activation after `tensor`: fused into `op`, or a PRELU / RELU op that alone consumes it."""
    if fused == "RELU":
      return "relu", None, tensor
    if fused != "NONE":
      raise self.error(op, f"unsupported fused activation {fused}")
    nxt = self._single_consumer(tensor, ("PRELU", "RELU"))
    if nxt is None:
      return "none", None, tensor
    if nxt.op == "RELU":
      return "relu", None, nxt.outputs[0]
    alpha = self.model.value(nxt.inputs[1]).reshape(-1)
    return "prelu", alpha, nxt.outputs[0]

  def _check_conv_options(self, op: tflite.Operator) -> int:
    opts = op.options
    if opts.get("dilation", (1, 1)) != (1, 1):
      raise self.error(op, f"dilated convolutions are not supported ({opts.get('dilation')})")
    stride = opts.get("stride", (1, 1))
    if stride[0] != stride[1]:
      raise self.error(op, f"unequal strides {stride} are not supported")
    if opts.get("padding") not in ("SAME", "VALID"):
      raise self.error(op, f"unknown padding {opts.get('padding')}")
    return int(stride[0])

  def conv(self, op: tflite.Operator) -> tuple[Conv, int]:
    """A CONV_2D op and the activation after it; returns the layer and its output tensor."""
    if op.op != "CONV_2D":
      raise self.error(op, "expected CONV_2D")
    stride = self._check_conv_options(op)
    kernel = self.model.value(op.inputs[1])  # OHWI
    bias = (
      self.model.value(op.inputs[2])
      if len(op.inputs) > 2 and op.inputs[2] >= 0
      else np.zeros(kernel.shape[0], np.float32)
    )
    act, alpha, out = self._activation(op.outputs[0], op.options.get("activation", "NONE"), op)
    return Conv(np.transpose(kernel, (1, 2, 3, 0)), bias, stride, op.options["padding"], act, alpha), out

  def block(self, dw: tflite.Operator) -> tuple[Block, int]:
    """A BlazeBlock starting at the DEPTHWISE_CONV_2D `dw`; returns the layer and its output tensor."""
    if dw.op != "DEPTHWISE_CONV_2D":
      raise self.error(dw, "expected DEPTHWISE_CONV_2D")
    stride = self._check_conv_options(dw)
    if dw.options.get("depth_multiplier", 1) != 1 or dw.options.get("activation") != "NONE":
      raise self.error(dw, f"unsupported depthwise options {dw.options}")
    source = dw.inputs[0]
    pw = self._single_consumer(dw.outputs[0], ("CONV_2D",))
    if pw is None:
      raise self.error(dw, "its output is not read by a single 1x1 CONV_2D")
    pw_spec, pw_out = self.conv(pw)
    if pw_spec.kernel.shape[:2] != (1, 1) or pw_spec.stride != 1 or pw_spec.activation != "none":
      raise self.error(pw, "expected a 1x1 stride-1 CONV_2D without activation after the depthwise convolution")
    add = self._single_consumer(pw_out, ("ADD",))
    if add is None:
      raise self.error(pw, "its output is not added to a shortcut")
    skip = [t for t in add.inputs if t != pw_out]
    if len(skip) != 1:
      raise self.error(add, "expected exactly one shortcut input")
    self._check_shortcut(add, skip[0], source, stride, pw_spec.out_channels)
    act, alpha, out = self._activation(add.outputs[0], add.options.get("activation", "NONE"), add)
    dw_kernel = self.model.value(dw.inputs[1])  # 1HWC
    dw_bias = self.model.value(dw.inputs[2])
    return Block(np.transpose(dw_kernel, (1, 2, 0, 3)), dw_bias, pw_spec.kernel, pw_spec.bias, stride, act, alpha), out

  def _check_shortcut(self, add: tflite.Operator, skip: int, source: int, stride: int, out_channels: int) -> None:
    in_channels = self.model.tensor(source).shape[-1]
    tensor = skip
    op = self.model.producer(tensor)
    if op is not None and op.op == "PAD":
      pads = self.model.constant(op.inputs[1])
      want = np.zeros((4, 2), np.int64)
      want[3, 1] = out_channels - in_channels
      if pads is None or not np.array_equal(np.asarray(pads).reshape(4, 2), want):
        raise self.error(op, f"expected a channel padding of {want.tolist()}, got {pads}")
      tensor = op.inputs[0]
      op = self.model.producer(tensor)
    elif out_channels != in_channels:
      raise self.error(add, f"block widens {in_channels} -> {out_channels} channels without a PAD shortcut")
    if stride == 2:
      if (
        op is None or op.op != "MAX_POOL_2D" or op.options.get("filter") != (2, 2) or op.options.get("stride") != (2, 2)
      ):
        raise self.error(add, "a stride-2 block needs a 2x2 stride-2 MAX_POOL_2D shortcut")
      tensor = op.inputs[0]
    if tensor != source:
      raise self.error(add, "the shortcut does not come from the block input")

  def chain(self, tensor: int, first: tflite.Operator | None = None) -> tuple[list[Conv | Block], int]:
    """Layers from `tensor` on, while each tensor has one obvious next layer; returns (layers, last tensor).

    Stops at a graph output or at a tensor that feeds several layers (a fork, or the taps of detection heads).
    `first` picks the op to start with when `tensor` is such a fork.
    """
    layers: list[Conv | Block] = []
    while True:
      if first is None:
        if tensor in self.model.outputs:
          break
        ops = self.model.consumers(tensor)
        dws = [o for o in ops if o.op == "DEPTHWISE_CONV_2D"]
        convs = [o for o in ops if o.op == "CONV_2D"]
        if len(dws) + len(convs) != 1:
          break
        first = (dws + convs)[0]
      if first.op == "DEPTHWISE_CONV_2D":
        layer, tensor = self.block(first)
      else:
        layer, tensor = self.conv(first)
      layers.append(layer)
      first = None
    return layers, tensor

  def single_input(self) -> int:
    if len(self.model.inputs) != 1:
      raise self.error(None, f"expected one input tensor, found {len(self.model.inputs)}")
    return self.model.inputs[0]

  def consumers_of(self, tensor: int, op_name: str) -> list[tflite.Operator]:
    return [o for o in self.model.consumers(tensor) if o.op == op_name]

  def stem(self, activation: str) -> tuple[int, Conv, int]:
    """Both MediaPipe nets start alike: one square RGB input read by one stride-2 SAME `CONV_2D` with `activation`.

    Returns (the input's side, that convolution, its output tensor).
    """
    inp = self.single_input()
    shape = self.model.tensor(inp).shape
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
      raise self.error(None, f"expected a square RGB input [1, S, S, 3], found {list(shape)}")
    stem_ops = self.consumers_of(inp, "CONV_2D")
    if len(stem_ops) != 1:
      raise self.error(None, "the input is not read by a single CONV_2D stem")
    stem, tensor = self.conv(stem_ops[0])
    if stem.activation != activation or stem.stride != 2 or stem.padding != "SAME":
      raise self.error(stem_ops[0], f"the stem is not a stride-2 SAME convolution with {activation}")
    return int(shape[1]), stem, tensor
