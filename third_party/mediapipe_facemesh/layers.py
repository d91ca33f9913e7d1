"""The building blocks shared by MediaPipe's face mesh and BlazeFace nets, as Flax NNX modules.

Both nets are stacks of "BlazeBlocks": a 3x3 depthwise convolution (stride 1 or 2) and a 1x1 convolution, added to
a shortcut (the input, max-pooled 2x2 when the block strides, zero-padded along channels when it widens), then an
activation (per-channel PReLU in the mesh, ReLU in BlazeFace). Padding follows TensorFlow's SAME rule (the odd pixel
goes at the bottom/right), which is also what `lax.conv_general_dilated` does for "SAME".
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

ACTIVATIONS = ("none", "relu", "prelu")


class PReLU(nnx.Module):
  """Per-channel PReLU as TFLite computes it: x if x >= 0 else alpha * x."""

  def __init__(self, channels: int):
    self.alpha = nnx.Param(jnp.full((channels,), 0.25, jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, self.alpha[...] * x)


def _check_activation(activation: str) -> None:
  if activation not in ACTIVATIONS:
    raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")


class ConvAct(nnx.Module):
  """A convolution followed by an optional activation (the stems, the heads' 1x1 reductions and outputs)."""

  def __init__(
    self,
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int,
    padding: str,
    activation: str,
    *,
    rngs: nnx.Rngs,
  ):
    _check_activation(activation)
    self.conv = nnx.Conv(in_channels, out_channels, (kernel, kernel), strides=stride, padding=padding, rngs=rngs)
    self.activation = activation
    self.act = PReLU(out_channels) if activation == "prelu" else None

  def __call__(self, x: jax.Array) -> jax.Array:
    x = self.conv(x)
    if self.activation == "prelu":
      return self.act(x)
    return jax.nn.relu(x) if self.activation == "relu" else x


class DepthwiseConv(nnx.Module):
  """A depthwise convolution (one kxk filter per channel, SAME padding) computed as k*k shifted multiply-adds.

  Same parameters as `nnx.Conv(..., feature_group_count=channels)` (kernel [k, k, 1, C], bias [C]), but XLA's CPU
  backend runs grouped convolutions through a slow generic path: at batch 8 the mesh's first 96x96 depthwise layer
  takes ~170 ms as a grouped convolution and ~0.6 ms as the element-wise sum, which XLA fuses into one loop.
  """

  def __init__(self, channels: int, kernel: int, stride: int, *, rngs: nnx.Rngs):
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(), (kernel, kernel, 1, channels), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))
    self.stride = stride

  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.kernel[...]
    kh, kw = kernel.shape[:2]
    s = self.stride
    height, width = x.shape[1:3]
    out_h, out_w = -(-height // s), -(-width // s)
    pad_h = max((out_h - 1) * s + kh - height, 0)
    pad_w = max((out_w - 1) * s + kw - width, 0)
    x = jnp.pad(x, ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out = self.bias[...]
    for i in range(kh):
      for j in range(kw):
        window = x[:, i : i + (out_h - 1) * s + 1 : s, j : j + (out_w - 1) * s + 1 : s, :]
        out = out + window * kernel[i, j, 0]
    return out


class BlazeBlock(nnx.Module):
  """Depthwise 3x3 (stride 1 or 2) + pointwise 1x1, plus a pooled / channel-padded shortcut, then activation."""

  def __init__(
    self, in_channels: int, out_channels: int, stride: int, activation: str, *, rngs: nnx.Rngs, kernel: int = 3
  ):
    _check_activation(activation)
    if stride not in (1, 2):
      raise ValueError(f"BlazeBlock stride must be 1 or 2, got {stride}")
    if out_channels < in_channels:
      raise ValueError(f"BlazeBlock cannot narrow channels ({in_channels} -> {out_channels})")
    self.depthwise = DepthwiseConv(in_channels, kernel, stride, rngs=rngs)
    self.pointwise = nnx.Conv(in_channels, out_channels, (1, 1), padding="VALID", rngs=rngs)
    self.stride = stride
    self.channel_pad = out_channels - in_channels
    self.activation = activation
    self.act = PReLU(out_channels) if activation == "prelu" else None

  def __call__(self, x: jax.Array) -> jax.Array:
    h = self.pointwise(self.depthwise(x))
    skip = x
    if self.stride == 2:
      skip = nnx.max_pool(skip, (2, 2), strides=(2, 2), padding="SAME")
    if self.channel_pad:
      skip = jnp.pad(skip, ((0, 0), (0, 0), (0, 0), (0, self.channel_pad)))
    y = skip + h
    if self.activation == "prelu":
      return self.act(y)
    return jax.nn.relu(y) if self.activation == "relu" else y
