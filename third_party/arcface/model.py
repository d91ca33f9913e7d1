"""ArcFace IR-SE50 (TreB1eN/InsightFace_Pytorch `Backbone(50, 0.6, "ir_se")`), frozen: the identity metric.

The network the pSp / e4e family and most face-swapping papers measure identity with. It was not in this project's
training loss (unless a config picks it as E_id), so its cosine similarities judge a model without being the very
thing the model was trained to please.

Structure (facts from upstream `model.py`):
  stem      3x3/1 conv (pad 1, no bias) -> BatchNorm -> PReLU, at the input resolution (112x112)
  body      4 stages of "improved residual" units; the first unit of every stage has stride 2 (the first stage too),
            so 112 -> 56 -> 28 -> 14 -> 7. A unit is BN -> 3x3/1 conv -> PReLU -> 3x3/stride conv -> BN -> SE,
            plus a shortcut that is a strided 1x1 conv + BN where the width changes and a strided subsampling
            (`MaxPool2d(1, stride)`) where it does not. No activation after the sum.
  SE        global mean -> 1x1 conv (C -> C/16, no bias) -> ReLU -> 1x1 conv (C/16 -> C, no bias) -> sigmoid gate.
  head      BN over the 7x7x512 map -> dropout (identity in eval) -> flatten in PyTorch's NCHW order -> Linear
            25088 -> 512 (with bias) -> BatchNorm1d -> L2 normalisation.
BatchNorm eps is PyTorch's default 1e-5 everywhere. The input is RGB scaled to [-1, 1] (upstream's
`Normalize([0.5] * 3, [0.5] * 3)` after `ToTensor`), which is the generator's own range, so no rescaling happens.

Images other than `input_size` square get the identity-loss crop of pSp / e4e (`criteria/id_loss.py`): on a 256x256
FFHQ-aligned face, rows 35:223 and columns 32:220, then `AdaptiveAvgPool2d((112, 112))` (an area average over
windows `[floor(i n / m), ceil((i + 1) n / m))`, not a bilinear resize). Other sizes scale the box proportionally.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import layers

BN_EPS = 1e-5
# ArcFace has one output; both head names E_id configs use give it, so a config written for VGGFace2 runs as is.
HEADS = ("pool", "proj")
# Blocks per stage of upstream's `get_blocks(num_layers)`.
UNITS_BY_DEPTH = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
# The identity-loss crop of pSp / e4e on a 256x256 image: rows [35, 223), columns [32, 220).
CROP_FRAME = 256
CROP_256 = (35, 223, 32, 220)


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes of the network. `Config()` is the released IR-SE50 (`model_ir_se50.pth`).

  Attributes:
    stem_width: channels of the 3x3 input convolution (64).
    widths: output channels of each stage (64, 128, 256, 512). Consecutive stages must differ in width: a
      checkpoint records no strides, so the converter finds the stage boundaries where the width changes.
    units: residual units per stage (`UNITS_BY_DEPTH[50]`: 3, 4, 14, 3).
    se_reduction: the SE bottleneck has `width // se_reduction` channels (16); 0 for no SE, upstream's
      `mode="ir"` (the released model is `mode="ir_se"`).
    embedding_dim: size of the output embedding (512).
    input_size: side of the square network input (112); the head's linear layer sees a
      `(input_size / 2**len(units))**2 * widths[-1]` flattened map, so the weights fix it.
  """

  stem_width: int = 64
  widths: tuple[int, ...] = (64, 128, 256, 512)
  units: tuple[int, ...] = UNITS_BY_DEPTH[50]
  se_reduction: int = 16
  embedding_dim: int = 512
  input_size: int = 112

  def __post_init__(self):
    object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
    object.__setattr__(self, "units", tuple(int(n) for n in self.units))
    if not self.units or len(self.units) != len(self.widths) or min(self.units) < 1 or min(self.widths) < 1:
      raise ValueError(f"invalid ArcFace config: widths={self.widths}, units={self.units} (one width per stage)")
    if any(a == b for a, b in zip(self.widths, self.widths[1:])):
      raise ValueError(f"consecutive stage widths must differ (stage boundaries are found by width): {self.widths}")
    if not 0 <= self.se_reduction <= min(self.widths):
      raise ValueError(f"se_reduction {self.se_reduction} leaves no SE channels at widths {self.widths} (0: no SE)")
    if self.stem_width < 1 or self.embedding_dim < 1:
      raise ValueError(f"stem_width and embedding_dim must be >= 1, got {self.stem_width}, {self.embedding_dim}")
    if self.input_size < 2 ** len(self.units) or self.input_size % 2 ** len(self.units):
      raise ValueError(
        f"input_size {self.input_size} must be a positive multiple of {2 ** len(self.units)} ({len(self.units)} "
        "stride-2 stages)"
      )

  @property
  def final_size(self) -> int:
    """Side of the last feature map (7 at 112)."""
    return self.input_size // 2 ** len(self.units)


