"""The toy world's landmark net: a small CNN trained (by `toy.prepare`) to regress `render.keypoints`.

    from disentangle_jax.toy import landmark_net
    net = landmark_net.load(path)                       # a converted directory `prepare` wrote
    points = landmark_net.landmarks(net, images)        # float32 NHWC in [-1, 1] -> [B, 25, 2] pixel (x, y)
    loss_points = points[:, landmark_net.KEEP_INDICES]  # what the landmark loss compares (the face outline dropped)

Points are in `render.KEYPOINT_NAMES` order and in the input's pixels, in the convention of `render.keypoints`
(pixel (i, j)'s centre is the point (i, j)); differentiable in the images. `config.landmarks.kind = "toy"`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.toy import NotConvertibleError
from disentangle_jax.toy import cnn
from disentangle_jax.toy import render

NETWORK = "toy_landmark_net"
NUM_POINTS = render.NUM_KEYPOINTS
KEEP_INDICES = tuple(i for i in range(NUM_POINTS) if i not in render.JAW_INDICES)

__all__ = ["Config", "KEEP_INDICES", "LandmarkNet", "Module", "NETWORK", "convert", "convert_to", "init", "landmarks"]


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes of the toy landmark net.

  Attributes:
    input_size: side the images are resized to (the toy generator's resolution, so usually no resize).
    widths: channels of the conv stages (each halves the side).
    hidden: width of the dense layer after the convs.
  """

  input_size: int = 32
  widths: tuple[int, ...] = (8, 16, 32)
  hidden: int = 128

  def __post_init__(self):
    cnn.check_sizes("toy landmark_net Config", self.input_size, self.widths, self.hidden)


class LandmarkNet(nnx.Module):
  """images -> the toy renderer's keypoints [B, NUM_POINTS, 2] in the input's pixels."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    self.backbone = cnn.Backbone(config.input_size, config.widths, config.hidden, rngs=rngs)
    # Predicts positions in [-1, 1] image units; zero weights: every point starts at the image centre.
    self.out = nnx.Linear(int(config.hidden), NUM_POINTS * 2, kernel_init=nnx.initializers.zeros, rngs=rngs)

  def landmarks(self, images: jax.Array) -> jax.Array:
    """[B, H, W, 3] in [-1, 1] -> [B, NUM_POINTS, 2] pixel (x, y) of `images` (H = W)."""
    unit = self.out(self.backbone(images)).reshape(images.shape[0], NUM_POINTS, 2)
    side = jnp.asarray([images.shape[2], images.shape[1]], unit.dtype)
    return (unit + 1.0) * (0.5 * side) - 0.5

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.landmarks(images)


Module = LandmarkNet


def init(config: Config, seed: int) -> LandmarkNet:
  """Random weights from an explicit seed (what `toy.prepare` starts training from)."""
  return LandmarkNet(config, rngs=nnx.Rngs(seed))


def convert(src: str | os.PathLike, **_: Any) -> tuple[Config, dict[str, Any]]:
  """There is no upstream checkpoint: only directories written by `toy.prepare` / `convert_to` load."""
  raise NotConvertibleError(
    f"{src}: not a converted toy landmark net directory (no network.json); train one with "
    "`disentangle_jax.toy.prepare.prepare(config, cache_dir)`"
  )


def load(path: str | os.PathLike) -> LandmarkNet:
  """A converted directory (written by `toy.prepare` or `convert_to`)."""
  config, params = converted.read(path, NETWORK, Config, convert)
  return converted.build(LandmarkNet, config, params, os.fspath(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> Config:
  """Copies a converted directory `src` to `dst` (the contract's converter; there is no other format)."""
  network = load(src)
  converted.write(dst, NETWORK, network, src)
  return network.config


landmarks = jax.jit(LandmarkNet.landmarks)
