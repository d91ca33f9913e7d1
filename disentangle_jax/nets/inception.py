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
from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import checkpoint_files
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import layers
from disentangle_jax.third_party.common import torch_layout
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError

NETWORK = "inception_v3"
BN_EPS = 1e-3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_INPUT_SIZE = 75  # the smallest input whose feature maps survive every valid-padded stride-2 layer


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes of InceptionV3.

  Attributes:
    width_multiplier: scales every convolution's channel count (1.0 = torchvision's network).
    input_size: side the images are resized to (299 native; at least 75).
    num_classes: size of the `fc` classifier on the pooled feature (1000 for ImageNet weights), 0 for none.
  """
  width_multiplier: float = 1.0
  input_size: int = 299
  num_classes: int = 0

  def __post_init__(self):
    if not self.width_multiplier > 0:
      raise ValueError(f"width_multiplier must be > 0, got {self.width_multiplier}")
    if self.input_size < MIN_INPUT_SIZE:
      raise ValueError(f"input_size {self.input_size} is below InceptionV3's minimum of {MIN_INPUT_SIZE}")
    if self.num_classes < 0:
      raise ValueError(f"num_classes must be >= 0, got {self.num_classes}")

  def channels(self, c: int) -> int:
    return max(1, int(round(c * self.width_multiplier)))

  @property
  def feature_dim(self) -> int:
    ch = self.channels
    return ch(320) + 2 * ch(384) + 2 * ch(384) + ch(192)




FULL = Config()


class BasicConv(nnx.Module):
  """torchvision's `BasicConv2d`: bias-free conv, BatchNorm (eps 1e-3), ReLU."""

  def __init__(self, cin: int, cout: int, kernel, *, stride: int = 1, padding=0, rngs: nnx.Rngs):
    self.conv = layers.conv(cin, cout, kernel, stride=stride, padding=padding, rngs=rngs)
    self.bn = layers.BatchNorm(cout, BN_EPS)

  def __call__(self, x: jax.Array) -> jax.Array:
    return jax.nn.relu(self.bn(self.conv(x)))


