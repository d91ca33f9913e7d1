r"""Wall time of the README's main job (`configs/toy.py`, prepare included) from empty caches, by phase.

The main job aims at 5 minutes on a 2-core CPU. This runs it as `disentangle-jax train` does, in a fresh temporary
workdir and without a persistent compilation cache (nothing from an earlier run is reused), and reports the
seconds of `prepare` (the toy world's E_id, landmark net and E_attr's start), of the rest of the run (model,
dataset, compilation, the training steps, evaluation, score, checkpoint), their sum, and the score.

  python -m benchmarks.main_job
  python -m benchmarks.main_job --steps=100 --json=/tmp/main_job.json   # a shorter run (its score is not the target)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from benchmarks import common
from disentangle_jax import train
from disentangle_jax.configs import toy
from disentangle_jax.toy import prepare


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=0, help="training steps (0: the config's)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", default="", help="also write the result here")
  args = parser.parse_args()

  config = toy.get_config()
  config.seed = args.seed
  if args.steps:
    config.num_steps = config.eval_every = config.checkpoint_every = args.steps
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    config = prepare.prepare(config, f"{workdir}/{train.PREPARED_DIR}")
    prepared = time.perf_counter()
    result = train.train_and_evaluate(config, workdir)
    done = time.perf_counter()
  row = {
    "device": common.device_summary(),
    "steps": int(config.num_steps),
    "prepare_s": round(prepared - start, 1),
    "train_s": round(done - prepared, 1),
    "total_s": round(done - start, 1),
    **{f"score/{k}": round(v, 3) for k, v in (result.score or {}).items() if "/r2/" not in k},
  }
  common.print_table([row])
  if args.json:
    with open(args.json, "w") as f:
      json.dump(row, f, indent=2)


if __name__ == "__main__":
  main()
