"""E_attr: InceptionV3 in torchvision's layout (no auxiliary head), trainable, with an ImageNet-weights converter.

The paper's attribute encoder is Keras' InceptionV3 with global average pooling (2048-d). This port follows
torchvision's `inception_v3` module tree and key names instead, so torchvision's ImageNet `state_dict` initialises
it directly (the `AuxLogits.*` entries, a training-time auxiliary classifier, are dropped), and it takes
torchvision's ImageNet normalisation.

BatchNorm (eps 1e-3, torchvision's `BasicConv2d`) always uses its running statistics, also while training, with a
trainable scale and bias. E_attr is trained with 6 images per device (2 in the smoke config): batch statistics
that small are noisy, would differ between the same-image and cross batches that alternate during training, and
would make an embedding depend on which images share its batch. Frozen statistics make the network a fixed
function of each image, so E_attr trains as a per-sample map (from ImageNet statistics when initialised from
torchvision weights; from 0 / 1, with He-initialised convolutions keeping unit activation scale, at random init).

The FID InceptionV3 (`third_party/fid_inception`, pytorch-fid's `pt_inception-2015-12-05` weights) is this module
with the 2015 TF graph's conventions, which are Config fields like the Keras original's: one InceptionV3 in the
project, whatever the weights' origin.

`width_multiplier` scales every convolution's output channels to `max(1, round(c * width_multiplier))` (the smoke
config uses 0.125); the feature size is the sum of the last block's four branches (2048 at 1.0, 256 at 0.125).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.third_party.common import checkpoint_files
from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import keras_h5
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import layers
from disentangle_jax.third_party.common import torch_layout
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError

NETWORK = "inception_v3"
BN_EPS = 1e-3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_INPUT_SIZE = 75  # the smallest input whose feature maps survive every valid-padded stride-2 layer
INPUT_NORMS = ("imagenet", "minus_one_one")
LAST_BLOCK_POOLS = ("avg", "max")


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes of InceptionV3.

  Attributes:
    width_multiplier: scales every convolution's channel count (1.0 = torchvision's network).
    input_size: side the images are resized to (299 native; at least 75).
    num_classes: size of the `fc` classifier on the pooled feature (1000 for ImageNet weights), 0 for none.
    input_norm: what the first convolution sees, which must be what its weights were trained on: "imagenet"
      (`(x - mean) / std` of [0, 1] pixels, the random-init default) or "minus_one_one" (the [-1, 1] images as
      they are: Keras' `preprocess_input` for InceptionV3, and torchvision's ImageNet weights, which were trained
      behind `transform_input=True`). The converters set it from the weights' origin.
    bn_scale: BatchNorm has a trained scale (torchvision); False is Keras' `scale=False` (scale fixed at 1).
    pool_count_include_pad: the blocks' 3x3 average pools divide by 9 at the border (torchvision); False divides
      by the pixels inside the image (Keras' `padding="same"` pooling, and the TF graph the FID Inception ports).
    last_block_pool: the 3x3 pool in front of Mixed_7c's pool branch: "avg" (torchvision, Keras) or "max" (the FID
      Inception, pt_inception-2015-12-05: Google's 2015 graph max-pools there, zero-free padding as PyTorch's
      `max_pool2d(x, 3, 1, padding=1)`; its weights were trained with it).
  """

  width_multiplier: float = 1.0
  input_size: int = 299
  num_classes: int = 0
  input_norm: str = "imagenet"
  bn_scale: bool = True
  pool_count_include_pad: bool = True
  last_block_pool: str = "avg"

  def __post_init__(self):
    if not self.width_multiplier > 0:
      raise ValueError(f"width_multiplier must be > 0, got {self.width_multiplier}")
    if self.input_size < MIN_INPUT_SIZE:
      raise ValueError(f"input_size {self.input_size} is below InceptionV3's minimum of {MIN_INPUT_SIZE}")
    if self.num_classes < 0:
      raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")
    if self.input_norm not in INPUT_NORMS:
      raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {self.input_norm!r}")
    if self.last_block_pool not in LAST_BLOCK_POOLS:
      raise ValueError(f"last_block_pool must be one of {LAST_BLOCK_POOLS}, got {self.last_block_pool!r}")

  def channels(self, c: int) -> int:
    return max(1, int(round(c * self.width_multiplier)))

  @property
  def feature_dim(self) -> int:
    ch = self.channels
    return ch(320) + 2 * ch(384) + 2 * ch(384) + ch(192)


