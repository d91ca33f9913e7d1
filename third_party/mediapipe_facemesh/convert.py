"""Converts MediaPipe's face_landmark.tflite (a file, or inside a mediapipe wheel) into the NNX face mesh.

The layer sizes are read from the graph (see `graph.py`), not assumed: the stem, the backbone up to the fork, then
each branch, told apart by its output width (3 x landmarks vs. 1 presence logit). The graph must match the
module's structure exactly, otherwise `GraphError` names the op that does not.
"""

from __future__ import annotations

import os
from typing import Any

from disentangle_jax.third_party.mediapipe_facemesh import graph as graph_lib
from disentangle_jax.third_party.mediapipe_facemesh import model as model_lib
from disentangle_jax.third_party.mediapipe_facemesh import tflite

NETWORK = "mediapipe_facemesh"
WHEEL_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"


def _blocks(walker: graph_lib.Walker, layers: list[Any], what: str) -> model_lib.Blocks:
  for layer in layers:
    if not isinstance(layer, graph_lib.Block) or layer.activation != "prelu":
      raise walker.error(None, f"{what}: expected PReLU BlazeBlocks, found {type(layer).__name__}")
  return tuple((layer.out_channels, layer.stride) for layer in layers)


def _head(walker: graph_lib.Walker, layers: list[Any], name: str) -> tuple[model_lib.HeadConfig, dict[str, Any]]:
  """Splits a branch into blocks / 1x1 PReLU reduction / blocks / output conv, checking each part."""
  convs = [i for i, layer in enumerate(layers) if isinstance(layer, graph_lib.Conv)]
  if len(convs) != 2 or convs[1] != len(layers) - 1:
    raise walker.error(None, f"{name} head: expected blocks, a 1x1 convolution, blocks and an output convolution")
  reduce, out = layers[convs[0]], layers[-1]
  if reduce.kernel.shape[:2] != (1, 1) or reduce.activation != "prelu" or reduce.stride != 1:
    raise walker.error(None, f"{name} head: the reduction is not a 1x1 PReLU convolution")
  if out.activation != "none" or out.padding != "VALID" or out.kernel.shape[0] != out.kernel.shape[1]:
    raise walker.error(None, f"{name} head: the output is not a square VALID convolution without activation")
  blocks, tail = layers[: convs[0]], layers[convs[0] + 1 : -1]
  config = model_lib.HeadConfig(
    _blocks(walker, blocks, name),
    reduce.out_channels,
    _blocks(walker, tail, name),
    out.out_channels,
    out.kernel.shape[0],
    out.stride,
  )
  params = {
    "blocks": {i: b.params() for i, b in enumerate(blocks)},
    "reduce": reduce.params(),
    "tail": {i: b.params() for i, b in enumerate(tail)},
    "out": out.params(),
  }
  return config, params


def from_tflite(model: tflite.Model) -> tuple[model_lib.Config, dict[str, Any]]:
  """(Config, params) of a parsed face_landmark model; params nest like the module's `nnx.Param` state."""
  walker = graph_lib.Walker(model)
  input_size, stem, tensor = walker.stem("prelu")
  backbone, fork = walker.chain(tensor)
  branches = walker.consumers_of(fork, "DEPTHWISE_CONV_2D")
  if len(branches) != 2:
    raise walker.error(None, f"expected the backbone to fork into 2 heads, found {len(branches)}")
  heads = {}
  for first in branches:
    layers, end = walker.chain(fork, first)
    width = model.tensor(end).shape[-1]
    name = "presence" if width == 1 else "landmark"
    if name in heads or end not in model.outputs:
      raise walker.error(first, f"head ending in tensor {model.tensor(end).name!r} is not a distinct graph output")
    heads[name] = _head(walker, layers, name)
  if set(heads) != {"landmark", "presence"} or heads["landmark"][0].out_channels % 3:
    raise walker.error(None, "expected a landmark head (3 values per point) and a presence head (1 value)")
  config = model_lib.Config(
    input_size=input_size,
    stem_channels=stem.out_channels,
    stem_kernel=stem.kernel.shape[0],
    backbone=_blocks(walker, backbone, "backbone"),
    landmark_head=heads["landmark"][0],
    presence_head=heads["presence"][0],
  )
  params = {
    "stem": stem.params(),
    "backbone": {i: b.params() for i, b in enumerate(backbone)},
    "landmark_head": heads["landmark"][1],
    "presence_head": heads["presence"][1],
  }
  return config, params


def convert(path: str | os.PathLike) -> tuple[model_lib.Config, dict[str, Any]]:
  """Reads face_landmark.tflite, or a mediapipe wheel holding it, into (Config, params)."""
  return from_tflite(tflite.load(path, WHEEL_MEMBER))
