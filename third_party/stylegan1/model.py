"""StyleGAN v1 generator (AdaIN + instance norm) as a frozen Flax NNX module, NHWC.

The architecture is that of Karras et al. 2019 as ported by rosinality/style-based-gan-pytorch (whose released FFHQ
256 px checkpoint is the usual v1 generator outside TensorFlow), with switches for the few places where the
official NVlabs TF code computes differently, so weights of either origin run exactly as they were trained:

  Config field          rosinality (default)       NVlabs official
  instance_norm_eps     1e-5                       1e-8
  bias_after_blur       False (conv bias, blur)    True (blur, then bias)
  noise_per_layer       False (one map per block)  True (one map per layer)
  truncation_cutoff     None (every layer)         8 (layers 0-7, blocks 0-3)

Parameters are stored in one "equalised learning rate" form, whatever their origin (the converters translate); the
runtime value of each is the stored one times a constant fixed by the shapes:

  fc{j}/w [in, out]            x sqrt(2 / in) * mapping_lr_mul; fc{j}/b x mapping_lr_mul
  layer{l}/conv_w [3,3,in,out] x sqrt(2 / (9 in)); for the fused up-sampling layers (>= fused_up_min_res) the 4x4
                               transposed-conv kernel is the mean of the four 1-pixel shifts of the padded 3x3 kernel
                               (computed as the equivalent nearest x2 + flipped 3x3 conv, / 4, split by output phase)
  layer{l}/noise_strength [C]  x sqrt(2 / C)
  layer{l}/style_w [w_dim,2C]  x sqrt(2 / w_dim); AdaIN: x * s[:C] + s[C:] with s = w @ style_w' + style_b
  to_rgb/w [C, 3]              x sqrt(2 / C)
  const [4, 4, C], layer{l}/bias, style_b, to_rgb/b: as stored

Non-trainable state is `Buffer`: `w_avg` (truncation centre) and `noise{i}` (the "const" noise maps). Checkpoints
with stored noise (NVlabs) keep theirs; otherwise they are drawn from `Config.const_noise_seed` (see `const_noise`).

Not ported: progressive growing's fade-in (rosinality's `alpha < 1`, blending in the previous resolution's toRGB).
A frozen generator renders at its final resolution only (alpha = 1, what `generate.py` uses).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib

_BLUR_1D = (0.25, 0.5, 0.25)  # [1, 2, 1] / 4; the 2D blur [1,2,1] x [1,2,1] / 16 is separable


class Buffer(nnx.Variable):
  """Non-trainable state stored with the weights (truncation centre, constant noise maps)."""


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes and numerics of a StyleGAN v1 generator; everything the module's shape depends on.

  Channels at resolution r are min(channel_base // r, channel_max) (rosinality and NVlabs: 512 up to 32 px, then
  256, 128, 64, 32, 16). `compute_dtype` is the default compute dtype of the synthesis network ("float32" or
  "bfloat16"; "float64" under `jax_enable_x64` for numerical checks); parameters stay as stored and images come
  out float32 (float64 for "float64").
  """

  resolution: int = 256
  z_dim: int = 512
  w_dim: int = 512
  mapping_layers: int = 8
  mapping_lr_mul: float = 0.01
  channel_base: int = 16384
  channel_max: int = 512
  fused_up_min_res: int = 128
  instance_norm_eps: float = 1e-5
  bias_after_blur: bool = False
  noise_per_layer: bool = False
  truncation_cutoff: int | None = None
  const_noise_seed: int = 0
  compute_dtype: str = "float32"

  def __post_init__(self):
    log2 = math.log2(self.resolution) if self.resolution > 0 else -1
    if self.resolution < 4 or log2 != int(log2):
      raise ValueError(f"Config.resolution must be a power of two >= 4, got {self.resolution}")
    if self.compute_dtype not in ("float32", "bfloat16", "float16", "float64"):
      raise ValueError(
        f"Config.compute_dtype must be float32, bfloat16, float16 or float64, got {self.compute_dtype!r}"
      )

  @property
  def num_blocks(self) -> int:
    """Resolution blocks 4, 8, ..., resolution px."""
    return int(math.log2(self.resolution)) - 1

  @property
  def num_layers(self) -> int:
    """Styled layers (two per block), each with its own AdaIN style input."""
    return 2 * self.num_blocks

  @property
  def num_ws(self) -> int:
    """Style inputs of `synthesis`: one w per styled layer."""
    return self.num_layers

  @property
  def num_noise(self) -> int:
    """Noise maps `synthesis` takes: one per layer (NVlabs) or one per block (rosinality)."""
    return self.num_layers if self.noise_per_layer else self.num_blocks

  def channels(self, res: int) -> int:
    return min(self.channel_base // res, self.channel_max)

  def layer_res(self, layer: int) -> int:
    return 4 * 2 ** (layer // 2)

  def noise_res(self, index: int) -> int:
    return self.layer_res(index) if self.noise_per_layer else 4 * 2**index

  def layer_kind(self, layer: int) -> str:
    """Layer kind: "const" (layer 0), "conv" (2nd of a block), "up" (nearest x2 + conv) or "fused" (transposed conv)."""
    if layer == 0:
      return "const"
    if layer % 2:
      return "conv"
    return "fused" if self.layer_res(layer) >= self.fused_up_min_res else "up"


def const_noise(config: Config) -> list[np.ndarray]:
  """The fixed "const" noise maps [R, R] for checkpoints that store none: N(0, 1) from `config.const_noise_seed`.

  numpy's PCG64 (`default_rng([seed, index])`) is used so the maps are the same on every platform and JAX version.
  """
  out = []
  for i in range(config.num_noise):
    r = config.noise_res(i)
    out.append(np.random.default_rng([config.const_noise_seed, i]).standard_normal((r, r)).astype(np.float32))
  return out


def _lrelu(x: jax.Array) -> jax.Array:
  return jnp.where(x >= 0, x, x * 0.2)


def _blur(x: jax.Array) -> jax.Array:
  """Depthwise [1,2,1] x [1,2,1] / 16 with zero padding 1, as a separable shift-and-add (cheap on every backend)."""
  a, b, c = _BLUR_1D
  p = jnp.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)))
  x = a * p[:, :-2] + b * p[:, 1:-1] + c * p[:, 2:]
  p = jnp.pad(x, ((0, 0), (0, 0), (1, 1), (0, 0)))
  return a * p[:, :, :-2] + b * p[:, :, 1:-1] + c * p[:, :, 2:]


