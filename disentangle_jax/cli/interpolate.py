r"""`disentangle-jax interpolate`: hold one factor, morph the other, in W and/or in the concatenated code.

  # identity from a.png to b.png, with the attributes of c.png:
  disentangle-jax interpolate --model=runs/toy --id a.png b.png --attr c.png --out=strip.png --animation=morph.gif
  # attributes from c.png to d.png, with the identity of a.png, in both spaces (two rows):
  disentangle-jax interpolate --model=runs/toy --id a.png --attr c.png d.png --space=both --out=strip.png

Two images on one side and one on the other say which factor moves. The strip PNG shows the frames in a row (one
row per space); the animation (.gif or .mp4) plays them, the spaces side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from absl import app
from absl import flags

from disentangle_jax.cli import _common
from disentangle_jax.cli import _flags
from disentangle_jax.cli import _paths

FLAGS = _flags.FLAGS
flags.DEFINE_enum("space", "both", ["w", "code", "both"], "interpolate in W, in the concatenated code, or both")
flags.DEFINE_integer("steps", 8, "frames, both ends included", lower_bound=2)
flags.DEFINE_string("animation", None, "also write the frames as an animated .gif or .mp4")
flags.DEFINE_bool("loop_back", True, "the animation plays forth and back")


def main(argv: Sequence[str]) -> None:
  _flags.no_positional(_flags.finish(argv))
  _flags.require("model", "id", "attr", "out")
  n_id, n_attr = len(FLAGS.id), len(FLAGS.attr)
  if (n_id, n_attr) == (2, 1):
    factor = "identity"
  elif (n_id, n_attr) == (1, 2):
    factor = "attributes"
  else:
    raise app.UsageError(
      f"give two images for the factor that moves and one for the held one (--id a b --attr c "
      f"or --id a --attr c d); got {n_id} identity and {n_attr} attribute images"
    )
  _paths.check_output_image(FLAGS.out)
  if FLAGS.animation:  # checked with --out: the strip is written first, and should not be written in vain
    _paths.check_output_path(FLAGS.animation, "--animation", suffixes=(".gif", ".mp4"))
  _paths.check_input_files(FLAGS.id + FLAGS.attr)
  _common.check_detector()
  _common.check_model_path()
  from disentangle_jax.apps import images  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import interpolate  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import media  # pylint: disable=import-outside-toplevel

  model = _common.load_model()
  res = model.resolution
  loc = _common.locator() if FLAGS.align else None
  ids, _ = _common.read_or_usage(FLAGS.id, res, loc=loc, all_faces=False)
  attrs, _ = _common.read_or_usage(FLAGS.attr, res, loc=loc, all_faces=False)
  a, b, fixed = (ids[0], ids[1], attrs[0]) if factor == "identity" else (attrs[0], attrs[1], ids[0])
  spaces = ("w", "code") if FLAGS.space == "both" else (FLAGS.space,)
  rows = [interpolate.interpolate(model, a, b, fixed, factor=factor, space=s, steps=FLAGS.steps) for s in spaces]
  rows_u8 = [images.to_uint8(r) for r in rows]
  strip = media.tile([f for r in rows_u8 for f in r], columns=FLAGS.steps)
  images.write_image(FLAGS.out, strip)
  print(f"wrote {FLAGS.out}: {factor} interpolated in {' and '.join(spaces)}, {FLAGS.steps} frames")
  if FLAGS.animation:
    frames = [np.concatenate([r[i] for r in rows_u8], axis=1) for i in range(FLAGS.steps)]
    media.write_animation(FLAGS.animation, frames, fps=FLAGS.fps, loop_back=FLAGS.loop_back)
    print(f"wrote {FLAGS.animation}")
