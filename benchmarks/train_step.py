r"""Benchmark of the train step: time, images/s, FLOPs, fraction of the dense peak, and peak memory.

    python benchmarks/train_step.py --config=smoke
    python benchmarks/train_step.py --config=paper --per_device_batch=6 --variants=f32,bf16,remat,bf16+remat
    python benchmarks/train_step.py --config=paper --per_device_batch=1 --analysis_only   # no timing

`paper` is configs/paper.py with every network randomly initialised at its full size (StyleGAN2 256 px, ResNet-50,
FAN-4, InceptionV3 299): speed and memory do not depend on the weights. The step is the real one
(`train_step.make_train_step`, jitted over a `data` mesh of every device). Variants: `f32`; `bf16` (the frozen
networks' parameters and inputs in bfloat16: `config.compute.frozen_dtype`); `remat` (G's activations recomputed in
the backward pass: `config.compute.remat_generator`); `bf16+remat`.

Reported per variant: compile seconds; median step seconds over alternating adversarial / plain steps (the
adversarial half runs every other step under `lax.cond`); images/s (global batch / step time); FLOPs of one step
from XLA's cost analysis (it counts both branches of the `cond`, so this is the adversarial step's count, an upper
bound for the plain step); achieved FLOP/s over the dense-matmul peak measured in the same run
(`benchmarks/common.py`); and XLA's memory analysis (arguments + outputs + temporaries: the peak estimate).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=wrong-import-position
import ml_collections  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from benchmarks import common  # pylint: disable=wrong-import-position
from disentangle_jax import model as model_lib  # pylint: disable=wrong-import-position
from disentangle_jax import train_step as step_lib  # pylint: disable=wrong-import-position

VARIANTS = {
  "f32": ("float32", False),
  "bf16": ("bfloat16", False),
  "remat": ("float32", True),
  "bf16+remat": ("bfloat16", True),
}


def make_config(name: str, per_device_batch: int) -> ml_collections.ConfigDict:
  """The smoke config, or the paper config with every network at full size and random weights."""
  from disentangle_jax.configs import paper  # pylint: disable=import-outside-toplevel
  from disentangle_jax.configs import smoke  # pylint: disable=import-outside-toplevel

  if name == "smoke":
    config = smoke.get_config()
  elif name == "paper":
    config = paper.get_config("generator=stylegan2,id_head=pool")
    for section in (config.generator, config.id_encoder, config.attr_encoder, config.landmarks):
      section.weights = ""
      section.arch = ml_collections.ConfigDict()  # each network's default Config: its full, released size
  else:
    raise ValueError(f"--config: unknown {name!r}; choose smoke or paper")
  config.per_device_batch_size = per_device_batch
  return config


def run(config_name: str, per_device_batch: int, variants: list[str], repeats: int, analysis_only: bool) -> list[dict]:
  config = make_config(config_name, per_device_batch)
  t0 = time.perf_counter()
  model = model_lib.build(config)
  print(f"built {config_name} networks in {time.perf_counter() - t0:.1f}s; spec {model.spec}", flush=True)
  graphs, frozen_state, params, constants = step_lib.split_model(model)
  frozen_state = jax.device_get(frozen_state)
  optimizers = step_lib.make_optimizers(config.optim)
  host_state = jax.device_get(step_lib.init_state(params, constants, optimizers))
  mesh = step_lib.make_mesh()
  global_batch = per_device_batch * jax.device_count()
  res, w_dim = model.spec.resolution, model.spec.w_dim
  rng = np.random.RandomState(0)
  images = rng.uniform(-1, 1, (global_batch, res, res, 3)).astype(np.float32)
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  batch = step_lib.step_batch(
    {
      "id": jax.device_put(images, split),
      "attr": jax.device_put(images, split),
      "w_real": jax.device_put(rng.randn(global_batch, w_dim).astype(np.float32), split),
      "same": True,
    },
    mesh,
  )
  peak = None if analysis_only else common.dense_peak_flops()
  rows = []
  for variant in variants:
    dtype, remat = VARIANTS[variant]
    spec = dataclasses.replace(model.spec, frozen_dtype=dtype, remat_generator=remat)
    frozen = step_lib.replicate(model_lib.cast_frozen_state(frozen_state, dtype), mesh)
    state = step_lib.replicate(host_state, mesh)
    step = step_lib.make_train_step(graphs, spec, config, optimizers, mesh)
    t0 = time.perf_counter()
    compiled = step.lower(state, frozen, batch).compile()
    compile_s = time.perf_counter() - t0
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost["flops"]) if cost and "flops" in cost else None
    if jax.default_backend() != "cpu":
      # XLA's GPU cost analysis counts the convolutions handed to cuDNN as zero FLOPs; the CPU backend's count
      # (`--analysis_only` on a CPU) is the program's true figure.
      flops = None
    mem = compiled.memory_analysis()
    peak_bytes = (
      None if mem is None else (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes)
    )
    row = {
      "config": config_name,
      "variant": variant,
      "devices": jax.device_count(),
      "global_batch": global_batch,
      "compile_s": compile_s,
      "gflops_per_step": None if flops is None else flops / 1e9,
      "temp_mib": None if mem is None else mem.temp_size_in_bytes / 2**20,
      "peak_mib": None if peak_bytes is None else peak_bytes / 2**20,
    }
    if not analysis_only:
      holder = {"state": state}

      def two_steps():
        for _ in range(2):  # one adversarial, one plain step
          holder["state"], metrics = compiled(holder["state"], frozen, batch)  # noqa: B023  (called in this loop)
        jax.block_until_ready(metrics)

      timing = common.time_fn(two_steps, warmup=1, repeats=repeats)
      step_s = timing.median_s / 2
      row.update(
        {
          "step_s": step_s,
          "images_per_s": global_batch / step_s,
          "peak_fraction": None if flops is None else flops / step_s / peak,
        }
      )
    rows.append(row)
    print(json.dumps(row), flush=True)
  if peak is not None:
    print(f"dense peak (f32 matmul, same run): {peak / 1e9:.1f} GFLOP/s")
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--config", default="smoke", choices=("smoke", "paper"))
  parser.add_argument("--per_device_batch", type=int, default=None, help="default: the config's (smoke 2, paper 6)")
  parser.add_argument("--variants", default="f32,bf16,remat,bf16+remat")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--analysis_only", action="store_true", help="compile and analyse only; no timing")
  parser.add_argument("--out", default="", help="also write the rows as JSON here")
  args = parser.parse_args()
  variants = [v for v in args.variants.split(",") if v]
  unknown = [v for v in variants if v not in VARIANTS]
  if unknown:
    raise SystemExit(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
  batch = args.per_device_batch or (2 if args.config == "smoke" else 6)
  print(common.device_summary(), flush=True)
  rows = run(args.config, batch, variants, args.repeats, args.analysis_only)
  common.print_table(rows)
  if args.out:
    with open(args.out, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