def _conv(x: jax.Array, w: jax.Array) -> jax.Array:
  return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


# Nearest x2 up-sampling followed by a 3x3 conv, split by output phase: output row 2m uses input rows (m-1, m) with
# taps (w0, w1 + w2), row 2m+1 uses (m, m+1) with (w0 + w1, w2); likewise for columns. Each phase is a 2x2 conv at
# the input resolution, 4/9 of the work of the 3x3 conv at the output resolution (and 1/4 of a transposed conv
# by input dilation).
_PHASE_TAPS = np.array([[[1, 0, 0], [0, 1, 1]], [[1, 1, 0], [0, 0, 1]]], np.float32)  # [phase, tap, 3x3 row]


def _conv_up2(x: jax.Array, w: jax.Array) -> jax.Array:
  """`conv3x3(nearest_up2(x), w)` with zero padding 1, as one 2x2 conv producing the four output phases."""
  b, h, wd, _ = x.shape
  c_out = w.shape[-1]
  taps = jnp.asarray(_PHASE_TAPS, w.dtype)
  # k[a, c, i, o, ry, rx] = sum_{ky, kx} taps[ry, a, ky] taps[rx, c, kx] w[ky, kx, i, o]
  k = jnp.einsum("yak,xcl,klio->acioyx", taps, taps, w)
  k = k.reshape(2, 2, w.shape[2], c_out * 4)
  p = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  p = p.reshape(b, h + 1, wd + 1, c_out, 2, 2)
  rows = [jnp.stack([p[:, ry : ry + h, rx : rx + wd, :, ry, rx] for rx in (0, 1)], axis=3) for ry in (0, 1)]
  out = jnp.stack(rows, axis=2)  # [b, h, 2, wd, 2, c_out]
  return out.reshape(b, 2 * h, 2 * wd, c_out)


