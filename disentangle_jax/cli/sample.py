r"""`disentangle-jax sample`: renders a grid of generator images, to look at a (converted) generator quickly.

  disentangle-jax sample --generator=weights/stylegan2-ffhq256 --out=grid.png --num=16 --seed=0 --psi=0.7
  disentangle-jax sample --out=grid.png              # no --generator: a random-init tiny StyleGAN2 (not faces)

`--generator` is anything the generator package's `load` accepts (an upstream checkpoint or a converted
directory); z is drawn from `--seed`, truncated towards the generator's mean w by `--psi`, and rendered with the
layers' constant noise. The grid is written as a PNG (images mapped from [-1, 1] to [0, 255]).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import app
from absl import flags

from disentangle_jax.cli import _flags
from disentangle_jax.cli import _paths

FLAGS = _flags.FLAGS
# Random-init sizes when no --generator is given (the smoke config's generators).
TINY = {
  "stylegan2": dict(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32),
  "stylegan1": dict(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_max=32),
}


def _define(kind: str, name: str, default, help_text: str, **kwargs) -> None:
  if name not in FLAGS:  # other commands may define the same flag in the same process (tests)
    getattr(flags, f"DEFINE_{kind}")(name, default, help_text, **kwargs)


_define("string", "generator", "", "generator weights (checkpoint or converted dir); empty: random-init tiny G")
if "generator_kind" not in FLAGS:
  flags.DEFINE_enum("generator_kind", "stylegan2", list(TINY), "generator package")
_define("integer", "num", 16, "number of images", lower_bound=1)
_define("integer", "seed", 0, "seed of the z draw (and of the random init without --generator)")
_define("float", "psi", 0.7, "truncation psi (1: none)")


def grid(images: np.ndarray, columns: int | None = None) -> np.ndarray:
  """[N, H, W, 3] float images in [-1, 1] -> one uint8 [rows * H, columns * W, 3] image, row-major."""
  n, h, w, c = images.shape
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  u8 = np.clip(np.rint((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)
  out = np.zeros((rows * h, columns * w, c), np.uint8)
  for i, img in enumerate(u8):
    r, col = divmod(i, columns)
    out[r * h : (r + 1) * h, col * w : (col + 1) * w] = img
  return out


def render(package: Any, generator: Any, num: int, seed: int, psi: float, batch_size: int = 16) -> np.ndarray:
  """`num` images [num, H, W, 3] of `generator` (a module of the generator `package`), through the package's jitted
  `mapping` / `synthesis`, from z drawn with numpy's PCG64 seeded `seed`."""
  z = np.random.default_rng(seed).standard_normal((num, generator.config.z_dim)).astype(np.float32)
  out = []
  for i in range(0, num, batch_size):
    ws = package.mapping(generator, z[i : i + batch_size], truncation_psi=float(psi))
    out.append(np.asarray(package.synthesis(generator, ws, noise_mode="const")))
  return np.concatenate(out)


def main(argv: Sequence[str]) -> None:
  _flags.no_positional(_flags.finish(argv))
  _flags.require("out")
  _paths.check_output_image(FLAGS.out)
  if FLAGS.generator:
    _paths.check_input_path(FLAGS.generator, "generator checkpoint or converted directory")
  package = importlib.import_module(f"disentangle_jax.third_party.{FLAGS.generator_kind}")
  if FLAGS.generator:
    try:
      generator = package.load(FLAGS.generator)
    except (FileNotFoundError, ValueError) as e:
      raise app.UsageError(f"--generator={FLAGS.generator}: {e}") from e
  else:
    generator = package.init(package.Config(**TINY[FLAGS.generator_kind]), seed=FLAGS.seed)
  from PIL import Image  # pylint: disable=import-outside-toplevel

  image = grid(render(package, generator, FLAGS.num, FLAGS.seed, FLAGS.psi, FLAGS.batch_size))
  Image.fromarray(image).save(FLAGS.out)
  source = FLAGS.generator or "random-init tiny generator"
  print(f"wrote {FLAGS.out}: {FLAGS.num} images of {source}, seed {FLAGS.seed}, psi {FLAGS.psi}")
