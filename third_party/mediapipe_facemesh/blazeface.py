"""BlazeFace short-range (face_detection_short_range.tflite) as a Flax NNX module, its converter and a detector.

The net (Bazarevsky et al. 2019, "BlazeFace: Sub-millisecond Neural Face Detection on Mobile GPUs"): a 5x5
stride-2 stem with ReLU, 16 ReLU BlazeBlocks down to 8x8, and 1x1 heads on the 16x16 map (2 anchors per cell) and
on the 8x8 map (6 anchors per cell) that give, per anchor, a face logit and 16 regressed values (box centre and
size, 6 keypoints) in input pixels relative to the anchor. Input: RGB in [-1, 1], 128x128 letterboxed.

`BlazeFace.raw` reproduces the TFLite outputs (regressors [B, 896, 16], logits [B, 896]); `detection.py` decodes
them. The layer sizes and the taps of the heads are read from the graph by following its data flow.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.mediapipe_facemesh import detection
from disentangle_jax.third_party.mediapipe_facemesh import graph as graph_lib
from disentangle_jax.third_party.mediapipe_facemesh import layers
from disentangle_jax.third_party.mediapipe_facemesh import tflite
from disentangle_jax.third_party.mediapipe_facemesh import xla_options

NETWORK = "blazeface"
WHEEL_MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
STRIDES = (8, 16, 16, 16)  # SsdAnchorsCalculator strides of face_detection_short_range.pbtxt


@dataclasses.dataclass(frozen=True)
class BlazeFaceConfig(config_lib.ConfigBase):
  """Sizes of BlazeFace; the defaults are those of mediapipe 0.10.21's face_detection_short_range.tflite."""

  input_size: int = 128
  stem_channels: int = 24
  stem_kernel: int = 5
  blocks: tuple[tuple[int, int], ...] = (
    (24, 1),
    (28, 1),
    (32, 2),
    (36, 1),
    (42, 1),
    (48, 2),
    (56, 1),
    (64, 1),
    (72, 1),
    (80, 1),
    (88, 1),
    (96, 2),
    (96, 1),
    (96, 1),
    (96, 1),
    (96, 1),
  )
  taps: tuple[int, ...] = (10, 15)  # blocks whose outputs feed the heads, in the outputs' anchor order
  anchors_per_cell: tuple[int, ...] = (2, 6)
  num_coords: int = 16

  @property
  def num_anchors(self) -> int:
    cells = [self.input_size // int(np.prod([s for _, s in self.blocks[: t + 1]])) // 2 for t in self.taps]
    return sum(c * c * a for c, a in zip(cells, self.anchors_per_cell))


class BlazeFace(nnx.Module):
  """The detector net; `raw` takes [B, S, S, 3] in [-1, 1] and returns the TFLite model's two outputs."""

  def __init__(self, config: BlazeFaceConfig, *, rngs: nnx.Rngs):
    if len(config.taps) != len(config.anchors_per_cell):
      raise ValueError(f"taps {config.taps} and anchors_per_cell {config.anchors_per_cell} differ in length")
    self.config = config
    self.stem = layers.ConvAct(3, config.stem_channels, config.stem_kernel, 2, "SAME", "relu", rngs=rngs)
    blocks, channels, widths = [], config.stem_channels, []
    for out, stride in config.blocks:
      blocks.append(layers.BlazeBlock(channels, out, stride, "relu", rngs=rngs))
      channels = out
      widths.append(out)
    self.blocks = nnx.List(blocks)
    self.classificators = nnx.List(
      [nnx.Conv(widths[t], a, (1, 1), rngs=rngs) for t, a in zip(config.taps, config.anchors_per_cell)]
    )
    self.regressors = nnx.List(
      [
        nnx.Conv(widths[t], a * config.num_coords, (1, 1), rngs=rngs)
        for t, a in zip(config.taps, config.anchors_per_cell)
      ]
    )

  def raw(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x [B, S, S, 3] in [-1, 1] -> (regressors [B, N, num_coords], logits [B, N])."""
    x = self.stem(jnp.asarray(x, jnp.float32))
    taps = {}
    for i, block in enumerate(self.blocks):
      x = block(x)
      taps[i] = x
    batch = x.shape[0]
    regs, logits = [], []
    for tap, cls, reg in zip(self.config.taps, self.classificators, self.regressors):
      logits.append(cls(taps[tap]).reshape(batch, -1))
      regs.append(reg(taps[tap]).reshape(batch, -1, self.config.num_coords))
    return jnp.concatenate(regs, axis=1), jnp.concatenate(logits, axis=1)

  def decode(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """x as in `raw` -> (boxes [B, N, 4], keypoints [B, N, 6, 2], scores [B, N]) normalised to the input square."""
    regressors, logits = self.raw(x)
    anchors = detection.ssd_anchors(self.config.input_size, STRIDES)
    return detection.decode(regressors, logits, anchors, float(self.config.input_size))


class Detector:
  """BlazeFace (`net`, the NNX module) with jitted `raw` / `decode` and `detect(image)`, MediaPipe's post-processing."""

  def __init__(self, net: BlazeFace):
    self.net = net
    self.config = net.config

  def raw(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`BlazeFace.raw`, jitted."""
    return _raw(self.net, x)

  def decode(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`BlazeFace.decode`, jitted."""
    return _decode(self.net, x)

  def detect(self, image: np.ndarray, min_score: float = 0.5, iou_threshold: float = 0.3) -> list[detection.Detection]:
    """Faces in one uint8 [0, 255] or float [-1, 1] RGB image [H, W, 3], best first, in its pixel coordinates."""
    config = self.config
    anchors = detection.ssd_anchors(config.input_size, STRIDES)
    if anchors.shape[0] != config.num_anchors:
      raise ValueError(f"the short-range anchors ({anchors.shape[0]}) do not fit this net ({config.num_anchors})")
    return detection.detect(self.raw, image, anchors, config.input_size, min_score, iou_threshold)


_raw = xla_options.jit(BlazeFace.raw)
_decode = xla_options.jit(BlazeFace.decode)


def _head(walker: graph_lib.Walker, conv_op: tflite.Operator) -> tuple[str, int, graph_lib.Conv]:
  """A head conv followed to its graph output: ('scores' | 'regressors', position in the concatenation, layer)."""
  layer, out = walker.conv(conv_op)
  if layer.kernel.shape[:2] != (1, 1) or layer.activation != "none":
    raise walker.error(conv_op, "a detection head must be a 1x1 convolution without activation")
  reshape = walker.consumers_of(out, "RESHAPE")
  if len(reshape) != 1:
    raise walker.error(conv_op, "a detection head's output must be reshaped to [1, anchors, values]")
  concat = walker.consumers_of(reshape[0].outputs[0], "CONCATENATION")
  if len(concat) != 1 or concat[0].outputs[0] not in walker.model.outputs:
    raise walker.error(reshape[0], "a detection head must be concatenated into a graph output")
  width = walker.model.tensor(concat[0].outputs[0]).shape[-1]
  return ("scores" if width == 1 else "regressors"), concat[0].inputs.index(reshape[0].outputs[0]), layer


def from_tflite(model: tflite.Model) -> tuple[BlazeFaceConfig, dict[str, Any]]:
  """(BlazeFaceConfig, params) of a parsed face_detection_short_range model."""
  walker = graph_lib.Walker(model)
  input_size, stem, tensor = walker.stem("relu")
  blocks: list[graph_lib.Block] = []
  heads: dict[tuple[str, int], tuple[int, graph_lib.Conv]] = {}
  first = None
  while True:
    layers_, tensor = walker.chain(tensor, first)
    for layer in layers_:
      if not isinstance(layer, graph_lib.Block) or layer.activation != "relu":
        raise walker.error(None, "expected ReLU BlazeBlocks between the stem and the heads")
    blocks.extend(layers_)
    for op in walker.consumers_of(tensor, "CONV_2D"):
      kind, position, layer = _head(walker, op)
      heads[(kind, position)] = (len(blocks) - 1, layer)
    nxt = walker.consumers_of(tensor, "DEPTHWISE_CONV_2D")
    if not nxt:
      break
    if len(nxt) != 1:
      raise walker.error(nxt[1], "expected one backbone path")
    first = nxt[0]
  positions = sorted({p for _, p in heads})
  if not positions or any(("scores", p) not in heads or ("regressors", p) not in heads for p in positions):
    raise walker.error(None, f"every tap needs a score and a regressor head, found {sorted(heads)}")
  taps, anchors, classificators, regressors = [], [], {}, {}
  num_coords = None
  for i, p in enumerate(positions):
    tap, cls = heads[("scores", p)]
    tap_r, reg = heads[("regressors", p)]
    coords = reg.out_channels // cls.out_channels
    if tap != tap_r or reg.out_channels % cls.out_channels or num_coords not in (None, coords):
      raise walker.error(None, f"score and regressor heads at position {p} do not match")
    num_coords = coords
    taps.append(tap)
    anchors.append(cls.out_channels)
    classificators[i] = cls.params()["conv"]
    regressors[i] = reg.params()["conv"]
  config = BlazeFaceConfig(
    input_size=input_size,
    stem_channels=stem.out_channels,
    stem_kernel=stem.kernel.shape[0],
    blocks=tuple((b.out_channels, b.stride) for b in blocks),
    taps=tuple(taps),
    anchors_per_cell=tuple(anchors),
    num_coords=int(num_coords),
  )
  params = {
    "stem": stem.params(),
    "blocks": {i: b.params() for i, b in enumerate(blocks)},
    "classificators": classificators,
    "regressors": regressors,
  }
  return config, params


def convert_blazeface(path: str | os.PathLike) -> tuple[BlazeFaceConfig, dict[str, Any]]:
  """Reads face_detection_short_range.tflite, or a mediapipe wheel holding it, into (BlazeFaceConfig, params)."""
  return from_tflite(tflite.load(path, WHEEL_MEMBER))


def init_blazeface(config: BlazeFaceConfig, seed: int) -> Detector:
  """Randomly initialised BlazeFace (for tests and shapes), weights drawn from `seed`."""
  return Detector(BlazeFace(config, rngs=nnx.Rngs(seed)))


def load_blazeface(path: str | os.PathLike) -> Detector:
  """BlazeFace from a mediapipe wheel, a face_detection_short_range.tflite or a converted directory."""
  config, params = converted.read(path, NETWORK, BlazeFaceConfig, convert_blazeface)
  return Detector(converted.build(BlazeFace, config, params, str(path)))


def convert_to_blazeface(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert blazeface SRC DST`: writes the converted-weights layout."""
  config, params = convert_blazeface(src)
  converted.write(dst, NETWORK, converted.build(BlazeFace, config, params, str(src)), src)