def _instance_norm(x: jax.Array, eps: float) -> jax.Array:
  """Per-sample, per-channel normalisation over H, W (biased variance), computed in float32 (or wider)."""
  dtype = x.dtype
  x = x.astype(jnp.promote_types(dtype, jnp.float32))
  x = x - jnp.mean(x, axis=(1, 2), keepdims=True)
  x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=(1, 2), keepdims=True) + eps)
  return x.astype(dtype)


class Dense(nnx.Module):
  """Equalised-lr fully connected layer of the mapping network."""

  def __init__(self, d_in: int, d_out: int, lr_mul: float, *, rngs: nnx.Rngs):
    self.w = nnx.Param(jax.random.normal(rngs.params(), (d_in, d_out)) / lr_mul)
    self.b = nnx.Param(jnp.zeros((d_out,)))
    self.scale = math.sqrt(2.0 / d_in) * lr_mul
    self.lr_mul = lr_mul

  def __call__(self, x: jax.Array) -> jax.Array:
    return x @ (self.w[...] * self.scale) + self.b[...] * self.lr_mul


class StyledLayer(nnx.Module):
  """One styled layer: [up-sampling] conv, [blur], noise, leaky ReLU, instance norm, AdaIN."""

  def __init__(self, config: Config, layer: int, *, rngs: nnx.Rngs):
    self.kind = config.layer_kind(layer)
    res = config.layer_res(layer)
    c_out = config.channels(res)
    c_in = config.channels(res // 2) if self.kind in ("up", "fused") else c_out
    if self.kind != "const":
      self.conv_w = nnx.Param(jax.random.normal(rngs.params(), (3, 3, c_in, c_out)))
      self.bias = nnx.Param(jnp.zeros((c_out,)))
      self.conv_scale = math.sqrt(2.0 / (9 * c_in))
    self.noise_strength = nnx.Param(jnp.zeros((c_out,)))
    self.style_w = nnx.Param(jax.random.normal(rngs.params(), (config.w_dim, 2 * c_out)))
    self.style_b = nnx.Param(jnp.concatenate([jnp.ones((c_out,)), jnp.zeros((c_out,))]))
    self.noise_scale = math.sqrt(2.0 / c_out)
    self.style_scale = math.sqrt(2.0 / config.w_dim)
    self.channels = c_out
    self.eps = config.instance_norm_eps
    self.bias_after_blur = config.bias_after_blur

  def _convolve(self, x: jax.Array) -> jax.Array:
    w = (self.conv_w[...] * self.conv_scale).astype(x.dtype)
    b = self.bias[...].astype(x.dtype)
    if self.kind == "conv":
      return _conv(x, w) + b
    # The fused layers' transposed conv (stride 2, padding 1) whose 4x4 kernel is the mean of the four shifts of
    # the padded 3x3 kernel is exactly nearest up-sampling + 3x3 conv with the flipped kernel, divided by 4 (the /4
    # is rosinality's; NVlabs weights are scaled by 4 on conversion).
    x = _conv_up2(x, w[::-1, ::-1] / 4 if self.kind == "fused" else w)
    if self.bias_after_blur:
      return _blur(x) + b
    return _blur(x + b)

  def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array | None) -> jax.Array:
    """x [B, h, w, C_in] in the compute dtype (the const itself for layer 0), w [B, w_dim], noise [B|1, r, r, 1]."""
    dtype = x.dtype
    if self.kind != "const":
      x = self._convolve(x)
    if noise is not None:
      x = x + noise.astype(dtype) * (self.noise_strength[...] * self.noise_scale).astype(dtype)
    x = _instance_norm(_lrelu(x), self.eps)
    w = w.astype(jnp.promote_types(dtype, jnp.float32))
    s = w @ (self.style_w[...] * self.style_scale).astype(w.dtype) + self.style_b[...].astype(w.dtype)
    s = s.astype(dtype)[:, None, None, :]
    return x * s[..., : self.channels] + s[..., self.channels :]


