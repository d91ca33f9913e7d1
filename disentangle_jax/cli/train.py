"""`disentangle-jax train --config=configs/X.py[:presets] --workdir=DIR`: train E_attr, M and D_W.

The work is in `disentangle_jax.train.train_and_evaluate`; this module only parses flags and checks the config
(`config_check.validate`) before anything loads. The config is locked, so a mistyped override
(`--config.optim.lrr=1e-4`) fails at start-up instead of being ignored. `--config.num_steps=0` is refused unless
`--allow_empty` is given. Rerunning the same command resumes from the newest checkpoint in the workdir. On several
hosts, start it on every host; set `--coordinator_address` (with `--num_processes` and `--process_id`) where the
cluster does not provide them.

Exit status: 0 when the run reached num_steps; 75 (EXIT_PREEMPTED, EX_TEMPFAIL of sysexits.h: "temporary failure,
retry") when SIGTERM stopped it after saving a checkpoint, so a scheduler requeues the job and the rerun resumes;
1 or 2 for an error reported in one line on stderr (2: a bad flag, config key or value).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import app
from absl import flags
from absl import logging

from disentangle_jax import config_check
from disentangle_jax import errors
from disentangle_jax.cli import _config
from disentangle_jax.cli import _paths

EXIT_PREEMPTED = errors.EXIT_PREEMPTED  # 75, sysexits.h EX_TEMPFAIL: requeue; the rerun resumes

CONFIG = _config.CONFIG  # main.run checks its --config.<key> overrides before parsing
_WORKDIR = flags.DEFINE_string(
  "workdir", "runs/toy", "directory for checkpoints, metrics, data and the toy world's prepared networks"
)
_ALLOW_EMPTY = flags.DEFINE_bool(
  "allow_empty",
  False,
  "accept --config.num_steps=0 (a run without training steps); "
  "without it a zero step count is refused as a likely mistake",
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for multi-host training")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "number of processes (multi-host)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (multi-host)")
_CACHE = flags.DEFINE_string(
  "compilation_cache",
  os.path.join("~", ".cache", "disentangle_jax", "xla"),
  "persistent XLA compilation cache ('' to disable): a rerun or a resumed run skips most compilation, including "
  "the many small programs that initialise random networks",
)


def main(argv: Sequence[str]) -> int:
  """Trains; returns the exit status (0, or EXIT_PREEMPTED when SIGTERM stopped the run after a checkpoint)."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = CONFIG.value
  config_check.validate(config, allow_empty=_ALLOW_EMPTY.value)
  _paths.check_output_dir(_WORKDIR.value, empty=False)
  import jax  # pylint: disable=import-outside-toplevel

  if _CACHE.value:
    jax.config.update("jax_compilation_cache_dir", os.path.expanduser(_CACHE.value))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  if _COORDINATOR.value:
    jax.distributed.initialize(
      coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value
    )
  from disentangle_jax import train  # pylint: disable=import-outside-toplevel

  logging.set_verbosity(max(logging.get_verbosity(), logging.INFO))  # at least INFO; --verbosity=1 more
  result = train.train_and_evaluate(config, _WORKDIR.value)
  if result.preempted:
    logging.warning(
      "train: preempted at step %d in %s; exiting with status %d (rerun the same command to resume)",
      result.step,
      _WORKDIR.value,
      EXIT_PREEMPTED,
    )
    return EXIT_PREEMPTED
  score = (
    ""
    if result.score is None
    else "; score "  # the headline figures; score.json also holds each factor's R^2
    + ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.score.items()) if k.count("/") < 2)
  )
  logging.info("train: finished at step %d in %s%s", result.step, _WORKDIR.value, score)
  return 0
