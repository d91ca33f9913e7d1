"""FAN-2D (1adrianb/face-alignment 1.5.0) landmark network: frozen NNX port, converters, differentiable decoding.

Usage:

    from disentangle_jax.third_party import fan
    net = fan.load("weights/fan_2d")              # or a 2DFAN4-*.pth.tar, or fan.init(fan.FAN4, seed=0) -> FAN
    heatmaps = fan.heatmaps(net, images)          # float32 [B, H, W, 3] in [-1, 1] -> [B, 64, 64, 68], jitted
    points = fan.landmarks(net, images)           # [B, 68, 2] (x, y) in the 256x256 input frame, differentiable
    loss_points = points[:, fan.KEEP_INDICES]     # what the landmark loss compares (the jaw contour dropped)
"""

from __future__ import annotations

import os

import jax
from flax import nnx

from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError
from disentangle_jax.third_party.fan.convert import NETWORK
from disentangle_jax.third_party.fan.convert import convert
from disentangle_jax.third_party.fan.convert import to_state_dict
from disentangle_jax.third_party.fan.decode import hard_argmax
from disentangle_jax.third_party.fan.decode import soft_argmax
from disentangle_jax.third_party.fan.model import FAN
from disentangle_jax.third_party.fan.model import FAN4
from disentangle_jax.third_party.fan.model import Config

Module = FAN

# The 68-point (iBUG 300-W) layout: 0-16 jaw contour, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth.
JAW_INDICES = tuple(range(17))
KEEP_INDICES = tuple(range(17, 68))

__all__ = [
  "CheckpointFormatError",
  "CheckpointMismatchError",
  "Config",
  "FAN",
  "FAN4",
  "JAW_INDICES",
  "KEEP_INDICES",
  "Module",
  "NETWORK",
  "all_heatmaps",
  "convert",
  "convert_to",
  "hard_argmax",
  "heatmaps",
  "init",
  "landmarks",
  "landmarks_hard",
  "load",
  "preprocess",
  "soft_argmax",
  "to_state_dict",
]


def init(config: Config, seed: int) -> FAN:
  """A randomly initialised FAN (PyTorch's default conv init, identity BatchNorm) drawn from `seed`."""
  return FAN(config, rngs=nnx.Rngs(seed))


def load(path: str | os.PathLike, input_size: int | None = None) -> FAN:
  """A FAN from a converted directory or any checkpoint `convert` reads.

  `input_size` overrides the network input side (the weights do not fix it; upstream uses 256).
  """
  config, params = converted.read(path, NETWORK, Config, convert)
  if input_size is not None:
    config = Config(**{**config.to_dict(), "input_size": input_size})
  return converted.build(FAN, config, params, str(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert fan SRC DST`: writes the converted-weights layout of `third_party/common/converted`."""
  config, params = convert(src)
  converted.write(dst, NETWORK, converted.build(FAN, config, params, str(src)), src)


# `FAN`'s public methods, jitted for eager callers (one compilation per input shape); none has static arguments.
preprocess = jax.jit(FAN.preprocess)
all_heatmaps = jax.jit(FAN.all_heatmaps)
heatmaps = jax.jit(FAN.heatmaps)
landmarks = jax.jit(FAN.landmarks)
landmarks_hard = jax.jit(FAN.landmarks_hard)
