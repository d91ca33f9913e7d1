r"""`disentangle-jax export`: a training workdir's latest checkpoint -> a small inference export.

  disentangle-jax export --model=runs/toy --out=exports/toy

The export holds E_attr and M (no D_W, no optimiser state) and the config referencing the frozen networks'
weights; `disentangle_jax.load("exports/toy")` and every command's --model read it.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app

from disentangle_jax.cli import _common
from disentangle_jax.cli import _flags
from disentangle_jax.cli import _paths

FLAGS = _flags.FLAGS


def main(argv: Sequence[str]) -> None:
  _flags.no_positional(_flags.finish(argv))
  _flags.require("model", "out")
  _paths.check_output_dir(FLAGS.out)
  _common.check_model_path()
  from disentangle_jax import export  # pylint: disable=import-outside-toplevel
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  try:
    dst = export.export(FLAGS.model, FLAGS.out)
  except (FileNotFoundError, FileExistsError, inference.ModelLoadError) as e:
    raise app.UsageError(str(e)) from e
  print(f"exported {FLAGS.model} into {dst}")
