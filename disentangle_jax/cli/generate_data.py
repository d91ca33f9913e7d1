"""`disentangle-jax generate-data --config=configs/smoke.py --out=DIR`: render the (w, image) dataset with G.

Resumable: rerun the same command after an interruption and only the missing or damaged shards are rendered
(every existing shard is checked against the record count and checksum written beside it). On a pod, run it
on every host: each process renders its own shards on its local devices. The config is checked
(`config_check.validate`) and the output folder too before G loads.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app
from absl import flags
from absl import logging

from disentangle_jax import config_check
from disentangle_jax.cli import _config
from disentangle_jax.cli import _paths

CONFIG = _config.CONFIG  # main.run checks its --config.<key> overrides before parsing
FLAGS = flags.FLAGS
if "out" not in FLAGS:  # the application commands define --out too (an output file); tests import both
  flags.DEFINE_string("out", None, "output dataset folder (default: the config's data.dir)")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = CONFIG.value
  config_check.validate(config, allow_empty=True)  # num_steps does not matter here
  out = FLAGS.out or config.data.dir
  if not out:
    raise app.UsageError("no output folder: pass --out=DIR (the config's data.dir is empty)")
  _paths.check_output_dir(out, empty=False)  # a partial dataset is resumed
  from disentangle_jax.data import generate  # pylint: disable=import-outside-toplevel

  logging.set_verbosity(max(logging.get_verbosity(), logging.INFO))  # at least INFO; --verbosity=1 more
  generate.generate(config, out)
  logging.info("generate-data: dataset complete in %s", out)
