"""Seeded weights for the official-code fixtures, drawn with numpy alone from a recorded file layout.

`tests/make_official_fixtures.py` sets these arrays into the authors' Keras models before running them, and
`tests/test_official.py` draws the same arrays again to rebuild the files, so the weights themselves (tens of MB for
InceptionV3) never enter the repository: only each file's layout (layer names, weight names, shapes) and the
models' inputs and outputs do.

Scales keep a random 94-layer network's activations O(1): He-normal kernels (fan-in from all but the last axis),
small biases / BatchNorm offsets and means, BatchNorm scales and variances in [0.5, 1.5].

`summarize` is the compact record of a training step's parameter update that the training-step fixture stores and
`tests/test_official_step.py` recomputes from our own update (the official InceptionV3 and M are tens of MB each).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

DIR = pathlib.Path(__file__).parent / "testdata" / "official"
SEEDS = {
  "AttrEncoder": 2101,
  "LatentMappingNetwork": 2102,
  "W_D": 2103,
  "stylegan_G_8x8_synthesis": 2104,
  # The training-step fixture's frozen networks (see `tests/make_official_fixtures.py`).
  "VGGFace2_small": 2105,
  "landmarks_standin": 2106,
  "stylegan_G_256x256_synthesis_small": 2107,
}
SUMMARY_SEED = 2300  # projections and sampled entries of `summarize`
FULL_UP_TO = 512  # tensors up to this size are recorded entry by entry
SAMPLES = 64  # entries recorded of a larger tensor
STEP_SEED = 2400  # the training-step fixture's batches (`step_batch`)
STEP_BATCH = 2


def draw(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
  """One array for the variable `name` (its short name decides the distribution)."""
  leaf = name.split("/")[-1].split(":")[0]
  shape = tuple(int(s) for s in shape)
  if leaf in ("kernel", "weight") and len(shape) >= 2:
    fan_in = int(np.prod(shape[:-1]))
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
  if leaf in ("moving_variance", "gamma"):
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)
  if leaf in ("bias", "beta", "moving_mean", "weight"):
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


def sample_indices(size: int, index: int) -> np.ndarray:
  """The flat entries `summarize` records of the `index`-th tensor: all of a small one, else SAMPLES of them."""
  if size <= FULL_UP_TO:
    return np.arange(size)
  return np.sort(np.random.default_rng([SUMMARY_SEED, index, 0]).choice(size, SAMPLES, replace=False))


def projection(size: int, index: int) -> np.ndarray:
  """A fixed standard-normal direction for the `index`-th tensor (float64)."""
  return np.random.default_rng([SUMMARY_SEED, index, 1]).standard_normal(size)


def summarize(delta: np.ndarray, index: int) -> dict[str, np.ndarray]:
  """A step's update of one tensor (flat, in the Keras layout): L2 norm, sum, projection on a fixed random
  direction (each sensitive to every entry) and the entries at `sample_indices` (exact values)."""
  flat = np.asarray(delta, np.float64).ravel()
  return {
    "norm": np.float64(np.linalg.norm(flat)),
    "sum": np.float64(flat.sum()),
    "proj": np.float64(flat @ projection(flat.size, index)),
    "values": flat[sample_indices(flat.size, index)].astype(np.float32),
  }


def _upsample(size: int, coarse: int) -> np.ndarray:
  """[size, coarse] linear interpolation weights (half-pixel centres, edges clamped)."""
  x = np.clip((np.arange(size) + 0.5) * coarse / size - 0.5, 0, coarse - 1)
  lo = np.floor(x).astype(int)
  hi = np.minimum(lo + 1, coarse - 1)
  m = np.zeros((size, coarse))
  m[np.arange(size), lo] += 1 - (x - lo)
  m[np.arange(size), hi] += x - lo
  return m


def step_images(small: np.ndarray, size: int = 256) -> np.ndarray:
  """uint8 [N, size, size, 3] from the fixture's stored uint8 thumbnails [N, s, s, 3] (G's renders, 4x4-averaged):
  linear upsampling in float64, rounded. numpy alone, so the same bytes anywhere."""
  up = _upsample(size, small.shape[1])
  # Weights are multiples of 1/8, so every sum is exact in float64 whatever the order of the two products.
  smooth = np.einsum("xj,byjc->byxc", up, np.einsum("yi,bijc->byjc", up, small.astype(np.float64)))
  return np.clip(np.round(smooth), 0, 255).astype(np.uint8)


def step_batch(step: int, same: bool, small: np.ndarray) -> dict[str, np.ndarray]:
  """The training-step fixture's batch of `step` (0, 1, 2): images from the thumbnails (rows 2 step .. of
  `small`, attr = id on same-image steps, else rows 6, 7) and the real w for D_W [STEP_BATCH, 512] float32.

  The images are G's own renders (as the training set is), so that the reconstruction's MS-SSIM terms are positive
  at every scale: a random image against G's output can give a negative one, whose power's gradient is NaN in
  TensorFlow's `ssim_multiscale`.
  """
  images = step_images(small)
  ids = images[STEP_BATCH * step : STEP_BATCH * (step + 1)]
  attr = ids if same else images[-STEP_BATCH:]
  w_real = 0.7 * np.random.default_rng([STEP_SEED, step]).standard_normal((STEP_BATCH, 512))
  return {"id": ids, "attr": attr, "w_real": w_real.astype(np.float32)}
