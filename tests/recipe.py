"""Rebuilds the golden fixtures' full state_dicts from `tests/testdata/` (see the fixtures' README).

Large weight tensors are generated, not stored: each is a uniform draw from numpy's PCG64 seeded with the pair
(set seed, index of the key in the upstream state_dict order), scaled to the listed standard deviation. The draw is
float64 and is cast to float32 last; both are part of the definition, so the arrays are bit-exact.
"""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np

TESTDATA = pathlib.Path(__file__).parent / "testdata"


def generated_array(seed: int, index: int, shape: list[int], scale: float) -> np.ndarray:
  """The generated tensor at `index` of a set seeded `seed`: uniform, mean 0, standard deviation `scale`."""
  draw = np.random.default_rng([seed, index]).random(tuple(shape))
  return ((draw * 2.0 - 1.0) * (np.sqrt(3.0) * scale)).astype(np.float32)


def generated_image(seed: int, index: int, shape: list[int]) -> np.ndarray:
  """A uint8 batch of uniform noise images: `floor(256 * draw)` of the same seeded PCG64 draw (fixture inputs that
  are regenerated instead of stored)."""
  draw = np.random.default_rng([seed, index]).random(tuple(shape))
  return np.floor(draw * 256.0).astype(np.uint8)


def meta(name: str) -> dict:
  """The `<name>_meta.json` of a fixture set."""
  return json.loads((TESTDATA / f"{name}_meta.json").read_text())


@functools.cache
def state_dict(name: str) -> dict[str, np.ndarray]:
  """The full upstream state_dict of fixture set `name` (e.g. "fan2d_m1"), in upstream key order."""
  info = meta(name)
  stored = dict(np.load(TESTDATA / f"{name}_stored.npz", allow_pickle=False))
  seed = info["recipe"]["seed"]
  entries = {e["key"]: e for e in info["recipe"]["keys"]}
  out = {}
  for key in info["state_dict_keys"]:
    if key in entries:
      e = entries[key]
      out[key] = generated_array(seed, e["index"], e["shape"], e["scale"])
    else:
      out[key] = stored[key]
  return out


def io(name: str) -> dict[str, np.ndarray]:
  """Inputs and golden outputs of fixture set `name`."""
  return dict(np.load(TESTDATA / f"{name}_io.npz", allow_pickle=False))


def manifest(entry: str) -> dict[str, tuple[int, ...]]:
  """Full-size upstream state_dict key -> shape, from the shapes manifest (set F)."""
  info = json.loads((TESTDATA / "shapes_manifest.json").read_text())[entry]
  sd = info["state_dict"]
  if isinstance(sd, dict):
    return {k: tuple(v["shape"]) for k, v in sd.items()}
  return {e["key"]: tuple(e["shape"]) for e in sd}
