r"""`disentangle-jax swap`: an identity x attribute grid like the paper's figures.

  disentangle-jax swap --model=runs/smoke --id a.png b.png --attr c.png d.png e.png --out grid.png

Identities run down the left column, attributes across the top row; cell (i, j) has the face of identity i with
the pose, expression and lighting of attribute image j. Real photos: add --align (BlazeFace + face mesh, FFHQ
framing) and --detector=<mediapipe wheel or converted dir>.
"""

from __future__ import annotations

from collections.abc import Sequence

from disentangle_jax.cli import _common
from disentangle_jax.cli import _flags
from disentangle_jax.cli import _paths

FLAGS = _flags.FLAGS


def main(argv: Sequence[str]) -> None:
  _flags.no_positional(_flags.finish(argv))
  _flags.require("model", "id", "attr", "out")
  _paths.check_output_image(FLAGS.out)
  _paths.check_input_files(FLAGS.id + FLAGS.attr)
  _common.check_detector()
  _common.check_model_path()
  from disentangle_jax.apps import images  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import swap  # pylint: disable=import-outside-toplevel

  model = _common.load_model()
  res = model.resolution
  loc = _common.locator() if FLAGS.align else None
  id_images, id_labels = _common.read_or_usage(FLAGS.id, res, loc=loc)
  attr_images, attr_labels = _common.read_or_usage(FLAGS.attr, res, loc=loc)
  outputs = swap.swap_pairs(model, id_images, attr_images, batch_size=FLAGS.batch_size)
  grid = swap.compose_grid(id_images, attr_images, outputs)
  images.write_image(FLAGS.out, grid)
  print(
    f"wrote {FLAGS.out}: {len(id_labels)} identities ({', '.join(id_labels)}) x {len(attr_labels)} attributes "
    f"({', '.join(attr_labels)}) at {res}px"
  )
