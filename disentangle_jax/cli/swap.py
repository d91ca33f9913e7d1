r"""`disentangle-jax swap`: an identity x attribute grid like the paper's figures, or the original's test modes.

  disentangle-jax swap --model=runs/toy --id a.png b.png --attr c.png d.png e.png --out grid.png
  disentangle-jax swap --model=runs/toy --id a.png b.png --attr c.png d.png --out grid.png --cells=cells/
  disentangle-jax swap --model=runs/toy --pairs --id ids/ --attr attrs/ --out swapped/

Grid: identities run down the left column, attributes across the top row; cell (i, j) has the face of identity i
with the pose, expression and lighting of attribute image j. --cells=DIR also writes every cell as a file
(DIR/attr_<j>/prediction_<i>.png, with attr_image.png and id_<i>.png beside them, the original's layout).
--pairs: identity and attribute files (or one folder of each) are matched by file name without suffix, and each
pair's swap is written to --out (a folder) as <name>.png; a name without its partner is an error.
Real photos: add --align (BlazeFace + face mesh, FFHQ framing) and --detector=<mediapipe wheel or converted dir>.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

from absl import app
from absl import flags

from disentangle_jax.cli import _common
from disentangle_jax.cli import _flags
from disentangle_jax.cli import _paths

FLAGS = _flags.FLAGS
flags.DEFINE_bool("pairs", False, "match --id and --attr files by name; write one swap per pair into the --out folder")
flags.DEFINE_string("cells", None, "also write every grid cell as its own file into this folder")


def _expand(paths: list[str], what: str) -> list[str]:
  """A single folder becomes its images; files stay as given."""
  if len(paths) == 1 and pathlib.Path(paths[0]).is_dir():
    from disentangle_jax.data import folder  # pylint: disable=import-outside-toplevel

    try:
      return folder.list_images(paths[0])
    except FileNotFoundError as e:
      raise app.UsageError(f"{what}: {e}") from e
  _paths.check_input_files(paths)
  return paths


def _pairs(model) -> None:
  from disentangle_jax.apps import images  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import swap  # pylint: disable=import-outside-toplevel

  try:
    matched = swap.pair_by_name(_expand(FLAGS.id, "--id"), _expand(FLAGS.attr, "--attr"))
  except swap.PairingError as e:
    raise app.UsageError(str(e)) from e
  loc = _common.locator() if FLAGS.align else None
  res = model.resolution
  id_images, _ = _common.read_or_usage([m[1] for m in matched], res, loc=loc, all_faces=False)
  attr_images, _ = _common.read_or_usage([m[2] for m in matched], res, loc=loc, all_faces=False)
  outputs = swap.swap_matched(model, id_images, attr_images, batch_size=FLAGS.batch_size)
  out = pathlib.Path(FLAGS.out)
  for (name, _, _), image in zip(matched, outputs):
    images.write_image(out / f"{name}.png", image)
  print(f"wrote {len(matched)} swaps ({', '.join(m[0] for m in matched)}) into {out} at {res}px")


def main(argv: Sequence[str]) -> None:
  _flags.no_positional(_flags.finish(argv))
  _flags.require("model", "id", "attr", "out")
  if FLAGS.pairs:
    if FLAGS.cells:
      raise app.UsageError("--cells writes the cells of a grid; --pairs writes one file per pair already")
    _paths.check_output_dir(FLAGS.out, empty=False)
  else:
    _paths.check_output_image(FLAGS.out)
    _paths.check_input_files(FLAGS.id + FLAGS.attr)
    if FLAGS.cells:
      _paths.check_output_dir(FLAGS.cells, empty=False)
  _common.check_detector()
  _common.check_model_path()
  model = _common.load_model()
  if FLAGS.pairs:
    _pairs(model)
    return
  from disentangle_jax.apps import images  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import swap  # pylint: disable=import-outside-toplevel

  res = model.resolution
  loc = _common.locator() if FLAGS.align else None
  id_images, id_labels = _common.read_or_usage(FLAGS.id, res, loc=loc)
  attr_images, attr_labels = _common.read_or_usage(FLAGS.attr, res, loc=loc)
  outputs = swap.swap_pairs(model, id_images, attr_images, batch_size=FLAGS.batch_size)
  grid = swap.compose_grid(id_images, attr_images, outputs)
  images.write_image(FLAGS.out, grid)
  if FLAGS.cells:
    cells = swap.write_cells(FLAGS.cells, id_images, attr_images, outputs)
    print(f"wrote {len(cells)} cells into {FLAGS.cells}")
  print(
    f"wrote {FLAGS.out}: {len(id_labels)} identities ({', '.join(id_labels)}) x {len(attr_labels)} attributes "
    f"({', '.join(attr_labels)}) at {res}px"
  )