IR_SE50 = Config()


class PReLU(nnx.Module):
  """Per-channel PReLU, `x if x >= 0 else slope * x` (PyTorch `PReLU(C)`, initial slope 0.25)."""

  def __init__(self, channels: int):
    self.slope = nnx.Param(jnp.full((channels,), 0.25, jnp.float32))

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, self.slope[...].astype(x.dtype) * x)


class SqueezeExcite(nnx.Module):
  """Channel gate: sigmoid(fc2(relu(fc1(mean over H, W)))) times the input; fc1/fc2 bias-free 1x1 convolutions."""

  def __init__(self, channels: int, reduction: int, *, rngs: nnx.Rngs):
    self.fc1 = layers.conv(channels, channels // reduction, 1, rngs=rngs)
    self.fc2 = layers.conv(channels // reduction, channels, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    gate = jnp.mean(x, axis=(1, 2), keepdims=True)
    gate = jax.nn.sigmoid(self.fc2(jax.nn.relu(self.fc1(gate))))
    return x * gate


class Unit(nnx.Module):
  """An improved residual unit: BN -> 3x3 conv -> PReLU -> 3x3 conv (stride here) -> BN [-> SE], plus shortcut."""

  def __init__(self, in_features: int, depth: int, stride: int, se_reduction: int, *, rngs: nnx.Rngs):
    self.stride = stride
    if in_features == depth:  # upstream `MaxPool2d(1, stride)`: a strided subsampling, no weights
      self.shortcut_conv = self.shortcut_bn = None
    else:
      self.shortcut_conv = layers.conv(in_features, depth, 1, stride=stride, rngs=rngs)
      self.shortcut_bn = layers.BatchNorm(depth, BN_EPS)
    self.bn1 = layers.BatchNorm(in_features, BN_EPS)
    self.conv1 = layers.conv(in_features, depth, 3, padding=1, rngs=rngs)
    self.prelu = PReLU(depth)
    self.conv2 = layers.conv(depth, depth, 3, stride=stride, padding=1, rngs=rngs)
    self.bn2 = layers.BatchNorm(depth, BN_EPS)
    self.se = SqueezeExcite(depth, se_reduction, rngs=rngs) if se_reduction else None

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.shortcut_conv is None:
      shortcut = x[:, :: self.stride, :: self.stride]
    else:
      shortcut = self.shortcut_bn(self.shortcut_conv(x))
    y = self.bn2(self.conv2(self.prelu(self.conv1(self.bn1(x)))))
    if self.se is not None:
      y = self.se(y)
    return y + shortcut


class ArcFace(nnx.Module):
  """The identity metric. `features` takes the network input; `embed` takes generator images in [-1, 1]."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    self.input_conv = layers.conv(3, config.stem_width, 3, padding=1, rngs=rngs)
    self.input_bn = layers.BatchNorm(config.stem_width, BN_EPS)
    self.input_prelu = PReLU(config.stem_width)
    in_features, index = config.stem_width, 0
    for width, units in zip(config.widths, config.units):
      for u in range(units):
        setattr(self, f"unit{index}", Unit(in_features, width, 2 if u == 0 else 1, config.se_reduction, rngs=rngs))
        in_features, index = width, index + 1
    self.num_units = index
    self.output_bn = layers.BatchNorm(in_features, BN_EPS)
    self.output_linear = nnx.Linear(in_features * config.final_size**2, config.embedding_dim, rngs=rngs)
    self.embedding_bn = layers.BatchNorm(config.embedding_dim, BN_EPS)

  def preprocess(self, images: jax.Array) -> jax.Array:
    """Generator images (float NHWC in [-1, 1], any size) -> the network input [B, input_size, input_size, 3]."""
    return preprocess(images, self.config.input_size)

  def features(self, x: jax.Array) -> jax.Array:
    """The embedding before L2 normalisation, [B, embedding_dim], of the network input (NHWC RGB in [-1, 1])."""
    size = self.config.input_size
    if x.ndim != 4 or x.shape[1:] != (size, size, 3):
      raise ValueError(f"ArcFace input must be [B, {size}, {size}, 3], got {x.shape}; use embed() for other sizes")
    x = self.input_prelu(self.input_bn(self.input_conv(x)))
    for i in range(self.num_units):
      x = getattr(self, f"unit{i}")(x)
    x = self.output_bn(x)
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)  # PyTorch's flatten order (C, H, W) for the linear
    return self.embedding_bn(self.output_linear(x))

  def embed(self, images: jax.Array, head: str = "pool") -> jax.Array:
    """L2-normalised identity embedding [B, embedding_dim] (float32) of generator images in [-1, 1].

    Images at `input_size` are used as they are; other sizes get the FFHQ identity crop (module docstring).
    `head` is accepted for E_id's interface: ArcFace has one embedding, which "pool" and "proj" both name.
    """
    if head not in HEADS:
      raise ValueError(f"head must be one of {HEADS} (both give ArcFace's one embedding), got {head!r}")
    x = self.preprocess(images)
    f = self.features(x.astype(self.input_conv.kernel[...].dtype))
    f = f.astype(jnp.promote_types(f.dtype, jnp.float32))  # bfloat16 runs normalise in float32
    return f * jax.lax.rsqrt(jnp.maximum(jnp.sum(f * f, axis=-1, keepdims=True), 1e-24))


def crop_box(height: int, width: int) -> tuple[int, int, int, int]:
  """(top, bottom, left, right) of the identity crop in a `height x width` image: `CROP_256` scaled by the size over
  256 and rounded to the nearest pixel (Python's `round`: halves to even); exact at 256, 512 and 1024."""
  top, bottom, left, right = CROP_256
  sy, sx = height / CROP_FRAME, width / CROP_FRAME
  return round(top * sy), round(bottom * sy), round(left * sx), round(right * sx)


def adaptive_pool_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] weights of PyTorch's 1-D adaptive average pooling: output i averages the input window
  `[floor(i * n_in / n_out), ceil((i + 1) * n_in / n_out))` (windows overlap when the ratio is not an integer)."""
  m = np.zeros((n_out, n_in), np.float32)
  for i in range(n_out):
    start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def preprocess(images: jax.Array, input_size: int = IR_SE50.input_size) -> jax.Array:
  """Images at `input_size` unchanged (as float); others cropped (`crop_box`) and area-pooled to `input_size`."""
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"expected NHWC RGB images, got shape {images.shape}")
  x = images.astype(jnp.promote_types(images.dtype, jnp.float32))
  h, w = x.shape[1:3]
  if (h, w) == (input_size, input_size):
    return x
  top, bottom, left, right = crop_box(h, w)
  x = x[:, top:bottom, left:right]
  rows = jnp.asarray(adaptive_pool_matrix(bottom - top, input_size), x.dtype)
  cols = jnp.asarray(adaptive_pool_matrix(right - left, input_size), x.dtype)
  # Full precision: on accelerators a default-precision matmul would round the pixels to bfloat16.
  x = jnp.einsum("oh,bhwc->bowc", rows, x, precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum("pw,bowc->bopc", cols, x, precision=jax.lax.Precision.HIGHEST)
