r"""Throughput of the frozen generator G at the FFHQ-256 size, beside this machine's dense peak and upstream PyTorch.

For each generator package (`stylegan2`: stylegan2-ada `paper256`; `stylegan1` when importable) the synthesis
network renders a batch from given ws (noise "const") for each batch size and compute dtype. Reported per row:
images/s (from the best of the timed calls, which is the least disturbed by other processes on a shared machine;
every case, upstream included, is timed round-robin so that all see the same load),
FLOPs per image from XLA's cost analysis of the compiled program, and the achieved FLOP/s as a fraction of this
run's dense-matmul peak. `--modconv` also times StyleGAN2's fused (per-sample grouped conv) modulated convolution
against the default non-fused one (activations scaled by the style, shared kernel). Weights are random from a
fixed seed (speed does not depend on their values).

Given `--upstream=DIR` (a checkout of NVlabs/stylegan2-ada-pytorch; never committed) and torch installed, the
upstream `Generator` at the same size runs in the same process (`G.synthesis(ws, noise_mode='const',
force_fp32=True)` under `torch.no_grad()`, eval mode) and the ratio JAX / PyTorch is printed.

  python -m benchmarks.generator
  python -m benchmarks.generator --upstream=/tmp/stylegan2-ada-pytorch --batch_sizes=4,8 --dtypes=float32,bfloat16 \
      --modconv --json=/tmp/generator.json
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import common
from disentangle_jax import trees

PAPER256_KWARGS = dict(
  z_dim=512,
  c_dim=0,
  w_dim=512,
  img_resolution=256,
  img_channels=3,
  mapping_kwargs=dict(num_layers=8),
  synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256),
)


def _package(name: str) -> Any | None:
  try:
    return importlib.import_module(f"disentangle_jax.third_party.{name}")
  except ImportError as e:
    print(f"# {name}: not importable ({e}); skipped")
    return None


def _jax_case(module: Any, batch: int, dtype: str) -> tuple[Callable[[], Any], float | None]:
  """A blocking call of the compiled `module.synthesis` on a batch of ws, and its FLOPs per image."""
  cfg = module.config
  ws = jax.random.normal(jax.random.key(1), (batch, cfg.num_ws, cfg.w_dim), jnp.float32)
  synth = jax.jit(lambda m, ws: m.synthesis(ws, noise_mode="const", dtype=dtype))
  flops = common.compiled_flops(synth, module, ws)
  return (lambda: synth(module, ws).block_until_ready()), (None if flops is None else flops / batch)


def _upstream_cases(upstream: str, batches: list[int], omp_wait: str) -> dict[int, Callable[[], Any]]:
  """Calls of upstream stylegan2-ada-pytorch's paper256 synthesis (float32, eval, no_grad), per batch size.

  On an oversubscribed machine PyTorch's OpenMP threads spin-waiting for each other lose most of their time to the
  other processes; passive waiting (`omp_wait`, "auto": when the load average exceeds the cores) keeps the
  comparison about the kernels. It must be set before torch starts its OpenMP runtime, i.e. before the import.
  """
  if omp_wait == "passive" or (omp_wait == "auto" and os.getloadavg()[0] > (os.cpu_count() or 1)):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
  print(f"# PyTorch OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}", flush=True)
  import torch  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, os.path.abspath(upstream))
  from training import networks  # pylint: disable=import-outside-toplevel,import-error

  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  g = networks.Generator(**PAPER256_KWARGS).eval().requires_grad_(False)

  def case(batch):
    ws = torch.randn(batch, g.num_ws, g.w_dim)

    def run():
      with torch.no_grad():
        g.synthesis(ws, noise_mode="const", force_fp32=True)

    return run

  return {batch: case(batch) for batch in batches}


def _time_interleaved(cases: list[Callable[[], Any]], repeats: int) -> list[float]:
  """Best seconds per call of each case, timed round-robin so that every case sees the same machine load."""
  for run in cases:
    run()  # warm-up (and compilation)
  times: list[list[float]] = [[] for _ in cases]
  for _ in range(repeats):
    for i, run in enumerate(cases):
      t0 = time.perf_counter()
      run()
      times[i].append(time.perf_counter() - t0)
  return [min(t) for t in times]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--generators", default="stylegan2,stylegan1")
  p.add_argument("--batch_sizes", default="4,8")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--modconv", action="store_true", help="also time StyleGAN2's fused modulated conv (float32)")
  p.add_argument("--upstream", default="", help="a stylegan2-ada-pytorch checkout (needs torch)")
  p.add_argument(
    "--torch_omp_wait",
    default="auto",
    choices=["auto", "passive", "default"],
    help="OMP_WAIT_POLICY for PyTorch; auto = passive when the load average exceeds the cores",
  )
  p.add_argument("--json", default="", help="also write the rows here")
  args = p.parse_args(argv)
  batches = [int(b) for b in args.batch_sizes.split(",")]
  dtypes = args.dtypes.split(",")

  print(f"# device: {common.device_summary()}")
  peak = {"float32": common.dense_peak_flops(jnp.float32)}
  if "bfloat16" in dtypes:
    peak["bfloat16"] = common.dense_peak_flops(jnp.bfloat16)
  print("# dense matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()), flush=True)

  rows, cases = [], []
  for name in args.generators.split(","):
    package = _package(name)
    if package is None:
      continue
    generator = package.init(package.FFHQ256, seed=0)
    variants = [("", generator)]
    if args.modconv and name == "stylegan2":
      fused_cfg = dataclasses.replace(generator.config, fused_modconv=True)
      variants.append(("fused", package.from_params(fused_cfg, trees.params_of(generator), "benchmark")))
    for variant, module in variants:
      for dtype in dtypes if not variant else ["float32"]:
        for batch in batches:
          run, flops = _jax_case(module, batch, dtype)
          rows.append(
            {
              "generator": name + (f" ({variant})" if variant else ""),
              "impl": "jax",
              "dtype": dtype,
              "batch": batch,
              "gflop_per_img": None if flops is None else flops / 1e9,
            }
          )
          cases.append(run)
  if args.upstream:
    jax_gflop = next((r["gflop_per_img"] for r in rows if r["generator"] == "stylegan2"), None)
    for batch, run in _upstream_cases(args.upstream, batches, args.torch_omp_wait).items():
      rows.append(
        {
          "generator": "stylegan2-ada-pytorch",
          "impl": "torch " + _torch_version(),
          "dtype": "float32",
          "batch": batch,
          "gflop_per_img": jax_gflop,
        }
      )
      cases.append(run)
  print(f"# timing {len(cases)} cases round-robin, best of {args.repeats}", flush=True)
  best = _time_interleaved(cases, args.repeats)

  # The dense peak is re-measured after the timings and the better figure kept (the load may have changed).
  after = common.dense_peak_flops(jnp.float32)
  print(f"# dense matmul peak re-measured after the run: float32 {after / 1e9:.1f} GFLOP/s", flush=True)
  peak["float32"] = max(peak["float32"], after)
  upstream_ips = {r["batch"]: r["batch"] / t for r, t in zip(rows, best) if r["impl"] != "jax"}
  for r, t in zip(rows, best):
    gflop = r.pop("gflop_per_img")
    r.update(
      img_per_s=r["batch"] / t,
      ms_per_img=1e3 * t / r["batch"],
      gflop_per_img=gflop,
      gflop_per_s=None if gflop is None else gflop * r["batch"] / t,
      frac_peak=None if gflop is None else gflop * 1e9 * r["batch"] / t / peak.get(r["dtype"], peak["float32"]),
      vs_upstream=(
        r["batch"] / t / upstream_ips[r["batch"]]
        if r["batch"] in upstream_ips and r["generator"].startswith("stylegan2")
        else None
      ),
    )
  common.print_table(rows)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": common.device_summary(), "peak_flops": peak, "rows": rows}, f, indent=2)
  return rows


def _torch_version() -> str:
  import torch  # pylint: disable=import-outside-toplevel

  return torch.__version__.split("+")[0]


if __name__ == "__main__":
  main()
