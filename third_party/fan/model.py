"""FAN-2D (face-alignment's stacked-hourglass landmark network) as a frozen Flax NNX module.

The structure and attribute names follow `face_alignment/models/fan.py` of face-alignment 1.5.0, so that every
upstream state_dict key names one Flax variable (see `convert.py`): a stem (7x7/2 conv, BatchNorm, ReLU,
ConvBlock, 2x2 average pool, two ConvBlocks), then `num_modules` stacks, each a depth-4 hourglass followed by
`top_m_i`, `conv_last{i}` + `bn_end{i}` + ReLU and `l{i}` (one heatmap per landmark at a quarter of the input
size); between stacks, `bl{i}` and `al{i}` feed the features and the heatmaps back into the next stack's input.
Upstream computes NCHW; this port computes NHWC (XLA's native layout on CPU and GPU) with the same arithmetic.

The network is frozen: BatchNorm always uses its running statistics (eps 1e-5, as upstream's eval mode), and
nothing here is ever trained.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import layers
from disentangle_jax.third_party.fan import decode

BATCHNORM_EPS = 1e-5
HOURGLASS_DEPTH = 4


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes of a FAN-2D network.

  Attributes:
    num_modules: stacked hourglasses (the released 2DFAN-4 has 4); the last one's heatmaps are the output.
    width: channels of the hourglasses and ConvBlocks (256 upstream). The stem scales with it: its 7x7 conv has
      width / 4 channels and its first ConvBlock width / 2.
    num_landmarks: heatmaps predicted (68 for the 2D model).
    input_size: side of the square network input; images of another size are resized to it. The hourglass halves
      the stem's output (input_size / 4) four times, so input_size must be a multiple of 64.
  """

  num_modules: int = 4
  width: int = 256
  num_landmarks: int = 68
  input_size: int = 256

  def __post_init__(self):
    if self.num_modules < 1:
      raise ValueError(f"FAN Config: num_modules must be >= 1, got {self.num_modules}")
    if self.width < 8 or self.width % 8:
      raise ValueError(
        f"FAN Config: width must be a positive multiple of 8 (ConvBlocks split it into quarters "
        f"of width / 2), got {self.width}"
      )
    if self.num_landmarks < 1:
      raise ValueError(f"FAN Config: num_landmarks must be >= 1, got {self.num_landmarks}")
    if self.input_size < 64 or self.input_size % 64:
      raise ValueError(
        f"FAN Config: input_size must be a positive multiple of 64 (stride 4 stem, then a depth-4 "
        f"hourglass), got {self.input_size}"
      )

  @property
  def heatmap_size(self) -> int:
    return self.input_size // 4


FAN4 = Config()


class _Init:
  """Where a FAN's initial weights come from: a numpy generator seeded from the caller's `nnx.Rngs`.

  Drawing with numpy keeps construction fast: flax's `nnx.Conv` costs JAX dispatches per layer and, under
  `nnx.eval_shape`, a tracer `.sharding` lookup per random-stream call whose error message walks the whole trace,
  which made building FAN4 take tens of seconds. Under a JAX transformation (`nnx.eval_shape`, how `load` builds
  the module before filling it) the weights are zeros, which the transformation turns into shapes.
  """

  def __init__(self, rngs: nnx.Rngs):
    key = rngs.params()
    traced = isinstance(key, jax.core.Tracer)
    self.rng = None if traced else np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())

  def uniform(self, shape: tuple[int, ...], bound: float) -> jax.Array:
    if self.rng is None:
      return jnp.zeros(shape, jnp.float32)
    return jnp.asarray(self.rng.uniform(-bound, bound, shape).astype(np.float32))


class Conv(nnx.Module):
  """2-D convolution, NHWC, with PyTorch's symmetric zero padding (kernel // 2) and default init.

  The init is PyTorch's Conv2d default (kaiming_uniform with a = sqrt(5), bias likewise: U(+-1/sqrt(fan_in))),
  so a randomly initialised port behaves like a randomly initialised upstream FAN.
  """

  def __init__(self, cin: int, cout: int, kernel: int, init: _Init, stride: int = 1, bias: bool = True):
    bound = 1.0 / float(np.sqrt(cin * kernel * kernel))
    self.kernel = nnx.Param(init.uniform((kernel, kernel, cin, cout), bound))
    self.bias = nnx.Param(init.uniform((cout,), bound)) if bias else None
    self.stride = stride
    self.pad = kernel // 2

  def __call__(self, x: jax.Array) -> jax.Array:
    y = layers.conv_general_dilated(
      x,
      self.kernel[...].astype(x.dtype),
      (self.stride, self.stride),
      [(self.pad, self.pad)] * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y if self.bias is None else y + self.bias[...].astype(x.dtype)


def _avg_pool2(x: jax.Array) -> jax.Array:
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _upsample2(x: jax.Array) -> jax.Array:
  """Nearest-neighbour x2 upsampling (upstream `F.interpolate(scale_factor=2, mode='nearest')`)."""
  b, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)


