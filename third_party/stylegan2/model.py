"""The StyleGAN2 generator (Karras et al. 2020) as a Flax NNX module, sized entirely by `Config`.

One module family holds both weight layouts we convert: NVlabs stylegan2-ada-pytorch (`PAPER256`) and rosinality's
stylegan2-pytorch (`ROSINALITY256`: its channel table is ours with `channel_base = 16384 * channel_multiplier` and
`channel_max = 512`, it has no clamp, and its per-layer noise buffers are our `noise_const`; its truncation towards
`latent_avg` is ours with `truncation_cutoff=None`). Parameters are stored raw, as upstream stores them
(equalised learning rate: the He gain and the mapping's `lr_multiplier` are applied at run time), but in JAX layouts:
dense `[in, out]`, conv HWIO, images NHWC.

    mapping(z)      z [B, z_dim] -> ws [B, num_ws, w_dim]   (2nd-moment norm, FC + lrelu, w_avg truncation)
    synthesis(ws)   ws -> image [B, H, W, 3] float32        (const 4x4, modulated convs, noise, toRGB skips)

Block `b<res>` consumes ws[:, i : i + num_conv + 1] and the next starts at `i + num_conv`: a block's toRGB shares
its w with the next block's first conv, so `num_ws = 2 * log2(resolution) - 2`.
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
from disentangle_jax.third_party.stylegan2 import layers

NOISE_MODES = ("const", "random", "none")


class Buffer(nnx.Variable):
  """A fixed, non-learned array of the generator (`w_avg`, the per-layer constant noise)."""


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Every size of the generator. Defaults are stylegan2-ada-pytorch `paper256` (FFHQ 256x256).

  Attributes:
    resolution: output side, a power of two >= 4.
    z_dim: latent z size.
    w_dim: intermediate latent w size (also the mapping's hidden width).
    mapping_layers: number of FC layers of the mapping network.
    channel_base: channels at resolution r are min(channel_base // r, channel_max).
    channel_max: the cap of that table.
    conv_clamp: clamp of every conv / toRGB output (+-value), None for none (rosinality).
    lr_multiplier: the mapping layers' learning-rate multiplier (equalised lr; upstream 0.01).
    img_channels: output colour channels.
    fused_modconv: run modulated convs as per-sample grouped convs (True) or by scaling activations (False).
    compute_dtype: dtype of the synthesis convolutions ("float32" or "bfloat16"); images are always float32.
  """

  resolution: int = 256
  z_dim: int = 512
  w_dim: int = 512
  mapping_layers: int = 8
  channel_base: int = 16384
  channel_max: int = 512
  conv_clamp: float | None = 256.0
  lr_multiplier: float = 0.01
  img_channels: int = 3
  fused_modconv: bool = False
  compute_dtype: str = "float32"

  def __post_init__(self):
    if self.resolution < 4 or self.resolution & (self.resolution - 1):
      raise ValueError(f"Config.resolution must be a power of two >= 4, got {self.resolution}")
    for name in ("z_dim", "w_dim", "mapping_layers", "channel_base", "channel_max", "img_channels"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"Config.{name} must be positive, got {getattr(self, name)}")
    if self.compute_dtype not in ("float32", "bfloat16", "float16"):
      raise ValueError(f"Config.compute_dtype must be float32, bfloat16 or float16, got {self.compute_dtype!r}")

  @property
  def block_resolutions(self) -> tuple[int, ...]:
    return tuple(2**i for i in range(2, int(math.log2(self.resolution)) + 1))

  def channels(self, res: int) -> int:
    return min(self.channel_base // res, self.channel_max)

  @property
  def num_ws(self) -> int:
    return 2 * int(math.log2(self.resolution)) - 2

  @property
  def noise_layers(self) -> tuple[tuple[str, int], ...]:
    """(name, resolution) of every noise-taking conv, in call order: ("b4.conv1", 4), ("b8.conv0", 8), ..."""
    out = []
    for res in self.block_resolutions:
      if res > 4:
        out.append((f"b{res}.conv0", res))
      out.append((f"b{res}.conv1", res))
    return tuple(out)


PAPER256 = Config(
  resolution=256, z_dim=512, w_dim=512, mapping_layers=8, channel_base=16384, channel_max=512, conv_clamp=256.0
)
ROSINALITY256 = Config(
  resolution=256, z_dim=512, w_dim=512, mapping_layers=8, channel_base=32768, channel_max=512, conv_clamp=None
)
FFHQ256 = PAPER256


def _normal(rngs: nnx.Rngs, shape: Sequence[int], scale: float = 1.0) -> jax.Array:
  return jax.random.normal(rngs.params(), tuple(shape), jnp.float32) * scale


class Dense(nnx.Module):
  """Fully connected layer with equalised lr: y = x @ (w * lr_mul / sqrt(in)) + b * lr_mul."""

  def __init__(self, din: int, dout: int, *, lr_multiplier: float = 1.0, bias_init: float = 0.0, rngs: nnx.Rngs):
    self.weight = nnx.Param(_normal(rngs, (din, dout), 1.0 / lr_multiplier))
    self.bias = nnx.Param(jnp.full((dout,), bias_init, jnp.float32))
    self.weight_gain = lr_multiplier / math.sqrt(din)
    self.bias_gain = lr_multiplier

  def __call__(self, x: jax.Array) -> jax.Array:
    return x @ (self.weight[...] * self.weight_gain) + self.bias[...] * self.bias_gain


class Mapping(nnx.Module):
  """z -> w: normalise z's second moment, `mapping_layers` FC layers with lrelu * sqrt(2); holds `w_avg`."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.num_layers = config.mapping_layers
    dims = [config.z_dim] + [config.w_dim] * config.mapping_layers
    for i in range(config.mapping_layers):
      setattr(self, f"fc{i}", Dense(dims[i], dims[i + 1], lr_multiplier=config.lr_multiplier, rngs=rngs))
    self.w_avg = Buffer(jnp.zeros((config.w_dim,), jnp.float32))

  def __call__(self, z: jax.Array) -> jax.Array:
    x = z.astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True) + 1e-8)
    for i in range(self.num_layers):
      x = layers.lrelu_gain(getattr(self, f"fc{i}")(x))
    return x


class SynthesisLayer(nnx.Module):
  """Modulated 3x3 conv (optionally 2x up-sampling), noise, bias, lrelu * sqrt(2), clamp."""

  def __init__(
    self,
    cin: int,
    cout: int,
    w_dim: int,
    resolution: int,
    *,
    up: bool,
    conv_clamp: float | None,
    fused: bool,
    rngs: nnx.Rngs,
  ):
    self.affine = Dense(w_dim, cin, bias_init=1.0, rngs=rngs)
    self.weight = nnx.Param(_normal(rngs, (3, 3, cin, cout)))
    self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))
    self.noise_strength = nnx.Param(jnp.zeros((), jnp.float32))
    self.noise_const = Buffer(_normal(rngs, (resolution, resolution)))
    self.up, self.conv_clamp, self.fused = up, conv_clamp, fused
    self.weight_gain = 1.0 / math.sqrt(cin * 9)

  def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array | None) -> jax.Array:
    styles = self.affine(w)
    x = layers.modulated_conv2d(
      x, self.weight[...] * self.weight_gain, styles, demodulate=True, up=self.up, fused=self.fused
    )
    if noise is not None:
      x = x + (noise * self.noise_strength[...]).astype(x.dtype)
    x = layers.lrelu_gain(x + self.bias[...].astype(x.dtype))
    if self.conv_clamp is not None:
      x = jnp.clip(x, -self.conv_clamp, self.conv_clamp)
    return x


class ToRGB(nnx.Module):
  """Modulated 1x1 conv to RGB, without demodulation, plus bias (clamped like the convs)."""

  def __init__(self, cin: int, cout: int, w_dim: int, *, conv_clamp: float | None, fused: bool, rngs: nnx.Rngs):
    self.affine = Dense(w_dim, cin, bias_init=1.0, rngs=rngs)
    self.weight = nnx.Param(_normal(rngs, (cin, cout)))
    self.bias = nnx.Param(jnp.zeros((cout,), jnp.float32))
    self.conv_clamp, self.fused = conv_clamp, fused
    self.weight_gain = 1.0 / math.sqrt(cin)

  def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
    styles = self.affine(w) * self.weight_gain
    # A 1x1 conv without demodulation is a per-sample matmul with the modulated kernel s_bi W_io (a batched
    # einsum: on a CPU several times faster than scaling the activations, then one matmul with 3 outputs).
    kernel = (styles[:, :, None] * self.weight[...]).astype(x.dtype)
    x = jnp.einsum("bhwi,bio->bhwo", x, kernel)
    x = x.astype(jnp.float32) + self.bias[...]
    if self.conv_clamp is not None:
      x = jnp.clip(x, -self.conv_clamp, self.conv_clamp)
    return x


class SynthesisBlock(nnx.Module):
  """One resolution: (const | up-conv0), conv1, toRGB added to the up-sampled image so far (skip architecture)."""

  def __init__(self, config: Config, res: int, *, rngs: nnx.Rngs):
    cout = config.channels(res)
    kw = dict(conv_clamp=config.conv_clamp, fused=config.fused_modconv, rngs=rngs)
    self.res = res
    if res == 4:
      self.const = nnx.Param(_normal(rngs, (4, 4, cout)))
    else:
      self.conv0 = SynthesisLayer(config.channels(res // 2), cout, config.w_dim, res, up=True, **kw)
    self.conv1 = SynthesisLayer(cout, cout, config.w_dim, res, up=False, **kw)
    self.torgb = ToRGB(cout, config.img_channels, config.w_dim, **kw)
    self.num_conv = 1 if res == 4 else 2


class Generator(nnx.Module):
  """StyleGAN2 G: `mapping(z, ...)` -> ws, `synthesis(ws, ...)` -> NHWC float32 image, `__call__` = both."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    self.mapping_net = Mapping(config, rngs=rngs)
    for res in config.block_resolutions:
      setattr(self, f"b{res}", SynthesisBlock(config, res, rngs=rngs))

  def mapping(
    self, z: jax.Array, truncation_psi: float | jax.Array = 1.0, truncation_cutoff: int | None = None
  ) -> jax.Array:
    """z [B, z_dim] -> ws [B, num_ws, w_dim]; truncation lerps the first `truncation_cutoff` ws (all if None)."""
    c = self.config
    if z.ndim != 2 or z.shape[1] != c.z_dim:
      raise ValueError(f"mapping expects z of shape [B, {c.z_dim}], got {z.shape}")
    w = self.mapping_net(z)
    ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], c.num_ws, c.w_dim))
    if isinstance(truncation_psi, (int, float)) and truncation_psi == 1:
      return ws
    w_avg = self.mapping_net.w_avg[...]
    truncated = w_avg + truncation_psi * (ws - w_avg)
    if truncation_cutoff is None:
      return truncated
    keep = (jnp.arange(c.num_ws) < truncation_cutoff)[None, :, None]
    return jnp.where(keep, truncated, ws)

  def synthesis(
    self,
    ws: jax.Array,
    noise_mode: str = "const",
    rng: jax.Array | None = None,
    noise: Sequence[jax.Array] | None = None,
    dtype: Any = None,
  ) -> jax.Array:
    """ws [B, num_ws, w_dim] -> image [B, H, W, img_channels] float32 (roughly [-1, 1] for trained weights).

    Args:
      ws: one w per style input (style mixing: rows from different latents).
      noise_mode: "const" (each layer's stored noise), "random" (fresh N(0, 1) from `rng`) or "none".
      rng: a PRNG key, required for "random".
      noise: explicit per-layer noise (overrides `noise_mode`), one array per entry of `config.noise_layers`, in
        that order, of shape [res, res], [B, res, res] or [B, res, res, 1]: the raw draw that the layer scales by
        its noise strength.
      dtype: compute dtype of the convolutions (default `config.compute_dtype`).
    """
    c = self.config
    if ws.ndim != 3 or ws.shape[1:] != (c.num_ws, c.w_dim):
      raise ValueError(f"synthesis expects ws of shape [B, {c.num_ws}, {c.w_dim}], got {ws.shape}")
    dtype = jnp.dtype(dtype or c.compute_dtype)
    noises = self._noises(ws.shape[0], noise_mode, rng, noise)
    ws = ws.astype(jnp.float32)
    x = img = None
    w_idx = 0
    layer_idx = 0
    for res in c.block_resolutions:
      block = getattr(self, f"b{res}")
      if res == 4:
        x = jnp.broadcast_to(block.const[...].astype(dtype), (ws.shape[0], 4, 4, block.const.shape[-1]))
      else:
        x = block.conv0(x, ws[:, w_idx], noises[layer_idx])
        w_idx += 1
        layer_idx += 1
      x = block.conv1(x, ws[:, w_idx], noises[layer_idx])
      w_idx += 1
      layer_idx += 1
      y = block.torgb(x, ws[:, w_idx])
      img = y if img is None else layers.upsample_2x(img) + y
    return img

  def __call__(
    self,
    z: jax.Array,
    truncation_psi: float | jax.Array = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
    rng: jax.Array | None = None,
    dtype: Any = None,
  ) -> jax.Array:
    ws = self.mapping(z, truncation_psi, truncation_cutoff)
    return self.synthesis(ws, noise_mode=noise_mode, rng=rng, dtype=dtype)

  def _noises(
    self, batch: int, noise_mode: str, rng: jax.Array | None, noise: Sequence[jax.Array] | None
  ) -> list[jax.Array | None]:
    """Per-layer noise, [B or 1, res, res, 1] each (before the layer's strength), or None."""
    layers_ = self.config.noise_layers
    if noise is not None:
      if len(noise) != len(layers_):
        raise ValueError(
          f"noise: expected {len(layers_)} arrays (one per layer {[n for n, _ in layers_]}), got {len(noise)}"
        )
      out = []
      for (name, res), n in zip(layers_, noise):
        n = jnp.asarray(n, jnp.float32)
        if n.shape == (res, res):
          n = n[None]
        if n.ndim == 4 and n.shape[-1] == 1:
          n = n[..., 0]
        if n.ndim != 3 or n.shape[1:] != (res, res) or n.shape[0] not in (1, batch):
          raise ValueError(
            f"noise for layer {name}: expected shape [{res}, {res}], [B, {res}, {res}] or "
            f"[B, {res}, {res}, 1] with B={batch}, got {np.shape(n)}"
          )
        out.append(n[..., None])
      return out
    if noise_mode not in NOISE_MODES:
      raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    if noise_mode == "none":
      return [None] * len(layers_)
    if noise_mode == "random":
      if rng is None:
        raise ValueError('noise_mode="random" needs an explicit rng= key')
      keys = jax.random.split(rng, len(layers_))
      return [jax.random.normal(k, (batch, res, res, 1), jnp.float32) for k, (_, res) in zip(keys, layers_)]
    out = []
    for name, _ in layers_:
      block, conv = name.split(".")
      out.append(getattr(getattr(self, block), conv).noise_const[...][None, :, :, None])
    return out