FULL = Config()


class BasicConv(nnx.Module):
  """torchvision's `BasicConv2d`: bias-free conv, BatchNorm (eps 1e-3), ReLU."""

  def __init__(self, cin: int, cout: int, kernel, *, stride: int = 1, padding=0, bn_scale: bool = True, rngs: nnx.Rngs):
    self.conv = layers.conv(cin, cout, kernel, stride=stride, padding=padding, rngs=rngs)
    self.bn = layers.BatchNorm(cout, BN_EPS, use_scale=bn_scale)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu(self.bn(self.conv(x)))


class InceptionA(nnx.Module):
  """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

  def __init__(self, cin: int, pool_features: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    self.count_include_pad = c.pool_count_include_pad
    self.branch1x1 = BasicConv(cin, ch(64), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch5x5_1 = BasicConv(cin, ch(48), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch5x5_2 = BasicConv(ch(48), ch(64), 5, padding=2, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(cin, ch(64), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(ch(64), ch(96), 3, padding=1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv(ch(96), ch(96), 3, padding=1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch_pool = BasicConv(cin, ch(pool_features), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.out_features = ch(64) + ch(64) + ch(96) + ch(pool_features)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(layers.avg_pool_3x3_same(x, self.count_include_pad))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
  """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

  def __init__(self, cin: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    self.branch3x3 = BasicConv(cin, ch(384), 3, stride=2, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(cin, ch(64), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(ch(64), ch(96), 3, padding=1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv(ch(96), ch(96), 3, stride=2, bn_scale=c.bn_scale, rngs=rngs)
    self.out_features = ch(384) + ch(96) + cin

  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return jnp.concatenate([b3, bd, layers.max_pool(x, 3, 2)], axis=-1)


class InceptionC(nnx.Module):
  """17x17 block with factorised 7x7 convolutions (1x7 and 7x1)."""

  def __init__(self, cin: int, channels_7x7: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    self.count_include_pad = c.pool_count_include_pad
    c7 = ch(channels_7x7)
    self.branch1x1 = BasicConv(cin, ch(192), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7_1 = BasicConv(cin, c7, 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3), bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7_3 = BasicConv(c7, ch(192), (7, 1), padding=(3, 0), bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7dbl_1 = BasicConv(cin, c7, 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0), bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3), bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0), bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7dbl_5 = BasicConv(c7, ch(192), (1, 7), padding=(0, 3), bn_scale=c.bn_scale, rngs=rngs)
    self.branch_pool = BasicConv(cin, ch(192), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.out_features = 4 * ch(192)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
      bd = layer(bd)
    bp = self.branch_pool(layers.avg_pool_3x3_same(x, self.count_include_pad))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
  """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

  def __init__(self, cin: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    self.branch3x3_1 = BasicConv(cin, ch(192), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3_2 = BasicConv(ch(192), ch(320), 3, stride=2, bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7x3_1 = BasicConv(cin, ch(192), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7x3_2 = BasicConv(ch(192), ch(192), (1, 7), padding=(0, 3), bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7x3_3 = BasicConv(ch(192), ch(192), (7, 1), padding=(3, 0), bn_scale=c.bn_scale, rngs=rngs)
    self.branch7x7x3_4 = BasicConv(ch(192), ch(192), 3, stride=2, bn_scale=c.bn_scale, rngs=rngs)
    self.out_features = ch(320) + ch(192) + cin

  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
    return jnp.concatenate([b3, b7, layers.max_pool(x, 3, 2)], axis=-1)


class InceptionE(nnx.Module):
  """8x8 block with expanded 1x3 / 3x1 branches; `pool` is the pool branch's 3x3 pooling ("avg" or "max")."""

  def __init__(self, cin: int, c: Config, *, pool: str = "avg", rngs: nnx.Rngs):
    ch = c.channels
    self.count_include_pad = c.pool_count_include_pad
    self.pool = pool
    self.branch1x1 = BasicConv(cin, ch(320), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3_1 = BasicConv(cin, ch(384), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3_2a = BasicConv(ch(384), ch(384), (1, 3), padding=(0, 1), bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3_2b = BasicConv(ch(384), ch(384), (3, 1), padding=(1, 0), bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(cin, ch(448), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(ch(448), ch(384), 3, padding=1, bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_3a = BasicConv(ch(384), ch(384), (1, 3), padding=(0, 1), bn_scale=c.bn_scale, rngs=rngs)
    self.branch3x3dbl_3b = BasicConv(ch(384), ch(384), (3, 1), padding=(1, 0), bn_scale=c.bn_scale, rngs=rngs)
    self.branch_pool = BasicConv(cin, ch(192), 1, bn_scale=c.bn_scale, rngs=rngs)
    self.out_features = ch(320) + 4 * ch(384) + ch(192)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], axis=-1)
    if self.pool == "max":
      pooled = layers.max_pool_3x3_same(x)
    else:
      pooled = layers.avg_pool_3x3_same(x, self.count_include_pad)
    bp = self.branch_pool(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class Inception(nnx.Module):
  """InceptionV3 trunk (+ optional `fc`). `__call__` maps images in [-1, 1] to the pooled attribute feature."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    ch = config.channels
    self.Conv2d_1a_3x3 = BasicConv(3, ch(32), 3, stride=2, bn_scale=config.bn_scale, rngs=rngs)
    self.Conv2d_2a_3x3 = BasicConv(ch(32), ch(32), 3, bn_scale=config.bn_scale, rngs=rngs)
    self.Conv2d_2b_3x3 = BasicConv(ch(32), ch(64), 3, padding=1, bn_scale=config.bn_scale, rngs=rngs)
    self.Conv2d_3b_1x1 = BasicConv(ch(64), ch(80), 1, bn_scale=config.bn_scale, rngs=rngs)
    self.Conv2d_4a_3x3 = BasicConv(ch(80), ch(192), 3, bn_scale=config.bn_scale, rngs=rngs)
    self.Mixed_5b = InceptionA(ch(192), 32, config, rngs=rngs)
    self.Mixed_5c = InceptionA(self.Mixed_5b.out_features, 64, config, rngs=rngs)
    self.Mixed_5d = InceptionA(self.Mixed_5c.out_features, 64, config, rngs=rngs)
    self.Mixed_6a = InceptionB(self.Mixed_5d.out_features, config, rngs=rngs)
    self.Mixed_6b = InceptionC(self.Mixed_6a.out_features, 128, config, rngs=rngs)
    self.Mixed_6c = InceptionC(self.Mixed_6b.out_features, 160, config, rngs=rngs)
    self.Mixed_6d = InceptionC(self.Mixed_6c.out_features, 160, config, rngs=rngs)
    self.Mixed_6e = InceptionC(self.Mixed_6d.out_features, 192, config, rngs=rngs)
    self.Mixed_7a = InceptionD(self.Mixed_6e.out_features, config, rngs=rngs)
    self.Mixed_7b = InceptionE(self.Mixed_7a.out_features, config, rngs=rngs)
    self.Mixed_7c = InceptionE(self.Mixed_7b.out_features, config, pool=config.last_block_pool, rngs=rngs)
    assert self.Mixed_7c.out_features == config.feature_dim
    self.fc = nnx.Linear(config.feature_dim, config.num_classes, rngs=rngs) if config.num_classes else None

  def preprocess(self, images: jax.Array) -> jax.Array:
    """Images (NHWC in [-1, 1]) -> resized to `input_size` (bilinear, no antialias), then as `input_norm` says.

    Resizing is linear, so resizing [-1, 1] images equals the [-1, 1] form of resized [0, 1] images (the original's
    `preprocess_input(255 * resize(x))`).
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"expected NHWC RGB images, got shape {images.shape}")
    s = self.config.input_size
    x = images.astype(jnp.promote_types(images.dtype, jnp.float32))
    if x.shape[1:3] != (s, s):
      x = jax.image.resize(x, (x.shape[0], s, s, 3), method="bilinear", antialias=False)
    if self.config.input_norm == "minus_one_one":
      return x
    x = (x + 1.0) * 0.5
    return (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)

  def forward(self, x: jax.Array) -> dict[str, jax.Array]:
    """The trunk on a normalised NHWC input: {"pool": [B, feature_dim], "logits": [B, num_classes] if fc}."""
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = layers.max_pool(x, 3, 2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = layers.max_pool(x, 3, 2)
    for block in (
      self.Mixed_5b,
      self.Mixed_5c,
      self.Mixed_5d,
      self.Mixed_6a,
      self.Mixed_6b,
      self.Mixed_6c,
      self.Mixed_6d,
      self.Mixed_6e,
      self.Mixed_7a,
      self.Mixed_7b,
      self.Mixed_7c,
    ):
      x = block(x)
    pool = jnp.mean(x, axis=(1, 2))
    out = {"pool": pool}
    if self.fc is not None:
      out["logits"] = self.fc(pool)
    return out

  def __call__(self, images: jax.Array) -> jax.Array:
    """The attribute feature [B, feature_dim] of images (float NHWC in [-1, 1], any size)."""
    return self.forward(self._cast(self.preprocess(images)))["pool"]

  def logits(self, images: jax.Array) -> jax.Array:
    """ImageNet logits of images in [-1, 1] (needs `num_classes > 0`)."""
    if self.fc is None:
      raise ValueError("this InceptionV3 has no classifier (Config.num_classes == 0)")
    return self.forward(self._cast(self.preprocess(images)))["logits"]

  def _cast(self, x: jax.Array) -> jax.Array:
    return x.astype(self.Conv2d_1a_3x3.conv.kernel[...].dtype)


Module = Inception


# --- converters -----------------------------------------------------------------------------------------------------


def rename(module_path: tuple[str, ...]) -> str:
  """Flax module path -> torchvision module name (identical, dot-joined)."""
  return ".".join(module_path)


def rules(config: Config) -> list[keymap.Rule]:
  """One `keymap.Rule` per variable of the network `config` describes, derived from the module (no allocation)."""
  return torch_layout.rules(lambda: Inception(config, rngs=nnx.Rngs(0)), rename)


def expected_state_dict(config: Config) -> dict[str, tuple[int, ...]]:
  """torchvision key -> shape for `config` (no `num_batches_tracked`, no `AuxLogits.*`)."""
  return keymap.expected(rules(config))


def infer_config(state_dict: dict[str, np.ndarray], source: str, input_size: int = 299) -> Config:
  """Width multiplier from the stem's channels (32 at 1.0), classifier size from `fc.weight`."""
  key = "Conv2d_1a_3x3.conv.weight"
  if key not in state_dict:
    raise CheckpointMismatchError(source, missing=[key])
  width_multiplier = float(np.shape(state_dict[key])[0]) / 32.0
  num_classes = int(np.shape(state_dict["fc.weight"])[0]) if "fc.weight" in state_dict else 0
  return Config(width_multiplier=width_multiplier, input_size=input_size, num_classes=num_classes)


_AUX = re.compile(r"^AuxLogits\.")


def convert(path: str | os.PathLike) -> tuple[Config, dict[str, Any]]:
  """Reads torchvision InceptionV3 weights (`.pth`/`.pt`/`.npz`; `AuxLogits.*` dropped) or the original's Keras
  `AttrEncoder*.h5` (`keras_h5_state_dict`), checking every key; the Config records the weights' conventions."""
  path = os.fspath(path)
  if os.path.isfile(path) and keras_h5.is_hdf5(path):
    config = KERAS
    state_dict = keras_h5_state_dict(path, config)
  else:
    state_dict = {k: v for k, v in checkpoint_files.read_state_dict(path).items() if not _AUX.match(k)}
    # torchvision's ImageNet weights were trained on [-1, 1] inputs (`transform_input=True` undoes the mean/std).
    config = dataclasses.replace(infer_config(state_dict, path), input_norm="minus_one_one")
  return config, keymap.apply(state_dict, rules(config), path, ignore=("num_batches_tracked",))


# The original's E_attr: `tf.keras.applications.InceptionV3(include_top=False, pooling="avg")` fed
# `preprocess_input(255 * x)` ([-1, 1]), BatchNorm `scale=False`, `same` average pools that exclude the padding.
KERAS = Config(num_classes=0, input_norm="minus_one_one", bn_scale=False, pool_count_include_pad=False)

# The order of that model's weighted layers in its `save_weights` file (`model.layers`: Keras sorts a functional
# model's layers by graph depth, not by creation): "cN" / "bN" is the Conv2D / BatchNormalization of the N-th
# BasicConv of this module (module order, which is also Keras' creation order). Recorded from the file Keras
# writes; names are not used, since Keras numbers them per process (`conv2d_95` after one other InceptionV3).
_KERAS_ORDER = """
c0 b0 c1 b1 c2 b2 c3 b3 c4 b4 c8 b8 c6 c9 b6 b9 c5 c7 c10 c11 b5 b7 b10 b11 c15 b15 c13 c16 b13 b16 c12 c14 c17 c18
b12 b14 b17 b18 c22 b22 c20 c23 b20 b23 c19 c21 c24 c25 b19 b21 b24 b25 c27 b27 c28 b28 c26 c29 b26 b29 c34 b34 c35
b35 c31 c36 b31 b36 c32 c37 b32 b37 c30 c33 c38 c39 b30 b33 b38 b39 c44 b44 c45 b45 c41 c46 b41 b46 c42 c47 b42 b47
c40 c43 c48 c49 b40 b43 b48 b49 c54 b54 c55 b55 c51 c56 b51 b56 c52 c57 b52 b57 c50 c53 c58 c59 b50 b53 b58 b59 c64
b64 c65 b65 c61 c66 b61 b66 c62 c67 b62 b67 c60 c63 c68 c69 b60 b63 b68 b69 c72 b72 c73 b73 c70 c74 b70 b74 c71 c75
b71 b75 c80 b80 c77 c81 b77 b81 c78 c79 c82 c83 c76 b78 b79 b82 b83 c84 b76 b84 c89 b89 c86 c90 b86 b90 c87 c88 c91
c92 c85 b87 b88 b91 b92 c93 b85 b93
""".split()
_KERAS_LEAVES = {
  "c": (("kernel", "weight"),),
  "b": (("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var")),
}


def basic_conv_names(config: Config) -> list[str]:
  """torchvision names of every BasicConv in module definition order (state trees sort their keys; this does not)."""

  def walk(module: Any, prefix: str) -> list[str]:
    if isinstance(module, BasicConv):
      return [prefix]
    return [
      n
      for name, child in vars(module).items()
      if isinstance(child, nnx.Module)
      for n in walk(child, f"{prefix}.{name}" if prefix else name)
    ]

  # Walked while it is built under `jax.eval_shape` (nothing allocated); `nnx.eval_shape` would return a module
  # rebuilt from its sorted state.
  names: list[str] = []

  def build() -> int:
    names.extend(walk(Inception(config, rngs=nnx.Rngs(0)), ""))
    return 0

  jax.eval_shape(build)
  return names


def keras_h5_state_dict(path: str, config: Config = KERAS) -> dict[str, np.ndarray]:
  """The original's `AttrEncoder*.h5` as a torchvision-named state_dict, mapped by layer order (`_KERAS_ORDER`).

  Raises `CheckpointFormatError` naming the file, layer and weight that do not fit (a truncated file, another
  network's file, a different number of layers, a weight of the wrong kind or shape).
  """
  expected = expected_state_dict(config)
  prefixes = basic_conv_names(config)
  layers_ = keras_h5.read(path)
  if len(layers_) != len(_KERAS_ORDER):
    raise CheckpointFormatError(
      f"{path}: {len(layers_)} layers with weights, but the original's AttrEncoder (Keras InceptionV3 without its "
      f"classifier) has {len(_KERAS_ORDER)} ({len(prefixes)} Conv2D + {len(prefixes)} BatchNormalization): "
      "not an AttrEncoder.h5"
    )
  out: dict[str, np.ndarray] = {}
  for layer, code in zip(layers_, _KERAS_ORDER):
    kind, prefix = code[0], prefixes[int(code[1:])]
    want = _KERAS_LEAVES[kind]
    what = "Conv2D (kernel)" if kind == "c" else "BatchNormalization(scale=False) (beta, moving_mean, moving_variance)"
    if layer.leaves != tuple(k for k, _ in want):
      raise CheckpointFormatError(
        f"{path}: layer {layer.name!r} holds weights {list(layer.leaves)} where the "
        f"AttrEncoder has the {what} of {prefix}"
      )
    for (weight, array), (_, torch_leaf) in zip(layer.weights, want):
      key = f"{prefix}.{'conv' if kind == 'c' else 'bn'}.{torch_leaf}"
      o, i, h, w = expected[key] if kind == "c" else (0, 0, 0, 0)
      keras_shape = (h, w, i, o) if kind == "c" else expected[key]
      if tuple(array.shape) != keras_shape:
        raise CheckpointFormatError(
          f"{path}: layer {layer.name!r}, weight {weight!r} has shape {array.shape}, "
          f"expected {keras_shape} (the AttrEncoder's {prefix})"
        )
      if kind == "c":
        array = np.ascontiguousarray(array.transpose(3, 2, 0, 1))
      out[key] = array
  return out


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert inception_v3 SRC DST`: writes the converted-weights directory."""
  config, params = convert(src)
  converted.write(dst, NETWORK, converted.build(Inception, config, params, os.fspath(src)), src)


_CONVENTIONS = ("input_norm", "bn_scale", "pool_count_include_pad", "last_block_pool")


def conventions(path: str | os.PathLike) -> dict[str, Any]:
  """The input and layer conventions of the weights at `path`, without reading the arrays.

  A network trained from such a start point keeps them, so they are part of its architecture; a converted directory
  records them (directories from before they were recorded held torchvision weights run as "imagenet"), a Keras
  `.h5` has the original's, and any other file is torchvision's. A path not on this machine is assumed to be what
  the converters write for torchvision weights.
  """
  import json  # pylint: disable=import-outside-toplevel

  path = os.fspath(path)
  if converted.is_converted(path):
    recorded = json.loads(open(os.path.join(path, "network.json"), encoding="utf8").read()).get("config", {})
    default = Config()
    return {k: recorded.get(k, getattr(default, k)) for k in _CONVENTIONS}
  source = KERAS if os.path.isfile(path) and keras_h5.is_hdf5(path) else Config(input_norm="minus_one_one")
  return {k: getattr(source, k) for k in _CONVENTIONS}


def init(config: Config, seed: int) -> Inception:
  """A randomly initialised E_attr from an explicit seed."""
  return Inception(config, rngs=nnx.Rngs(seed))


def load(path: str | os.PathLike, input_size: int = 299, num_classes: int | None = None) -> Inception:
  """E_attr with weights from a converted directory or a torchvision `state_dict` file.

  `num_classes=0` drops a checkpoint's ImageNet classifier (E_attr needs only the pooled feature).
  """
  config, params = converted.read(path, NETWORK, Config, convert)
  config = dataclasses.replace(config, input_size=input_size)
  if num_classes == 0 and config.num_classes:
    config = dataclasses.replace(config, num_classes=0)
    params = {k: v for k, v in params.items() if k != "fc"}
  elif num_classes is not None and num_classes != config.num_classes:
    raise ValueError(f"{path} has a {config.num_classes}-class classifier, not {num_classes}")
  return converted.build(Inception, config, params, os.fspath(path))


def to_numpy_state_dict(module: Inception) -> dict[str, np.ndarray]:
  """The torchvision-named state_dict of `module` (what a `.npz` for `convert` holds)."""
  return torch_layout.state_dict_from_params(trees.params_of(module), rename)
