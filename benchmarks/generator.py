r"""Throughput of the frozen generator G at the FFHQ-256 size, beside this machine's dense peak and upstream PyTorch.

For each generator package (`stylegan2`: stylegan2-ada `paper256`; `stylegan1` when importable) the synthesis
network renders a batch from given ws (noise "const") for each batch size and compute dtype. Reported per row:
images/s (from the best of the timed calls, which is the least disturbed by other processes on a shared machine),
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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common

PAPER256_KWARGS = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3,
                       mapping_kwargs=dict(num_layers=8),
                       synthesis_kwargs=dict(channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256))


def _package(name: str) -> Any | None:
  try:
    return importlib.import_module(f"disentangle_jax.third_party.{name}")
  except ImportError as e:
    print(f"# {name}: not importable ({e}); skipped")
    return None


def _time_jax(module: Any, batch: int, dtype: str, repeats: int) -> dict[str, Any]:
  """Compiles and times `module.synthesis` on a batch of ws; returns seconds per call and FLOPs per image."""
  cfg = module.config
  ws = jax.random.normal(jax.random.key(1), (batch, cfg.num_ws, cfg.w_dim), jnp.float32)
  synth = jax.jit(lambda m, ws: m.synthesis(ws, noise_mode="const", dtype=dtype))
  flops = common.compiled_flops(synth, module, ws)
  timing = common.time_fn(lambda: synth(module, ws).block_until_ready(), warmup=1, repeats=repeats)
  return {"best_s": timing.best_s, "median_s": timing.median_s,
          "flops_per_image": None if flops is None else flops / batch}


def _time_upstream(upstream: str, batches: list[int], repeats: int) -> dict[int, float]:
  """Best seconds per call of upstream stylegan2-ada-pytorch's paper256 synthesis, float32, per batch size."""
  import torch  # pylint: disable=import-outside-toplevel

  sys.path.insert(0, os.path.abspath(upstream))
  from training import networks  # pylint: disable=import-outside-toplevel,import-error

  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  g = networks.Generator(**PAPER256_KWARGS).eval().requires_grad_(False)
  out = {}
  for batch in batches:
    ws = torch.randn(batch, g.num_ws, g.w_dim)

    def run():
      with torch.no_grad():
        g.synthesis(ws, noise_mode="const", force_fp32=True)

    out[batch] = common.time_fn(run, warmup=1, repeats=repeats).best_s
  return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--generators", default="stylegan2,stylegan1")
  p.add_argument("--batch_sizes", default="4,8")
  p.add_argument("--dtypes", default="float32,bfloat16")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--modconv", action="store_true", help="also time StyleGAN2's fused modulated conv (float32)")
  p.add_argument("--upstream", default="", help="a stylegan2-ada-pytorch checkout (needs torch)")
  p.add_argument("--json", default="", help="also write the rows here")
  args = p.parse_args(argv)
  batches = [int(b) for b in args.batch_sizes.split(",")]
  dtypes = args.dtypes.split(",")

  print(f"# device: {common.device_summary()}")
  peak = {"float32": common.dense_peak_flops(jnp.float32)}
  if "bfloat16" in dtypes:
    peak["bfloat16"] = common.dense_peak_flops(jnp.bfloat16)
  print("# dense matmul peak: " + ", ".join(f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()))

  rows = []
  for name in args.generators.split(","):
    package = _package(name)
    if package is None:
      continue
    bundle = package.init(package.FFHQ256, seed=0)
    variants = [("", bundle.module)]
    if args.modconv and name == "stylegan2":
      fused_cfg = dataclasses.replace(bundle.config, fused_modconv=True)
      fused = package.from_params(fused_cfg, jax.tree.map(np.asarray, _pure(bundle.module)), "benchmark")
      variants.append(("fused", fused))
    for variant, module in variants:
      for dtype in (dtypes if not variant else ["float32"]):
        for batch in batches:
          r = _time_jax(module, batch, dtype, args.repeats)
          flops = r["flops_per_image"]
          rows.append({
              "generator": name + (f" ({variant})" if variant else ""), "impl": "jax", "dtype": dtype,
              "batch": batch, "img_per_s": batch / r["best_s"], "ms_per_img": 1e3 * r["best_s"] / batch,
              "gflop_per_img": None if flops is None else flops / 1e9,
              "gflop_per_s": None if flops is None else flops * batch / r["best_s"] / 1e9,
              "frac_peak": None if flops is None else flops * batch / r["best_s"] / peak.get(dtype, peak["float32"]),
              "vs_upstream": None})
          print(f"# {rows[-1]['generator']} {dtype} batch {batch}: {rows[-1]['img_per_s']:.3f} img/s", flush=True)

  if args.upstream:
    upstream = _time_upstream(args.upstream, batches, args.repeats)
    jax_flops = next((r["gflop_per_img"] for r in rows if r["generator"] == "stylegan2"), None)
    for batch, best in upstream.items():
      rows.append({"generator": "stylegan2-ada-pytorch", "impl": "torch " + _torch_version(), "dtype": "float32",
                   "batch": batch, "img_per_s": batch / best, "ms_per_img": 1e3 * best / batch,
                   "gflop_per_img": jax_flops, "gflop_per_s": None if jax_flops is None else jax_flops * batch / best,
                   "frac_peak": None if jax_flops is None else jax_flops * 1e9 * batch / best / peak["float32"],
                   "vs_upstream": 1.0})
      for r in rows:
        if r["impl"] == "jax" and r["batch"] == batch and r["generator"].startswith("stylegan2"):
          r["vs_upstream"] = r["img_per_s"] / (batch / best)
  print(f"# peak re-measured after the run: {common.dense_peak_flops(jnp.float32) / 1e9:.1f} GFLOP/s (float32)")
  common.print_table(rows)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": common.device_summary(), "peak_flops": peak, "rows": rows}, f, indent=2)
  return rows


def _pure(module: Any) -> Any:
  from flax import nnx  # pylint: disable=import-outside-toplevel
  return nnx.to_pure_dict(nnx.state(module))


def _torch_version() -> str:
  import torch  # pylint: disable=import-outside-toplevel
  return torch.__version__.split("+")[0]


if __name__ == "__main__":
  main()
