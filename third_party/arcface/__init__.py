"""ArcFace IR-SE50 (TreB1eN/InsightFace_Pytorch): the identity metric, and an optional E_id. Frozen port.

Usage:

    from disentangle_jax.third_party import arcface
    net = arcface.load("weights/arcface_ir_se50")   # or model_ir_se50.pth / .npz; arcface.init(config, seed)
    emb = net.embed(images)                         # float32 NHWC in [-1, 1] -> [B, 512], unit norm (eager)
    emb = arcface.embed(net, images)                # the same, jitted (one compilation per input shape)
    sim = jnp.sum(arcface.embed(net, a) * arcface.embed(net, b), axis=-1)  # identity cosine similarity

112x112 images are used as they are; larger ones (our 256 px FFHQ framing) get pSp's identity-loss crop first.
"""

from __future__ import annotations

import functools
import os

import jax
import numpy as np
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.third_party.arcface.convert import NETWORK
from disentangle_jax.third_party.arcface.convert import convert
from disentangle_jax.third_party.arcface.convert import expected_state_dict
from disentangle_jax.third_party.arcface.convert import rename
from disentangle_jax.third_party.arcface.model import CROP_256
from disentangle_jax.third_party.arcface.model import IR_SE50
from disentangle_jax.third_party.arcface.model import UNITS_BY_DEPTH
from disentangle_jax.third_party.arcface.model import ArcFace
from disentangle_jax.third_party.arcface.model import Config
from disentangle_jax.third_party.arcface.model import crop_box
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import torch_layout

Module = ArcFace

__all__ = [
  "CROP_256",
  "IR_SE50",
  "UNITS_BY_DEPTH",
  "ArcFace",
  "Config",
  "Module",
  "NETWORK",
  "convert",
  "convert_to",
  "crop_box",
  "embed",
  "expected_state_dict",
  "features",
  "init",
  "load",
  "preprocess",
  "to_numpy_state_dict",
]


def init(config: Config, seed: int) -> ArcFace:
  """A randomly initialised network (He-normal convs, PReLU slopes 0.25, BatchNorm statistics 0/1) from `seed`."""
  return ArcFace(config, rngs=nnx.Rngs(seed))


def load(path: str | os.PathLike) -> ArcFace:
  """An ArcFace from a converted directory or any checkpoint file `convert` reads (`model_ir_se50.pth`)."""
  config, params = converted.read(path, NETWORK, Config, convert)
  return converted.build(ArcFace, config, params, os.fspath(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert arcface SRC DST`: writes the converted-weights directory."""
  config, params = convert(src)
  converted.write(dst, NETWORK, converted.build(ArcFace, config, params, os.fspath(src)), src)


def to_numpy_state_dict(module: ArcFace) -> dict[str, np.ndarray]:
  """The upstream-named state_dict of a network (what a `.npz` for `convert` holds)."""
  return torch_layout.state_dict_from_params(trees.params_of(module), rename)


@functools.partial(jax.jit, static_argnames=("head",))
def embed(network: ArcFace, images: jax.Array, head: str = "pool") -> jax.Array:
  """`network.embed`, compiled once per input shape."""
  return network.embed(images, head=head)


@jax.jit
def features(network: ArcFace, x: jax.Array) -> jax.Array:
  """`network.features` (the embedding before normalisation), compiled once per input shape."""
  return network.features(x)


@jax.jit
def preprocess(network: ArcFace, images: jax.Array) -> jax.Array:
  """`network.preprocess` (the identity crop and area pooling to the input size), compiled once per input shape."""
  return network.preprocess(images)
