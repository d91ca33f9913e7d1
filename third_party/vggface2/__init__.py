"""E_id: the VGGFace2 ResNet-50 identity encoder (frozen), its converters and loaders.

Usage:

    from disentangle_jax.third_party import vggface2
    e_id = vggface2.load("weights/vggface2_resnet50")              # converted dir, .pkl, .pth, .npz, .h5 -> ResNet
    emb = vggface2.embed(e_id, images)                               # float32 NHWC in [-1, 1] -> [B, 2048], unit norm
    out = vggface2.features(e_id, vggface2.caffe_normalize(rgb255))  # {"pool", "logits"?, "proj"?}, 224x224 crop
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import torch_layout
from disentangle_jax.third_party.vggface2.convert import NETWORK
from disentangle_jax.third_party.vggface2.convert import convert
from disentangle_jax.third_party.vggface2.convert import expected_state_dict
from disentangle_jax.third_party.vggface2.convert import rename
from disentangle_jax.third_party.vggface2.model import FULL
from disentangle_jax.third_party.vggface2.model import Config
from disentangle_jax.third_party.vggface2.model import ResNet
from disentangle_jax.third_party.vggface2.preprocess import MEAN_BGR
from disentangle_jax.third_party.vggface2.preprocess import caffe_normalize
from disentangle_jax.third_party.vggface2.preprocess import preprocess

Module = ResNet

__all__ = [
  "Config",
  "FULL",
  "MEAN_BGR",
  "Module",
  "NETWORK",
  "ResNet",
  "caffe_normalize",
  "convert",
  "convert_to",
  "embed",
  "expected_state_dict",
  "features",
  "init",
  "load",
  "preprocess",
  "to_numpy_state_dict",
]


def init(config: Config, seed: int) -> ResNet:
  """A randomly initialised network (He-normal convs, BatchNorm statistics 0/1) from an explicit seed."""
  return ResNet(config, rngs=nnx.Rngs(seed))


def load(path: str | os.PathLike, proj_dim: int = 0, seed: int | None = None, input_size: int = 224) -> ResNet:
  """Loads weights from a converted directory or any file `convert` reads.

  Args:
    path: converted-weights directory, `.pkl`, `.pth`/`.pt`, `.npz`, or the Keras model's `.h5`.
    proj_dim: if > 0 and the weights have no `dim_proj` head, add a randomly initialised one of this size.
    seed: seeds that random head (required with `proj_dim`: random weights never come from a hidden default).
    input_size: network input side (224 for the released weights).
  """
  config, params = converted.read(path, NETWORK, Config, convert)
  config = Config(**{**config.to_dict(), "input_size": input_size})
  if proj_dim and not config.proj_dim:
    if seed is None:
      raise ValueError(f"{path} has no dim_proj head; pass seed= to initialise a random {proj_dim}-d one")
    config = Config(**{**config.to_dict(), "proj_dim": proj_dim})
    params = dict(params, proj=trees.params_of(ResNet(config, rngs=nnx.Rngs(seed)))["proj"])
  return converted.build(ResNet, config, params, os.fspath(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert vggface2 SRC DST`: writes the converted-weights directory."""
  config, params = convert(src)
  converted.write(dst, NETWORK, converted.build(ResNet, config, params, os.fspath(src)), src)


def to_numpy_state_dict(module: ResNet) -> dict[str, np.ndarray]:
  """The upstream-named state_dict of a network (what a `.npz` for `convert` holds)."""
  return torch_layout.state_dict_from_params(trees.params_of(module), rename)


@functools.partial(jax.jit, static_argnames=("head",))
def embed(network: ResNet, images: jax.Array, head: str = "pool") -> jax.Array:
  """`network.embed`, compiled once per head and input shape."""
  return network.embed(images, head=head)


@jax.jit
def features(network: ResNet, x: jax.Array) -> dict[str, jax.Array]:
  """`network.features`, compiled once per input shape."""
  return network.features(x)
