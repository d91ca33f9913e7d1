"""The VGGFace2 ResNet-50 identity encoder E_id (Caffe-style ResNet of cydonia999/VGGFace2-pytorch), frozen.

Caffe-style differences from torchvision's ResNet-50, each of which changes the output (the fixtures' README
measures them): the stride-2 of a stage sits on the bottleneck's first 1x1 convolution (and on the 1x1 projection),
not on the 3x3; the stem max-pool is 3x3/2 with no padding and `ceil_mode=True`; BatchNorm eps is 1e-5. The head
is `AvgPool2d(7)`, which at the native 224x224 input is a global mean over the 7x7 map; this port always takes the
global mean, so it also runs at the smaller sizes of the smoke config.

Outputs (`features`): `pool`, the 2048-d pooled feature (E_id's default embedding); `logits`, the 8631 VGGFace2
training identities, when the checkpoint has the classifier; `proj`, the 512-d `dim_proj` head of the Keras
VGGFace2 model (WeidiXie/Keras-VGGFace2-ResNet50, the network the paper's TensorFlow code loads): a dense layer with
bias and ReLU on the pooled feature, whose output the paper's code L2-normalises as its identity embedding. The
cydonia999 (Caffe-converted) weights have no such head; when `proj_dim > 0` and a checkpoint lacks it, it is
randomly initialised from an explicit seed.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import layers
from disentangle_jax.third_party.vggface2.preprocess import preprocess as preprocess_images

BN_EPS = {"caffe": 1e-5, "keras": 1e-3}  # Keras' BatchNormalization default epsilon is 1e-3
EXPANSION = 4
FLAVORS = ("caffe", "keras")


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes of the network. `Config()` is the released ResNet-50 without classifier or projection head.

  Attributes:
    width: channels of the stem; stage `s` has `width * 2**s` bottleneck channels and `4x` that at its output.
    layers: bottleneck blocks per stage.
    num_classes: identities of the classifier on the pooled feature (8631 for the released heads), 0 for none.
    proj_dim: output size of the Keras model's `dim_proj` head (512), 0 for none.
    input_size: side of the square network input (224 native); preprocessing scales its crop to it.
    flavor: "caffe" (cydonia999's PyTorch port of the Caffe model) or "keras" (WeidiXie's Keras model: TF "same"
      stem padding, floor-mode max-pool, BatchNorm eps 1e-3, and a bias-free classifier on the `proj` output).
  """

  width: int = 64
  layers: tuple[int, ...] = (3, 4, 6, 3)
  num_classes: int = 0
  proj_dim: int = 0
  input_size: int = 224
  flavor: str = "caffe"

  def __post_init__(self):
    object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
    if self.width < 1 or not self.layers or min(self.layers) < 1:
      raise ValueError(f"invalid VGGFace2 ResNet config: width={self.width}, layers={self.layers}")
    if self.num_classes < 0 or self.proj_dim < 0:
      raise ValueError(f"num_classes and proj_dim must be >= 0, got {self.num_classes}, {self.proj_dim}")
    if self.flavor not in FLAVORS:
      raise ValueError(f"flavor must be one of {FLAVORS}, got {self.flavor!r}")
    if self.flavor == "keras" and self.num_classes and not self.proj_dim:
      raise ValueError("the Keras model's classifier sits on its dim_proj head: num_classes needs proj_dim > 0")
    if self.input_size < 32:
      raise ValueError(f"input_size {self.input_size} is too small for five stride-2 stages (minimum 32)")

  @property
  def feature_dim(self) -> int:
    """Size of the pooled feature: the last stage's output channels (2048 at full size)."""
    return self.width * 2 ** (len(self.layers) - 1) * EXPANSION


FULL = Config()


class Bottleneck(nnx.Module):
  """1x1 (stride here, Caffe style) -> 3x3 -> 1x1 (x4), each with BatchNorm; ReLU after the residual sum."""

  def __init__(self, in_features: int, planes: int, stride: int, eps: float, *, rngs: nnx.Rngs):
    out = planes * EXPANSION
    self.conv1 = layers.conv(in_features, planes, 1, stride=stride, rngs=rngs)
    self.bn1 = layers.BatchNorm(planes, eps)
    self.conv2 = layers.conv(planes, planes, 3, padding=1, rngs=rngs)
    self.bn2 = layers.BatchNorm(planes, eps)
    self.conv3 = layers.conv(planes, out, 1, rngs=rngs)
    self.bn3 = layers.BatchNorm(out, eps)
    if stride != 1 or in_features != out:
      self.downsample_conv = layers.conv(in_features, out, 1, stride=stride, rngs=rngs)
      self.downsample_bn = layers.BatchNorm(out, eps)
    else:
      self.downsample_conv = self.downsample_bn = None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jax.nn.relu(self.bn1(self.conv1(x)))
    y = jax.nn.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    shortcut = x if self.downsample_conv is None else self.downsample_bn(self.downsample_conv(x))
    return jax.nn.relu(y + shortcut)


