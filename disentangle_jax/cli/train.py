"""`disentangle-jax train --config=configs/X.py[:presets] --workdir=DIR`: train E_attr, M and D_W.

The work is in `disentangle_jax.train.train_and_evaluate`; this module only parses flags. The config is locked, so
a mistyped override (`--config.optim.lrr=1e-4`) fails at start-up instead of being ignored. Rerunning the same
command resumes from the newest checkpoint in the workdir. On several hosts, start it on every host; set
`--coordinator_address` (with `--num_processes` and `--process_id`) where the cluster does not provide them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from disentangle_jax.configs import smoke

_CONFIG = config_flags.DEFINE_config_file("config", smoke.__file__, "experiment config file", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/smoke", "directory for checkpoints, metrics and (smoke) data")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-host training")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (multi-host)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (multi-host)")
_CACHE = flags.DEFINE_string(
    "compilation_cache", os.path.join("~", ".cache", "disentangle_jax", "xla"),
    "persistent XLA compilation cache ('' to disable): a rerun or a resumed run skips most compilation, including "
    "the many small programs that initialise random networks")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  import jax  # pylint: disable=import-outside-toplevel
  if _CACHE.value:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE.value))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  if _COORDINATOR.value:
    jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  from disentangle_jax import train  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(max(logging.get_verbosity(), logging.INFO))  # at least INFO; --verbosity=1 more
  result = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  logging.info("train: %s at step %d in %s", "preempted" if result.preempted else "finished", result.step,
               _WORKDIR.value)
