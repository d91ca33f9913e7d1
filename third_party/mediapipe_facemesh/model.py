"""MediaPipe's face mesh (face_landmark.tflite, 468 points) as a Flax NNX module.

The net (Kartynnik et al. 2019, "Real-time Facial Surface Geometry from Monocular Video on Mobile GPUs"): a 3x3
stride-2 stem with PReLU, a BlazeBlock backbone down to 6x6, then two heads that share it: one regresses 468 x
(x, y, z) from a 3x3 map by a 3x3 VALID convolution, the other a face-presence logit. x and y are in pixels of the
192x192 input; z is relative depth on about the same scale. MediaPipe feeds RGB scaled to [0, 1]
(`ImageToTensorCalculator` with `output_tensor_float_range {min: 0 max: 1}` in face_landmark_cpu.pbtxt) and turns
the logit into a score by a sigmoid.

The module is written out (stem, backbone, two heads) rather than interpreted from the graph; `convert.py` reads
the layer sizes and weights from the `.tflite` and checks the graph has exactly this structure.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.mediapipe_facemesh import layers

Blocks = tuple[tuple[int, int], ...]  # (out_channels, stride) per BlazeBlock


@dataclasses.dataclass(frozen=True)
class HeadConfig:
  """A head: BlazeBlocks, a 1x1 PReLU reduction, more BlazeBlocks, then a VALID output convolution."""

  blocks: Blocks
  reduce_channels: int
  tail_blocks: Blocks
  out_channels: int
  out_kernel: int
  out_stride: int = 1


def _blocks(value: Any) -> Blocks:
  return tuple((int(c), int(s)) for c, s in value)


def _head_from_dict(d: dict[str, Any]) -> HeadConfig:
  return HeadConfig(
    _blocks(d["blocks"]),
    int(d["reduce_channels"]),
    _blocks(d["tail_blocks"]),
    int(d["out_channels"]),
    int(d["out_kernel"]),
    int(d.get("out_stride", 1)),
  )


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes of the face mesh; the defaults are those of mediapipe 0.10.21's face_landmark.tflite."""

  input_size: int = 192
  stem_channels: int = 16
  stem_kernel: int = 3
  backbone: Blocks = (
    (16, 1),
    (16, 1),
    (32, 2),
    (32, 1),
    (32, 1),
    (64, 2),
    (64, 1),
    (64, 1),
    (128, 2),
    (128, 1),
    (128, 1),
    (128, 2),
    (128, 1),
    (128, 1),
  )
  landmark_head: HeadConfig = HeadConfig(((128, 2), (128, 1), (128, 1)), 32, ((32, 1),), 1404, 3, 3)
  presence_head: HeadConfig = HeadConfig(((128, 2),), 32, ((32, 1),), 1, 3, 3)

  @property
  def num_landmarks(self) -> int:
    return self.landmark_head.out_channels // 3

  @classmethod
  def from_dict(cls, d: dict[str, Any]) -> Config:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
      raise ValueError(f"unknown face mesh config keys: {sorted(unknown)}")
    return cls(
      input_size=int(d["input_size"]),
      stem_channels=int(d["stem_channels"]),
      stem_kernel=int(d["stem_kernel"]),
      backbone=_blocks(d["backbone"]),
      landmark_head=_head_from_dict(d["landmark_head"]),
      presence_head=_head_from_dict(d["presence_head"]),
    )


def _block_list(in_channels: int, blocks: Blocks, rngs: nnx.Rngs) -> tuple[nnx.List, int]:
  out = []
  for channels, stride in blocks:
    out.append(layers.BlazeBlock(in_channels, channels, stride, "prelu", rngs=rngs))
    in_channels = channels
  return nnx.List(out), in_channels


class Head(nnx.Module):
  """One output branch of the mesh (landmarks or face presence)."""

  def __init__(self, in_channels: int, config: HeadConfig, *, rngs: nnx.Rngs):
    self.blocks, channels = _block_list(in_channels, config.blocks, rngs)
    self.reduce = layers.ConvAct(channels, config.reduce_channels, 1, 1, "VALID", "prelu", rngs=rngs)
    self.tail, channels = _block_list(config.reduce_channels, config.tail_blocks, rngs)
    self.out = layers.ConvAct(
      channels, config.out_channels, config.out_kernel, config.out_stride, "VALID", "none", rngs=rngs
    )

  def __call__(self, x: jax.Array) -> jax.Array:
    for block in self.blocks:
      x = block(x)
    x = self.reduce(x)
    for block in self.tail:
      x = block(x)
    x = self.out(x)
    return x.reshape(x.shape[0], -1)


class FaceMesh(nnx.Module):
  """The face-landmark net. `raw` is the TFLite graph; `landmarks` / `score` take the project's [-1, 1] images."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    self.stem = layers.ConvAct(3, config.stem_channels, config.stem_kernel, 2, "SAME", "prelu", rngs=rngs)
    self.backbone, channels = _block_list(config.stem_channels, config.backbone, rngs)
    self.landmark_head = Head(channels, config.landmark_head, rngs=rngs)
    self.presence_head = Head(channels, config.presence_head, rngs=rngs)

  def raw(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The TFLite model's computation: x [B, S, S, 3] RGB in [0, 1] -> (landmarks [B, 3 * N], logit [B])."""
    x = self.stem(x)
    for block in self.backbone:
      x = block(x)
    return self.landmark_head(x), self.presence_head(x)[:, 0]

  def preprocess(self, images: jax.Array) -> jax.Array:
    """[-1, 1] NHWC images -> the net's input: [0, 1], resized (bilinear, antialiased) to the input size."""
    images = jnp.asarray(images, jnp.float32)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"face mesh expects float images [B, H, W, 3], got shape {images.shape}")
    x = (images + 1.0) * 0.5
    size = self.config.input_size
    if x.shape[1:3] != (size, size):
      x = jax.image.resize(x, (x.shape[0], size, size, 3), method="linear", antialias=True)
    return x

  def landmarks_and_score(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Both outputs from one pass: ([B, N, 3] in input-size pixels, face-presence probability [B])."""
    coords, logit = self.raw(self.preprocess(images))
    return coords.reshape(coords.shape[0], -1, 3), jax.nn.sigmoid(logit)

  def landmarks(self, images: jax.Array) -> jax.Array:
    """[B, H, W, 3] in [-1, 1] -> [B, 468, 3]: x, y in pixels of the 192x192 net input, z relative depth."""
    return self.landmarks_and_score(images)[0]

  def score(self, images: jax.Array) -> jax.Array:
    """[B, H, W, 3] in [-1, 1] -> [B] probability that a face fills the crop (MediaPipe keeps > 0.5)."""
    return self.landmarks_and_score(images)[1]
