"""Seeded weights for the official-code fixtures, drawn with numpy alone from a recorded file layout.

`tests/make_official_fixtures.py` sets these arrays into the authors' Keras models before running them, and
`tests/test_official.py` draws the same arrays again to rebuild the files, so the weights themselves (tens of MB for
InceptionV3) never enter the repository: only each file's layout (layer names, weight names, shapes) and the
models' inputs and outputs do.

Scales keep a random 94-layer network's activations O(1): He-normal kernels (fan-in from all but the last axis),
small biases / BatchNorm offsets and means, variances in [0.5, 1.5].
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

DIR = pathlib.Path(__file__).parent / "testdata" / "official"
SEEDS = {"AttrEncoder": 2101, "LatentMappingNetwork": 2102, "W_D": 2103, "stylegan_G_8x8_synthesis": 2104}


def draw(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
  """One array for the variable `name` (its short name decides the distribution)."""
  leaf = name.split("/")[-1].split(":")[0]
  shape = tuple(int(s) for s in shape)
  if leaf in ("kernel", "weight") and len(shape) >= 2:
    fan_in = int(np.prod(shape[:-1]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  if leaf == "moving_variance":
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if leaf in ("bias", "beta", "moving_mean", "gamma", "weight"):
    return (0.1 * rng.standard_normal(shape)).astype(np.float32)
  return rng.standard_normal(shape).astype(np.float32)  # StyleGAN's const and noise maps


def layout(network: str) -> dict[str, Any]:
  """The recorded layout of a network's file: {"attrs": {...}, "layers": [[layer, [[weight, shape], ...]], ...]}."""
  return json.loads((DIR / f"{network}_layout.json").read_text())


def arrays(lay: dict[str, Any], seed: int) -> list[tuple[str, list[tuple[str, np.ndarray]]]]:
  """Every weight of `lay` drawn in file order from one generator seeded with `seed`."""
  rng = np.random.default_rng(seed)
  return [(layer, [(w, draw(w, tuple(shape), rng)) for w, shape in weights]) for layer, weights in lay["layers"]]


def write_h5(network: str, path: pathlib.Path) -> pathlib.Path:
  """Rebuilds the Keras `save_weights` file of `network` (layout recorded, weights drawn from its seed)."""
  from disentangle_jax.third_party.common import keras_h5  # pylint: disable=import-outside-toplevel

  lay = layout(network)
  keras_h5.write(path, arrays(lay, SEEDS[network]), lay["attrs"])
  return path


def write_tf_checkpoint(network: str, prefix: pathlib.Path) -> pathlib.Path:
  """Rebuilds a TF-format `save_weights` checkpoint: the recorded object graph, the seeded variables at its keys."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  lay = layout(network)
  rng = np.random.default_rng(SEEDS[network])
  values = {name: draw(name, tuple(shape), rng) for name, shape in lay["variables"]}
  names, tensors = ["_CHECKPOINTABLE_OBJECT_GRAPH"], [tf.constant((DIR / f"{network}_graph.pb").read_bytes())]
  for full_name, key in lay["keys"].items():
    names.append(key)
    tensors.append(tf.constant(values[full_name if full_name in values else full_name + ":0"]))
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names), tensors=tensors)
  return prefix