class ToRGB(nnx.Module):
  """1x1 equalised-lr conv to RGB at the final resolution (no activation, no clamp)."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    self.w = nnx.Param(jax.random.normal(rngs.params(), (channels, 3)))
    self.b = nnx.Param(jnp.zeros((3,)))
    self.scale = math.sqrt(2.0 / channels)

  def __call__(self, x: jax.Array) -> jax.Array:
    return x @ (self.w[...] * self.scale).astype(x.dtype) + self.b[...].astype(x.dtype)


class Generator(nnx.Module):
  """StyleGAN v1: `mapping(z) -> ws [B, num_ws, w_dim]`, `synthesis(ws) -> images [B, H, W, 3]` (float32, NHWC)."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    dims = [config.z_dim] + [config.w_dim] * config.mapping_layers
    for j in range(config.mapping_layers):
      setattr(self, f"fc{j}", Dense(dims[j], dims[j + 1], config.mapping_lr_mul, rngs=rngs))
    self.w_avg = Buffer(jnp.zeros((config.w_dim,)))
    self.const = nnx.Param(jax.random.normal(rngs.params(), (4, 4, config.channels(4))))
    for l in range(config.num_layers):
      setattr(self, f"layer{l}", StyledLayer(config, l, rngs=rngs))
    self.to_rgb = ToRGB(config.channels(config.resolution), rngs=rngs)
    for i, n in enumerate(const_noise(config)):
      setattr(self, f"noise{i}", Buffer(jnp.asarray(n)))

  # ---------------------------------------------------------------- mapping

  def mapping(
    self, z: jax.Array, truncation_psi: float | jax.Array = 1.0, truncation_cutoff: int | None = None
  ) -> jax.Array:
    """z [B, z_dim] -> ws [B, num_ws, w_dim]: pixel norm, the MLP, then truncation toward `w_avg`.

    Truncation applies to the layers below `truncation_cutoff` (default `config.truncation_cutoff`; None: all).
    """
    cfg = self.config
    if z.ndim != 2 or z.shape[1] != cfg.z_dim:
      raise ValueError(f"stylegan1 mapping expects z of shape [B, {cfg.z_dim}], got {z.shape}")
    x = z.astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True) + 1e-8)
    for j in range(cfg.mapping_layers):
      x = _lrelu(getattr(self, f"fc{j}")(x))
    ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], cfg.num_ws, cfg.w_dim))
    return self.truncate(ws, truncation_psi, truncation_cutoff)

  def truncate(
    self, ws: jax.Array, truncation_psi: float | jax.Array = 1.0, truncation_cutoff: int | None = None
  ) -> jax.Array:
    """`w_avg + psi (w - w_avg)` on the layers below the cutoff; an exact no-op for a Python psi of 1."""
    if isinstance(truncation_psi, (int, float)) and truncation_psi == 1:
      return ws
    cutoff = self.config.truncation_cutoff if truncation_cutoff is None else truncation_cutoff
    avg = self.w_avg[...]
    truncated = avg + truncation_psi * (ws - avg)
    if cutoff is None or cutoff >= ws.shape[1]:
      return truncated
    keep = (jnp.arange(ws.shape[1]) < cutoff)[None, :, None]
    return jnp.where(keep, truncated, ws)

  # -------------------------------------------------------------- synthesis

  def const_noise_maps(self) -> list[jax.Array]:
    """The stored "const" noise maps [r, r], one per `config.num_noise`."""
    return [getattr(self, f"noise{i}")[...] for i in range(self.config.num_noise)]

  def _noise(
    self, batch: int, noise_mode: str, rng: jax.Array | None, noise: Sequence[jax.Array] | None
  ) -> list[jax.Array | None]:
    cfg = self.config
    if noise is not None:
      if len(noise) != cfg.num_noise:
        raise ValueError(
          f"stylegan1 synthesis takes {cfg.num_noise} noise maps "
          f"({'per layer' if cfg.noise_per_layer else 'per block'}), got {len(noise)}"
        )
      maps = []
      for i, n in enumerate(noise):
        r = cfg.noise_res(i)
        n = jnp.asarray(n)
        if n.ndim != 4 or n.shape[1:] != (r, r, 1):
          raise ValueError(f"stylegan1 noise[{i}] must have shape [B, {r}, {r}, 1], got {n.shape}")
        maps.append(n)
    elif noise_mode == "const":
      maps = [n[None, :, :, None] for n in self.const_noise_maps()]
    elif noise_mode == "random":
      if rng is None:
        raise ValueError("noise_mode='random' needs an explicit rng (a jax.random key)")
      keys = jax.random.split(rng, cfg.num_noise)
      maps = [jax.random.normal(keys[i], (batch, cfg.noise_res(i), cfg.noise_res(i), 1)) for i in range(cfg.num_noise)]
    elif noise_mode == "none":
      return [None] * cfg.num_layers
    else:
      raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
    return [maps[l] if cfg.noise_per_layer else maps[l // 2] for l in range(cfg.num_layers)]

  def synthesis(
    self,
    ws: jax.Array,
    noise_mode: str = "const",
    rng: jax.Array | None = None,
    noise: Sequence[jax.Array] | None = None,
    dtype: Any = None,
  ) -> jax.Array:
    """ws [B, num_ws, w_dim] -> images [B, R, R, 3] float32 (raw toRGB output, nominally in [-1, 1]).

    Args:
      ws: one w per styled layer (style mixing: rows from different latents, see `mix_styles`).
      noise_mode: "const" (the stored maps), "random" (fresh N(0, 1) from `rng`) or "none".
      rng: a jax.random key, for noise_mode "random".
      noise: `config.num_noise` explicit maps [B, r, r, 1]; overrides `noise_mode`.
      dtype: compute dtype (default `config.compute_dtype`).
    """
    cfg = self.config
    if ws.ndim != 3 or ws.shape[1:] != (cfg.num_ws, cfg.w_dim):
      raise ValueError(f"stylegan1 synthesis expects ws of shape [B, {cfg.num_ws}, {cfg.w_dim}], got {ws.shape}")
    noises = self._noise(ws.shape[0], noise_mode, rng, noise)
    dtype = jnp.dtype(dtype or cfg.compute_dtype)
    x = jnp.broadcast_to(self.const[...].astype(dtype)[None], (ws.shape[0],) + self.const.shape)
    for l in range(cfg.num_layers):
      x = getattr(self, f"layer{l}")(x, ws[:, l], noises[l])
    return self.to_rgb(x).astype(jnp.promote_types(dtype, jnp.float32))

  def __call__(
    self,
    z: jax.Array,
    truncation_psi: float | jax.Array = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    rng: jax.Array | None = None,
    noise: Sequence[jax.Array] | None = None,
    dtype: Any = None,
  ) -> jax.Array:
    """z [B, z_dim] -> images [B, R, R, 3]."""
    ws = self.mapping(z, truncation_psi, truncation_cutoff)
    return self.synthesis(ws, noise_mode=noise_mode, rng=rng, noise=noise, dtype=dtype)


def mix_styles(ws1: jax.Array, ws2: jax.Array, lo: int, hi: int, per_layer: bool = False) -> jax.Array:
  """Style mixing: ws2 on blocks lo..hi inclusive (rosinality's `mixing_range`), or on layers lo..hi if per_layer.

  NVlabs mixes per layer (a crossover layer index); rosinality per block, both styled layers of a block alike.
  """
  layer = jnp.arange(ws1.shape[1])
  unit = layer if per_layer else layer // 2
  use2 = ((unit >= lo) & (unit <= hi))[None, :, None]
  return jnp.where(use2, ws2, ws1)