class ConvBlock(nnx.Module):
  """Pre-activation residual block whose output concatenates three 3x3 convs (out/2, out/4, out/4 channels)."""

  def __init__(self, cin: int, cout: int, init: _Init):
    self.bn1 = layers.BatchNorm(cin, BATCHNORM_EPS)
    self.conv1 = Conv(cin, cout // 2, 3, init, bias=False)
    self.bn2 = layers.BatchNorm(cout // 2, BATCHNORM_EPS)
    self.conv2 = Conv(cout // 2, cout // 4, 3, init, bias=False)
    self.bn3 = layers.BatchNorm(cout // 4, BATCHNORM_EPS)
    self.conv3 = Conv(cout // 4, cout // 4, 3, init, bias=False)
    # Upstream `downsample = Sequential(BatchNorm2d, ReLU, Conv2d 1x1)`: keys downsample.0.* and downsample.2.*.
    self.has_downsample = cin != cout
    if self.has_downsample:
      self.downsample_bn = layers.BatchNorm(cin, BATCHNORM_EPS)
      self.downsample_conv = Conv(cin, cout, 1, init, bias=False)

  def __call__(self, x: jax.Array) -> jax.Array:
    out1 = self.conv1(jax.nn.relu(self.bn1(x)))
    out2 = self.conv2(jax.nn.relu(self.bn2(out1)))
    out3 = self.conv3(jax.nn.relu(self.bn3(out2)))
    residual = self.downsample_conv(jax.nn.relu(self.downsample_bn(x))) if self.has_downsample else x
    return jnp.concatenate([out1, out2, out3], axis=-1) + residual


class HourGlass(nnx.Module):
  """Recursive hourglass: at each level an upper ConvBlock branch plus a pooled lower branch, upsampled and added."""

  def __init__(self, depth: int, features: int, init: _Init):
    self.depth = depth
    for level in range(depth, 0, -1):
      setattr(self, f"b1_{level}", ConvBlock(features, features, init))
      setattr(self, f"b2_{level}", ConvBlock(features, features, init))
      if level == 1:
        setattr(self, f"b2_plus_{level}", ConvBlock(features, features, init))
      setattr(self, f"b3_{level}", ConvBlock(features, features, init))

  def _level(self, level: int, x: jax.Array) -> jax.Array:
    up1 = getattr(self, f"b1_{level}")(x)
    low1 = getattr(self, f"b2_{level}")(_avg_pool2(x))
    low2 = self._level(level - 1, low1) if level > 1 else getattr(self, f"b2_plus_{level}")(low1)
    low3 = getattr(self, f"b3_{level}")(low2)
    return up1 + _upsample2(low3)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self._level(self.depth, x)


class FAN(nnx.Module):
  """FAN-2D; `heatmaps` and `landmarks` take generator images (float32 NHWC in [-1, 1])."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    init = _Init(rngs)
    w, k = config.width, config.num_landmarks
    self.conv1 = Conv(3, w // 4, 7, init, stride=2)
    self.bn1 = layers.BatchNorm(w // 4, BATCHNORM_EPS)
    self.conv2 = ConvBlock(w // 4, w // 2, init)
    self.conv3 = ConvBlock(w // 2, w // 2, init)
    self.conv4 = ConvBlock(w // 2, w, init)
    for i in range(config.num_modules):
      setattr(self, f"m{i}", HourGlass(HOURGLASS_DEPTH, w, init))
      setattr(self, f"top_m_{i}", ConvBlock(w, w, init))
      setattr(self, f"conv_last{i}", Conv(w, w, 1, init))
      setattr(self, f"bn_end{i}", layers.BatchNorm(w, BATCHNORM_EPS))
      setattr(self, f"l{i}", Conv(w, k, 1, init))
      if i < config.num_modules - 1:
        setattr(self, f"bl{i}", Conv(w, w, 1, init))
        setattr(self, f"al{i}", Conv(k, w, 1, init))

  def preprocess(self, images: jax.Array) -> jax.Array:
    """[-1, 1] NHWC images -> the network input: [0, 1] (upstream's uint8 / 255), resized to input_size."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FAN expects images [B, H, W, 3], got shape {images.shape}")
    images = jnp.asarray(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
      raise ValueError(f"FAN expects float images in [-1, 1], got dtype {images.dtype}")
    x = (images + 1.0) * 0.5  # float64 stays float64, for finite-difference checks
    s = self.config.input_size
    if x.shape[1:3] != (s, s):
      x = jax.image.resize(x, (x.shape[0], s, s, 3), method="linear", antialias=True)
    return x

  def all_heatmaps(self, images: jax.Array) -> list[jax.Array]:
    """Heatmaps of every stack, [B, input_size/4, input_size/4, num_landmarks] each (upstream's output list)."""
    x = self.preprocess(images)
    x = jax.nn.relu(self.bn1(self.conv1(x)))
    x = self.conv4(self.conv3(_avg_pool2(self.conv2(x))))
    previous, outputs = x, []
    for i in range(self.config.num_modules):
      ll = getattr(self, f"top_m_{i}")(getattr(self, f"m{i}")(previous))
      ll = jax.nn.relu(getattr(self, f"bn_end{i}")(getattr(self, f"conv_last{i}")(ll)))
      out = getattr(self, f"l{i}")(ll)
      outputs.append(out)
      if i < self.config.num_modules - 1:
        previous = previous + getattr(self, f"bl{i}")(ll) + getattr(self, f"al{i}")(out)
    return outputs

  def heatmaps(self, images: jax.Array) -> jax.Array:
    """The last stack's heatmaps [B, input_size/4, input_size/4, num_landmarks] (what upstream's API decodes)."""
    return self.all_heatmaps(images)[-1]

  def landmarks(self, images: jax.Array) -> jax.Array:
    """[B, num_landmarks, 2] (x, y) in pixels of the input_size x input_size network input, differentiably.

    Decoded by `decode.soft_argmax` and scaled by the heatmap stride (4) as upstream scales its `pts`; the frame's
    top-left corner is (0, 0) and pixel (i, j) covers [j, j+1) x [i, i+1).
    """
    hm = self.heatmaps(images)
    return decode.soft_argmax(hm) * (self.config.input_size / hm.shape[1])

  def landmarks_hard(self, images: jax.Array) -> jax.Array:
    """Like `landmarks` but with face-alignment's own argmax decoding (not differentiable; for evaluation)."""
    hm = self.heatmaps(images)
    return decode.hard_argmax(hm) * (self.config.input_size / hm.shape[1])