class Stage(nnx.Module):
  """A stage of bottlenecks, held as attributes `block0`, `block1`, ... (upstream `layerN.0`, `layerN.1`, ...)."""

  def __init__(self, in_features: int, planes: int, blocks: int, stride: int, eps: float, *, rngs: nnx.Rngs):
    self.num_blocks = blocks
    for i in range(blocks):
      setattr(self, f"block{i}", Bottleneck(in_features, planes, stride if i == 0 else 1, eps, rngs=rngs))
      in_features = planes * EXPANSION

  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_blocks):
      x = getattr(self, f"block{i}")(x)
    return x


class ResNet(nnx.Module):
  """E_id. `features` takes the preprocessed BGR input; `embed` takes generator images in [-1, 1]."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    w = config.width
    eps = BN_EPS[config.flavor]
    keras = config.flavor == "keras"
    if keras:  # TF "same" padding: (2, 3) at even input sizes, where PyTorch pads (3, 3)
      self.conv1 = nnx.Conv(
        3, w, (7, 7), strides=(2, 2), padding="SAME", use_bias=False, kernel_init=layers.he_normal, rngs=rngs
      )
    else:
      self.conv1 = layers.conv(3, w, 7, stride=2, padding=3, rngs=rngs)
    self.bn1 = layers.BatchNorm(w, eps)
    in_features = w
    for s, blocks in enumerate(config.layers):
      planes = w * 2**s
      setattr(self, f"layer{s + 1}", Stage(in_features, planes, blocks, 1 if s == 0 else 2, eps, rngs=rngs))
      in_features = planes * EXPANSION
    self.proj = nnx.Linear(in_features, config.proj_dim, rngs=rngs) if config.proj_dim else None
    if not config.num_classes:
      self.fc = None
    elif keras:  # `classifier_low_dim`: bias-free, on the projection
      self.fc = nnx.Linear(config.proj_dim, config.num_classes, use_bias=False, rngs=rngs)
    else:
      self.fc = nnx.Linear(in_features, config.num_classes, rngs=rngs)

  def features(self, x: jax.Array) -> dict[str, jax.Array]:
    """Network outputs for `x`, the preprocessed input: NHWC, BGR, mean-subtracted, [B, S, S, 3].

    Returns a dict with `pool` [B, feature_dim], plus `logits` [B, num_classes] if the classifier exists and
    `proj` [B, proj_dim] (after its ReLU, before normalisation) if the projection head exists.
    """
    x = jax.nn.relu(self.bn1(self.conv1(x)))
    x = layers.max_pool(x, 3, 2, ceil_mode=self.config.flavor == "caffe")
    for s in range(len(self.config.layers)):
      x = getattr(self, f"layer{s + 1}")(x)
    pool = jnp.mean(x, axis=(1, 2))
    out = {"pool": pool}
    if self.proj is not None:
      out["proj"] = jax.nn.relu(self.proj(pool))
    if self.fc is not None:
      out["logits"] = self.fc(out["proj"] if self.config.flavor == "keras" else pool)
    return out

  def embed(self, images: jax.Array, head: str = "pool") -> jax.Array:
    """L2-normalised identity embedding of generator images (float32 NHWC in [-1, 1]); `head` is pool or proj."""
    if head not in ("pool", "proj"):
      raise ValueError(f"head must be 'pool' or 'proj', got {head!r}")
    if head == "proj" and self.proj is None:
      raise ValueError("head='proj' needs a network with the dim_proj head (Config.proj_dim > 0)")
    x = preprocess_images(images, self.config.input_size)
    f = self.features(x.astype(self.conv1.kernel[...].dtype))[head]
    f = f.astype(jnp.promote_types(f.dtype, jnp.float32))  # bfloat16 runs normalise in float32
    return f * jax.lax.rsqrt(jnp.maximum(jnp.sum(f * f, axis=-1, keepdims=True), 1e-24))
