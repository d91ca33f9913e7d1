"""E_id: the VGGFace2 ResNet-50 identity encoder (frozen), its converters and loaders.

    from disentangle_jax.third_party import vggface2
    e_id = vggface2.load("weights/vggface2_resnet50")     # converted dir, resnet50_ft_weight.pkl, .pth, .npz, .h5
    emb = e_id.embed(images)                                # images: float32 NHWC in [-1, 1] -> [B, 2048], unit norm
    out = e_id.features(vggface2.caffe_normalize(rgb255))   # {"pool", "logits"?, "proj"?} on a 224x224 crop
"""

from __future__ import annotations

import os

import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import nnx_params
from disentangle_jax.third_party.common.bundle import Bundle
from disentangle_jax.third_party.vggface2.convert import NETWORK, convert, convert_to, expected_state_dict
from disentangle_jax.third_party.vggface2.model import FULL, Config, ResNet
from disentangle_jax.third_party.vggface2.preprocess import MEAN_BGR, caffe_normalize, preprocess

Module = ResNet
METHODS = {"embed": ("head",), "features": ()}

__all__ = ["Bundle", "Config", "FULL", "MEAN_BGR", "Module", "ResNet", "caffe_normalize", "convert", "convert_to",
           "expected_state_dict", "init", "load", "preprocess"]


def init(config: Config, seed: int) -> Bundle:
  """A randomly initialised network (He-normal convs, BatchNorm statistics 0/1) from an explicit seed."""
  return Bundle(ResNet(config, rngs=nnx.Rngs(seed)), config, METHODS)


def load(path: str | os.PathLike, proj_dim: int = 0, seed: int | None = None, input_size: int = 224) -> Bundle:
  """Loads weights from a converted directory or any file `convert` reads.

  Args:
    path: converted-weights directory, `.pkl`, `.pth`/`.pt`, `.npz`, or the Keras model's `.h5`.
    proj_dim: if > 0 and the weights have no `dim_proj` head, add a randomly initialised one of this size.
    seed: seeds that random head (required with `proj_dim`: random weights never come from a hidden default).
    input_size: network input side (224 for the released weights).
  """
  if converted.is_converted(path):
    config_dict, params = converted.load(path, NETWORK)
    config = Config.from_dict(config_dict)
  else:
    config, params = convert(path)
  config = Config(**{**config.to_dict(), "input_size": input_size})
  if proj_dim and not config.proj_dim:
    if seed is None:
      raise ValueError(f"{path} has no dim_proj head; pass seed= to initialise a random {proj_dim}-d one")
    config = Config(**{**config.to_dict(), "proj_dim": proj_dim})
    fresh = ResNet(config, rngs=nnx.Rngs(seed))
    params = dict(params, proj=nnx_params.params_of(fresh)["proj"])
  # Every variable is overwritten below (assign checks the trees match exactly), so this seed has no effect.
  module = ResNet(config, rngs=nnx.Rngs(0))
  nnx_params.assign(module, params, os.fspath(path))
  return Bundle(module, config, METHODS)


def to_numpy_state_dict(bundle: Bundle) -> dict[str, np.ndarray]:
  """The upstream-named state_dict of a loaded network (what a `.npz` for `convert` holds)."""
  from disentangle_jax.third_party.common import torch_layout  # pylint: disable=import-outside-toplevel
  from disentangle_jax.third_party.vggface2.convert import rename  # pylint: disable=import-outside-toplevel
  return torch_layout.state_dict_from_params(nnx_params.params_of(bundle.module), rename)
