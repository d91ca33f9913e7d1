"""`disentangle-jax generate-data --config=configs/smoke.py --out=DIR`: render the (w, image) dataset with G.

Resumable: rerun the same command after an interruption and only the missing shards are rendered. On a pod, run it
on every host: each process renders its own shards on its local devices.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from disentangle_jax.configs import smoke

_CONFIG = config_flags.DEFINE_config_file("config", smoke.__file__, "experiment config file", lock_config=True)
_OUT = flags.DEFINE_string("out", None, "output dataset folder (default: the config's data.dir)")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from disentangle_jax.data import generate  # pylint: disable=import-outside-toplevel
  config = _CONFIG.value
  out = _OUT.value or config.data.dir
  if not out:
    raise app.UsageError("no output folder: pass --out=DIR (the config's data.dir is empty)")
  logging.set_verbosity(max(logging.get_verbosity(), logging.INFO))  # at least INFO; --verbosity=1 more
  generate.generate(config, out)
  logging.info("generate-data: dataset complete in %s", out)
