"""The StyleGAN2 building blocks as plain functions on NHWC arrays: FIR up-sampling and modulated convolution.

Kept apart from the modules so the arithmetic can be read (and tested) on its own. Every resampling uses the
paper's [1, 3, 3, 1] binomial filter, normalised to unit sum and multiplied by the up-sampling gain (4 in 2-D),
exactly the `upfirdn2d` arrangement both upstream implementations use; the up-sampling conv is upstream's strided
transposed convolution followed by that filter, written here as a sub-pixel convolution so that XLA on a CPU runs
it as one ordinary dense convolution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# The separable 1-D taps of the 2x up-sampling filter: [1, 3, 3, 1] / 8 (unit sum) times the per-axis gain 2.
_FIR_UP = (0.25, 0.75, 0.75, 0.25)
_DIMS = ("NHWC", "HWIO", "NHWC")
# Input sizes up to which the up-sampling conv runs as four exact phase convs (see `_conv_up_phases`).
PHASE_SPLIT_MAX_SIZE = 32


def lrelu_gain(x: jax.Array, gain: float = float(np.sqrt(2.0))) -> jax.Array:
  """Leaky ReLU (slope 0.2) times sqrt(2): the activation of every StyleGAN2 layer, unit-variance preserving."""
  return jnp.where(x >= 0, x, x * jnp.asarray(0.2, x.dtype)) * jnp.asarray(gain, x.dtype)


def _shift(x: jax.Array, axis: int, offset: int) -> jax.Array:
  """`y[i] = x[i + offset]` along `axis`, zero outside."""
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  if offset >= 0:
    pad[axis] = (0, offset)
    return jax.lax.slice_in_dim(jnp.pad(x, pad), offset, offset + n, axis=axis)
  pad[axis] = (-offset, 0)
  return jax.lax.slice_in_dim(jnp.pad(x, pad), 0, n, axis=axis)


def _interleave(even: jax.Array, odd: jax.Array, axis: int) -> jax.Array:
  """Merges two arrays along `axis` as [even0, odd0, even1, odd1, ...]."""
  stacked = jnp.stack([even, odd], axis=axis + 1)
  shape = list(even.shape)
  shape[axis] *= 2
  return stacked.reshape(shape)


def upsample_2x(x: jax.Array) -> jax.Array:
  """FIR up-sampling by 2 of an NHWC image: upstream `upfirdn2d.upsample2d(x, [1,3,3,1])`.

  Zero insertion followed by the 4-tap filter reduces, per axis, to two phases:
  out[2m] = x[m-1]/4 + 3 x[m]/4 and out[2m+1] = 3 x[m]/4 + x[m+1]/4 (zero outside the image).
  """
  for axis in (1, 2):
    even = _FIR_UP[0] * _shift(x, axis, -1) + _FIR_UP[2] * x
    odd = _FIR_UP[1] * x + _FIR_UP[3] * _shift(x, axis, 1)
    x = _interleave(even.astype(x.dtype), odd.astype(x.dtype), axis)
  return x


# Sub-pixel decomposition of upstream's stride-2 transposed 3x3 conv (no kernel flip), per axis:
# y[2m] = x[m] w[0] + x[m-1] w[2] and y[2m+1] = x[m] w[1]. Over the window (xp[m], xp[m+1]) of the input padded by
# one zero, phase r uses kernel taps _SUBPIXEL_TAPS[d][r] (index 3 is a zero tap).
_SUBPIXEL_TAPS = np.array([[2, 3], [0, 1]])


def _subpixel_kernel(weight: jax.Array) -> jax.Array:
  """[3, 3, I, O] -> the [2, 2, I, 4 * O] kernel whose output channels hold the four phases (ry, rx, O)."""
  k, _, cin, cout = weight.shape
  if k != 3:
    raise ValueError(f"up-sampling convolution expects a 3x3 kernel, got {k}x{k}")
  zero = jnp.zeros((1, k, cin, cout), weight.dtype)
  padded = jnp.concatenate([weight, zero], axis=0)
  padded = jnp.concatenate([padded, jnp.zeros((k + 1, 1, cin, cout), weight.dtype)], axis=1)
  taps = padded[_SUBPIXEL_TAPS[:, None, :, None], _SUBPIXEL_TAPS[None, :, None, :]]  # [dy, dx, ry, rx, I, O]
  return taps.transpose(0, 1, 4, 2, 3, 5).reshape(2, 2, cin, 4 * cout)


def conv2d(x: jax.Array, weight: jax.Array, up: bool = False, groups: int = 1) -> jax.Array:
  """Correlation of NHWC `x` with an HWIO `weight` ('same' padding), or upstream's 2x up-sampling conv.

  With `up`, this equals upstream `conv2d_resample(x, w, f=[1,3,3,1], up=2, padding=1)`: the stride-2 transposed
  conv is one dense 2x2 conv producing the four output phases as channels (depth-to-space afterwards), then the FIR.
  """
  if not up:
    k = weight.shape[0]
    return jax.lax.conv_general_dilated(
      x, weight, (1, 1), [(k // 2, k // 2)] * 2, dimension_numbers=_DIMS, feature_group_count=groups
    )
  b, h, w, _ = x.shape
  cout = weight.shape[-1]
  if groups == 1 and h <= PHASE_SPLIT_MAX_SIZE:
    return _conv_up_phases(x, weight)
  kernel = _subpixel_kernel(weight)
  if groups > 1:  # keep each group's four phases together: [.., I, G, 4 * O/G]
    cin_g = kernel.shape[2]
    cout_g = cout // groups
    kernel = kernel.reshape(2, 2, cin_g, 4, groups, cout_g).transpose(0, 1, 2, 4, 3, 5).reshape(2, 2, cin_g, -1)
  y = jax.lax.conv_general_dilated(
    x, kernel, (1, 1), [(1, 1), (1, 1)], dimension_numbers=_DIMS, feature_group_count=groups
  )  # [B, H+1, W+1, (G) 4 O]
  if groups > 1:
    y = y.reshape(b, h + 1, w + 1, groups, 4, cout_g).transpose(0, 1, 2, 4, 3, 5)
  y = y.reshape(b, h + 1, w + 1, 2, 2, cout)  # y[2m + r] = Y[m, r] on each axis, m in [0, H]
  z = _fir_phases(_fir_phases(y, 1, 3), 2, 4)  # [B, H, W, 2, 2, O]
  return z.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, cout)


def _conv_up_phases(x: jax.Array, weight: jax.Array) -> jax.Array:
  """`conv2d(x, weight, up=True)` as four exact phase convolutions (2x2, 2x1, 1x2 and 1x1 taps: 9 in all).

  The single sub-pixel conv spends 16 taps per input pixel, 7 of them on zeros; at low resolution, where the
  channel counts are large and the convolutions dominate, skipping them is faster on a CPU, while at high
  resolution (few channels) one larger conv wins. `PHASE_SPLIT_MAX_SIZE` picks between them (measured).
  """
  b, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  even = np.array([2, 0])  # taps of phase 0 over the window (xp[m], xp[m + 1]); phase 1 uses tap 1 on xp[m + 1]

  def conv(inp, kernel):
    return jax.lax.conv_general_dilated(inp, kernel, (1, 1), "VALID", dimension_numbers=_DIMS)

  y00 = conv(xp, weight[even][:, even])
  y01 = conv(xp[:, :, 1:], weight[even][:, 1:2])
  y10 = conv(xp[:, 1:], weight[1:2][:, even])
  y11 = conv(xp[:, 1:, 1:], weight[1:2, 1:2])
  y = jnp.stack([jnp.stack([y00, y01], 3), jnp.stack([y10, y11], 3)], 3)  # [B, H+1, W+1, ry, rx, O]
  z = _fir_phases(_fir_phases(y, 1, 3), 2, 4)
  return z.transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, weight.shape[-1])


def _fir_phases(y: jax.Array, axis: int, phase_axis: int) -> jax.Array:
  """The post-transpose FIR z[n] = (y[n-1] + 3 y[n] + 3 y[n+1] + y[n+2]) / 4, on the phase-split layout.

  With y[2m + r] = Y[m, r] (m in [0, H], y[-1] = 0) the two output phases are
  Z[m, 0] = (Y[m-1, 1] + 3 Y[m, 0] + 3 Y[m, 1] + Y[m+1, 0]) / 4 and
  Z[m, 1] = (Y[m, 0] + 3 Y[m, 1] + 3 Y[m+1, 0] + Y[m+1, 1]) / 4, for m in [0, H).
  """
  n = y.shape[axis] - 1
  y0 = jax.lax.index_in_dim(y, 0, phase_axis, keepdims=False)
  y1 = jax.lax.index_in_dim(y, 1, phase_axis, keepdims=False)
  ax = axis if axis < phase_axis else axis - 1
  cur0, nxt0 = (jax.lax.slice_in_dim(y0, s, s + n, axis=ax) for s in (0, 1))
  cur1, nxt1 = (jax.lax.slice_in_dim(y1, s, s + n, axis=ax) for s in (0, 1))
  pad = [(0, 0)] * y1.ndim
  pad[ax] = (1, 0)
  prev1 = jax.lax.slice_in_dim(jnp.pad(y1, pad), 0, n, axis=ax)
  z0 = _FIR_UP[0] * prev1 + _FIR_UP[1] * cur0 + _FIR_UP[2] * cur1 + _FIR_UP[3] * nxt0
  z1 = _FIR_UP[0] * cur0 + _FIR_UP[1] * cur1 + _FIR_UP[2] * nxt0 + _FIR_UP[3] * nxt1
  return jnp.stack([z0, z1], axis=phase_axis).astype(y.dtype)


def modulated_conv2d(
  x: jax.Array, weight: jax.Array, styles: jax.Array, *, demodulate: bool = True, up: bool = False, fused: bool = False
) -> jax.Array:
  """StyleGAN2's modulated convolution of NHWC `x` ([B, H, W, I]) with HWIO `weight` and per-sample `styles` [B, I].

  The weight is scaled per input channel by the style and, with `demodulate`, each output channel is renormalised
  to unit expected variance: w'_bkio = w_kio s_bi / sqrt(sum_ki (w_kio s_bi)^2 + 1e-8). `fused` runs this as a
  grouped convolution with one kernel per sample (upstream's inference path); otherwise the style scales the
  activations before a shared-kernel convolution and the demodulation scales its output (the same numbers, and on a
  CPU usually faster since the convolution's kernel is shared by the batch). `weight` is already scaled by the
  equalised-lr gain; the computation runs in `x.dtype`, the demodulation coefficients in float32.
  """
  b = x.shape[0]
  cin, cout = weight.shape[2], weight.shape[3]
  styles32 = styles.astype(jnp.float32)
  dcoefs = None
  if demodulate:
    wsq = jnp.sum(jnp.square(weight.astype(jnp.float32)), axis=(0, 1))  # [I, O]
    dcoefs = jax.lax.rsqrt(jnp.square(styles32) @ wsq + 1e-8)  # [B, O]
  if not fused:
    x = x * styles.astype(x.dtype)[:, None, None, :]
    x = conv2d(x, weight.astype(x.dtype), up=up)
    if dcoefs is not None:
      x = x * dcoefs.astype(x.dtype)[:, None, None, :]
    return x
  w = weight.astype(jnp.float32)[None] * styles32[:, None, None, :, None]  # [B, k, k, I, O]
  if dcoefs is not None:
    w = w * dcoefs[:, None, None, None, :]
  k = weight.shape[0]
  w = w.transpose(1, 2, 3, 0, 4).reshape(k, k, cin, b * cout).astype(x.dtype)
  h, wd = x.shape[1], x.shape[2]
  xg = x.transpose(1, 2, 0, 3).reshape(1, h, wd, b * cin)
  y = conv2d(xg, w, up=up, groups=b)
  return y.reshape(y.shape[1], y.shape[2], b, cout).transpose(2, 0, 1, 3)