class InceptionA(nnx.Module):
  """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1."""

  def __init__(self, cin: int, pool_features: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    self.branch1x1 = BasicConv(cin, ch(64), 1, rngs=rngs)
    self.branch5x5_1 = BasicConv(cin, ch(48), 1, rngs=rngs)
    self.branch5x5_2 = BasicConv(ch(48), ch(64), 5, padding=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(cin, ch(64), 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(ch(64), ch(96), 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv(ch(96), ch(96), 3, padding=1, rngs=rngs)
    self.branch_pool = BasicConv(cin, ch(pool_features), 1, rngs=rngs)
    self.out_features = ch(64) + ch(64) + ch(96) + ch(pool_features)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b5 = self.branch5x5_2(self.branch5x5_1(x))
    b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    bp = self.branch_pool(layers.avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nnx.Module):
  """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2."""

  def __init__(self, cin: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    self.branch3x3 = BasicConv(cin, ch(384), 3, stride=2, rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(cin, ch(64), 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(ch(64), ch(96), 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3 = BasicConv(ch(96), ch(96), 3, stride=2, rngs=rngs)
    self.out_features = ch(384) + ch(96) + cin

  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = self.branch3x3(x)
    bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
    return jnp.concatenate([b3, bd, layers.max_pool(x, 3, 2)], axis=-1)


class InceptionC(nnx.Module):
  """17x17 block with factorised 7x7 convolutions (1x7 and 7x1)."""

  def __init__(self, cin: int, channels_7x7: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    c7 = ch(channels_7x7)
    self.branch1x1 = BasicConv(cin, ch(192), 1, rngs=rngs)
    self.branch7x7_1 = BasicConv(cin, c7, 1, rngs=rngs)
    self.branch7x7_2 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7_3 = BasicConv(c7, ch(192), (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_1 = BasicConv(cin, c7, 1, rngs=rngs)
    self.branch7x7dbl_2 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_3 = BasicConv(c7, c7, (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7dbl_4 = BasicConv(c7, c7, (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7dbl_5 = BasicConv(c7, ch(192), (1, 7), padding=(0, 3), rngs=rngs)
    self.branch_pool = BasicConv(cin, ch(192), 1, rngs=rngs)
    self.out_features = 4 * ch(192)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
      bd = layer(bd)
    bp = self.branch_pool(layers.avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nnx.Module):
  """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2."""

  def __init__(self, cin: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    self.branch3x3_1 = BasicConv(cin, ch(192), 1, rngs=rngs)
    self.branch3x3_2 = BasicConv(ch(192), ch(320), 3, stride=2, rngs=rngs)
    self.branch7x7x3_1 = BasicConv(cin, ch(192), 1, rngs=rngs)
    self.branch7x7x3_2 = BasicConv(ch(192), ch(192), (1, 7), padding=(0, 3), rngs=rngs)
    self.branch7x7x3_3 = BasicConv(ch(192), ch(192), (7, 1), padding=(3, 0), rngs=rngs)
    self.branch7x7x3_4 = BasicConv(ch(192), ch(192), 3, stride=2, rngs=rngs)
    self.out_features = ch(320) + ch(192) + cin

  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = self.branch3x3_2(self.branch3x3_1(x))
    b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
    return jnp.concatenate([b3, b7, layers.max_pool(x, 3, 2)], axis=-1)


class InceptionE(nnx.Module):
  """8x8 block with expanded 1x3 / 3x1 branches."""

  def __init__(self, cin: int, c: Config, *, rngs: nnx.Rngs):
    ch = c.channels
    self.branch1x1 = BasicConv(cin, ch(320), 1, rngs=rngs)
    self.branch3x3_1 = BasicConv(cin, ch(384), 1, rngs=rngs)
    self.branch3x3_2a = BasicConv(ch(384), ch(384), (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3_2b = BasicConv(ch(384), ch(384), (3, 1), padding=(1, 0), rngs=rngs)
    self.branch3x3dbl_1 = BasicConv(cin, ch(448), 1, rngs=rngs)
    self.branch3x3dbl_2 = BasicConv(ch(448), ch(384), 3, padding=1, rngs=rngs)
    self.branch3x3dbl_3a = BasicConv(ch(384), ch(384), (1, 3), padding=(0, 1), rngs=rngs)
    self.branch3x3dbl_3b = BasicConv(ch(384), ch(384), (3, 1), padding=(1, 0), rngs=rngs)
    self.branch_pool = BasicConv(cin, ch(192), 1, rngs=rngs)
    self.out_features = ch(320) + 4 * ch(384) + ch(192)

  def __call__(self, x: jax.Array) -> jax.Array:
    b1 = self.branch1x1(x)
    b3 = self.branch3x3_1(x)
    b3 = jnp.concatenate([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], axis=-1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = jnp.concatenate([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], axis=-1)
    bp = self.branch_pool(layers.avg_pool_3x3_same(x))
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class Inception(nnx.Module):
  """InceptionV3 trunk (+ optional `fc`). `__call__` maps images in [-1, 1] to the pooled attribute feature."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    ch = config.channels
    self.Conv2d_1a_3x3 = BasicConv(3, ch(32), 3, stride=2, rngs=rngs)
    self.Conv2d_2a_3x3 = BasicConv(ch(32), ch(32), 3, rngs=rngs)
    self.Conv2d_2b_3x3 = BasicConv(ch(32), ch(64), 3, padding=1, rngs=rngs)
    self.Conv2d_3b_1x1 = BasicConv(ch(64), ch(80), 1, rngs=rngs)
    self.Conv2d_4a_3x3 = BasicConv(ch(80), ch(192), 3, rngs=rngs)
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
    self.Mixed_7c = InceptionE(self.Mixed_7b.out_features, config, rngs=rngs)
    assert self.Mixed_7c.out_features == config.feature_dim
    self.fc = nnx.Linear(config.feature_dim, config.num_classes, rngs=rngs) if config.num_classes else None

  def preprocess(self, images: jax.Array) -> jax.Array:
    """Images (NHWC in [-1, 1]) -> resized to `input_size` (bilinear, no antialias) and ImageNet-normalised."""
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"expected NHWC RGB images, got shape {images.shape}")
    s = self.config.input_size
    x = images.astype(jnp.promote_types(images.dtype, jnp.float32))
    if x.shape[1:3] != (s, s):
      x = jax.image.resize(x, (x.shape[0], s, s, 3), method="bilinear", antialias=False)
    x = (x + 1.0) * 0.5
    return (x - jnp.asarray(IMAGENET_MEAN, x.dtype)) / jnp.asarray(IMAGENET_STD, x.dtype)

  def forward(self, x: jax.Array) -> dict[str, jax.Array]:
    """The trunk on a normalised NHWC input: {"pool": [B, feature_dim], "logits": [B, num_classes] if fc}."""
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = layers.max_pool(x, 3, 2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = layers.max_pool(x, 3, 2)
    for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                  self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
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
  """Reads a torchvision InceptionV3 `state_dict` (`.pth`/`.pt`/`.npz`); drops `AuxLogits.*`; checks every key."""
  path = os.fspath(path)
  state_dict = {k: v for k, v in checkpoint_files.read_state_dict(path).items() if not _AUX.match(k)}
  config = infer_config(state_dict, path)
  return config, keymap.apply(state_dict, rules(config), path, ignore=("num_batches_tracked",))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert inception_v3 SRC DST`: writes the converted-weights directory."""
  config, params = convert(src)
  converted.write(dst, NETWORK, converted.build(Inception, config, params, os.fspath(src)), src)


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
