"""Small layers the ported CNNs share: inference-mode BatchNorm, convolutions and pooling in PyTorch's semantics.

`nnx.BatchNorm` switches to batch statistics when a module tree is put in training mode (`module.train()`); the
ported networks must not: frozen networks are always evaluated with their stored statistics, and the trainable
InceptionV3 deliberately keeps running statistics too (see `disentangle_jax/nets/inception.py`). `BatchNorm` here
has no training mode at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx


def scaled_normal(scale: float) -> nnx.Initializer:
  """Kernels drawn from N(0, scale / fan_in), fan-in being the product of every axis but the last.

  Drawn as the first entries of a standard normal vector whose length is the next power of two: eager random init
  compiles one `jax.random.normal` program per shape (about 0.4 s each on a CPU core, 37 s for InceptionV3's 94
  kernels), and this way kernels of any size up to a power of two share one program. Eager and jitted init give
  the same values.
  """

  def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    shape = tuple(int(s) for s in shape)
    size = math.prod(shape)
    padded = 1 << max(size - 1, 0).bit_length()
    std = math.sqrt(scale / max(math.prod(shape[:-1]), 1))
    return (jax.random.normal(key, (padded,), jnp.float32)[:size] * std).reshape(shape).astype(dtype)

  return init


# He (Kaiming) normal, fan-in: keeps unit activation scale through ReLU networks whose BatchNorm statistics are
# fixed (0, 1) at random init, so a randomly initialised deep net neither explodes nor vanishes.
he_normal = scaled_normal(2.0)


class BatchNorm(nnx.Module):
  """`y = (x - mean) / sqrt(var + eps) * scale + bias` over the last axis, always with the stored statistics.

  `scale`/`bias` are `nnx.Param` (trainable where the owner is), `mean`/`var` are `nnx.BatchStat` (never trained,
  never updated). Computes in the input's dtype, so casting params and inputs to bfloat16 runs it in bfloat16.
  `use_scale=False` is Keras' `BatchNormalization(scale=False)` (Keras' InceptionV3): no scale variable at all, so
  it is neither stored nor trained, and the scale is 1.
  """

  def __init__(self, num_features: int, epsilon: float, use_scale: bool = True):
    self.epsilon = epsilon
    self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32)) if use_scale else None
    self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
    self.mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
    self.var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = x.dtype
    inv = jax.lax.rsqrt(self.var[...].astype(dtype) + jnp.asarray(self.epsilon, dtype))
    if self.scale is not None:
      inv = self.scale[...].astype(dtype) * inv
    return x * inv + (self.bias[...].astype(dtype) - self.mean[...].astype(dtype) * inv)


_NHWC = ("NHWC", "HWIO", "NHWC")


def conv_general_dilated(
  lhs: jax.Array,
  rhs: jax.Array,
  window_strides: Sequence[int],
  padding: Any,
  lhs_dilation: Sequence[int] | None = None,
  rhs_dilation: Sequence[int] | None = None,
  dimension_numbers: Any = None,
  feature_group_count: int = 1,
  **kwargs: Any,
) -> jax.Array:
  """`jax.lax.conv_general_dilated`, except that an NHWC 1x1 convolution is computed as one matmul.

  XLA's CPU backend runs 1x1 convolutions at about half the speed of the same contraction written as a dot
  (measured at batch 8: ResNet-50's 56x56x256 -> 64 layer 10.8 ms as a convolution, 4.7 ms as a dot), and 1x1
  layers hold most of ResNet-50's and much of InceptionV3's arithmetic. A strided 1x1 convolution is the dot of the
  subsampled input. On GPUs and TPUs both forms are the same matrix-unit contraction (not measured here), so the
  rewrite is not CPU-specific. Any padding, dilation, grouping or other layout goes to `lax.conv_general_dilated`
  unchanged.
  """
  batch_group_count = kwargs.pop("batch_group_count", 1)
  one_by_one = (
    lhs.ndim == rhs.ndim == 4
    and rhs.shape[:2] == (1, 1)
    and feature_group_count == batch_group_count == 1
    and all(d == 1 for d in (lhs_dilation or (1, 1)))
    and all(d == 1 for d in (rhs_dilation or (1, 1)))
    and (isinstance(padding, str) or all(lo == 0 and hi == 0 for lo, hi in padding))  # SAME = VALID at 1x1
    and dimension_numbers is not None
    and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  )
  if not one_by_one:
    return jax.lax.conv_general_dilated(
      lhs,
      rhs,
      window_strides,
      padding,
      lhs_dilation,
      rhs_dilation,
      dimension_numbers,
      feature_group_count,
      batch_group_count,
      **kwargs,
    )
  sh, sw = window_strides
  x = lhs if (sh, sw) == (1, 1) else lhs[:, ::sh, ::sw]
  return jax.lax.dot_general(x, rhs[0, 0], (((3,), (0,)), ((), ())), **kwargs)


def conv(
  in_features: int,
  out_features: int,
  kernel: int | Sequence[int],
  *,
  stride: int = 1,
  padding: int | Sequence[int] = 0,
  rngs: nnx.Rngs,
) -> nnx.Conv:
  """A bias-free NHWC convolution with PyTorch-style symmetric zero padding (`padding` per spatial axis)."""
  kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
  padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
  return nnx.Conv(
    in_features,
    out_features,
    kernel_size=kernel,
    strides=(stride, stride),
    padding=[(p, p) for p in padding],
    use_bias=False,
    kernel_init=he_normal,
    conv_general_dilated=conv_general_dilated,
    rngs=rngs,
  )


def max_pool(x: jax.Array, window: int, stride: int, ceil_mode: bool = False) -> jax.Array:
  """PyTorch `MaxPool2d(window, stride, padding=0, ceil_mode)` on NHWC.

  With `ceil_mode` the last, partial window is kept: the input is padded at the bottom/right with -inf just enough
  for `ceil((size - window) / stride) + 1` outputs (with no padding, every such window starts inside the input).
  """
  pads = [(0, 0)]
  for size in x.shape[1:3]:
    out = -(-(size - window) // stride) + 1 if ceil_mode else (size - window) // stride + 1
    pads.append((0, max(0, (out - 1) * stride + window - size)))
  pads.append((0, 0))
  # A Python-scalar init lets JAX recognise the max monoid (differentiable reduce_window_max) even under tracing.
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), pads)


def avg_pool_3x3_same(x: jax.Array, count_include_pad: bool = True) -> jax.Array:
  """3x3, stride-1 average pooling with one pixel of zero padding on NHWC.

  `count_include_pad=True` is PyTorch's `avg_pool2d(x, 3, stride=1, padding=1)` (always divides by 9); False is
  Keras' `AveragePooling2D(3, 1, padding="same")`, which divides each window by the number of input pixels in it
  (4 at a corner, 6 along an edge), so the two differ on the border.
  """
  pads = [(0, 0), (1, 1), (1, 1), (0, 0)]
  summed = jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pads)
  if count_include_pad:
    return summed / jnp.asarray(9, x.dtype)
  h, w = x.shape[1:3]
  ones = jnp.ones((1, h, w, 1), x.dtype)
  counts = jax.lax.reduce_window(ones, 0.0, jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pads)
  return summed / counts


def max_pool_3x3_same(x: jax.Array) -> jax.Array:
  """3x3, stride-1 max pooling with one pixel of padding that never wins (PyTorch's `max_pool2d(x, 3, 1, padding=1)`)."""
  pads = [(0, 0), (1, 1), (1, 1), (0, 0)]
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 1, 1, 1), pads)
