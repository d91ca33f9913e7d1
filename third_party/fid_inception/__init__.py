"""The FID InceptionV3 (pytorch-fid's `pt_inception-2015-12-05` weights), frozen, for Frechet Inception Distance.

Usage:

    from disentangle_jax.third_party import fid_inception
    net = fid_inception.load("weights/pt_inception-2015-12-05-6726825d.pth")   # or a converted directory
    pool3 = net.features(images)   # float32 NHWC in [-1, 1], any size -> [B, 2048], as pytorch-fid's pool3

The network is the project's InceptionV3 (`disentangle_jax.nets.inception`) with the FID conventions as Config
fields (`model.FID`); `disentangle_jax.fid` turns its features into statistics and distances.
"""

from __future__ import annotations

import os

import numpy as np
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.nets import inception
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import torch_layout
from disentangle_jax.third_party.fid_inception.convert import NETWORK
from disentangle_jax.third_party.fid_inception.convert import NUM_CLASSES
from disentangle_jax.third_party.fid_inception.convert import convert
from disentangle_jax.third_party.fid_inception.convert import expected_state_dict
from disentangle_jax.third_party.fid_inception.model import FID
from disentangle_jax.third_party.fid_inception.model import Config
from disentangle_jax.third_party.fid_inception.model import FIDInception
from disentangle_jax.third_party.fid_inception.model import features

Module = FIDInception

__all__ = [
  "Config",
  "FID",
  "FIDInception",
  "Module",
  "NETWORK",
  "NUM_CLASSES",
  "convert",
  "convert_to",
  "expected_state_dict",
  "features",
  "init",
  "load",
  "to_numpy_state_dict",
]


def init(config: Config, seed: int) -> FIDInception:
  """A randomly initialised network (tests, benchmarks) from an explicit seed."""
  return FIDInception(config, rngs=nnx.Rngs(seed))


def load(path: str | os.PathLike) -> FIDInception:
  """The FID Inception from a converted directory or pytorch-fid's `.pth` (or a `.npz` of its keys)."""
  config, params = converted.read(path, NETWORK, Config, convert)
  return converted.build(FIDInception, config, params, os.fspath(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert fid_inception SRC DST`: writes the converted-weights directory."""
  config, params = convert(src)
  converted.write(dst, NETWORK, converted.build(FIDInception, config, params, os.fspath(src)), src)


def to_numpy_state_dict(module: FIDInception) -> dict[str, np.ndarray]:
  """The pytorch-fid-named state_dict of `module` (what a `.npz` for `convert` holds)."""
  return torch_layout.state_dict_from_params(trees.params_of(module), inception.rename)
