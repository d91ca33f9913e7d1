"""Runs `train_and_evaluate` on the stand-in networks in a subprocess (SIGTERM and multi-process tests).

    python tests/train_runner.py WORKDIR '{"num_steps": 4}' [--devices=8] [--process_id=I --num_processes=N --port=P]

Prints `STEP <n>` after every train step and, at the end, `RESULT <json>` with the run's step, preemption flag and
logged metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("overrides", nargs="?", default="{}")
  parser.add_argument("--devices", type=int, default=8)
  parser.add_argument("--process_id", type=int, default=None)
  parser.add_argument("--num_processes", type=int, default=1)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument(
    "--steps_only",
    type=int,
    default=0,
    help="instead of the loop: run this many train steps on fixed batches, save params to WORKDIR",
  )
  args = parser.parse_args()

  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.devices}"
  os.environ["JAX_PLATFORMS"] = "cpu"
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import jax  # pylint: disable=import-outside-toplevel

  jax.config.update("jax_default_matmul_precision", "highest")
  if os.environ.get("DISENTANGLE_TEST_CACHE"):
    jax.config.update("jax_compilation_cache_dir", os.environ["DISENTANGLE_TEST_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  if args.process_id is not None:
    jax.distributed.initialize(
      coordinator_address=f"localhost:{args.port}", num_processes=args.num_processes, process_id=args.process_id
    )

  from disentangle_jax import train  # pylint: disable=import-outside-toplevel
  from disentangle_jax import train_step  # pylint: disable=import-outside-toplevel
  from tests import forced_devices  # pylint: disable=import-outside-toplevel
  from tests import standins  # pylint: disable=import-outside-toplevel

  forced_devices.write_whole_arrays()
  standins.install()
  if args.steps_only:
    run_fixed_steps(args.workdir, args.steps_only)
    return
  make = train_step.make_train_step

  def make_reporting(*a, **k):
    step = make(*a, **k)

    def run(state, frozen_state, batch):
      out = step(state, frozen_state, batch)
      jax.block_until_ready(out[1])
      print(f"STEP {int(jax.device_get(out[0].step))}", flush=True)
      return out

    return run

  train_step.make_train_step = make_reporting
  config = standins.tiny_config(**json.loads(args.overrides))
  result = train.train_and_evaluate(config, args.workdir)
  print(
    "RESULT "
    + json.dumps(
      {"step": result.step, "preempted": result.preempted, "history": {str(k): v for k, v in result.history.items()}}
    ),
    flush=True,
  )


def run_fixed_steps(workdir: str, num_steps: int) -> None:
  """Train steps on `standins.random_batches` over every device of every process; params to WORKDIR/params.npz."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from disentangle_jax import model as model_lib  # pylint: disable=import-outside-toplevel
  from disentangle_jax import train_step  # pylint: disable=import-outside-toplevel
  from tests import standins  # pylint: disable=import-outside-toplevel

  config = standins.tiny_config()
  model = model_lib.build(config)
  graphs, frozen_state, params, constants = train_step.split_model(model)
  optimizers = train_step.make_optimizers(config.optim)
  mesh = train_step.make_mesh()
  step = train_step.make_train_step(graphs, model.spec, config, optimizers, mesh)
  state = train_step.replicate(jax.device_get(train_step.init_state(params, constants, optimizers)), mesh)
  frozen_state = train_step.replicate(jax.device_get(frozen_state), mesh)
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  history = []
  for b in standins.random_batches(model.spec, num_steps, batch=jax.device_count()):
    placed = {
      k: jax.make_array_from_callback(b[k].shape, split, lambda index, v=b[k]: v[index])
      for k in ("id", "attr", "w_real")
    }
    state, metrics = step(state, frozen_state, train_step.step_batch({**placed, "same": b["same"]}, mesh))
    history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
  if jax.process_index() == 0:
    leaves = [np.asarray(x) for x in jax.tree.leaves(jax.device_get(state.params))]
    np.savez(os.path.join(workdir, "params.npz"), *leaves)
  print("RESULT " + json.dumps({"process": jax.process_index(), "history": history}), flush=True)


if __name__ == "__main__":
  main()
