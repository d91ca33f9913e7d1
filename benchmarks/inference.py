r"""Inference speed at the paper's sizes: swap latency (batch 1), swap throughput (batch 32), video frames/s.

Every network is full size (StyleGAN2 paper256 at 256x256, ResNet-50 E_id, InceptionV3 E_attr, the 2560-wide M)
with random weights drawn from a fixed seed: speed does not depend on the values, and no pretrained file is needed.

  python -m benchmarks.inference                       # all three measurements
  python -m benchmarks.inference --batch=32 --video_frames=64 --repeats=3

Swap = E_id + E_attr + M + G on a batch of (identity, attribute) image pairs, one jitted program. Video = the
`disentangle-jax video` loop without file IO: per batch of frames E_attr + M + G, plus E_id on the outputs for the
temporal identity metric, the identity code computed once; frames/s over the whole clip, compilation excluded.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from benchmarks import common


def paper_model(seed: int = 0, frozen_dtype: str = "float32"):
  """The paper config with every network randomly initialised at its full size."""
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel
  from disentangle_jax.configs import paper  # pylint: disable=import-outside-toplevel

  config = paper.get_config("generator=stylegan2,id_head=pool")
  config.seed = seed
  for section in ("generator", "id_encoder", "attr_encoder", "landmarks"):
    config[section].weights = ""
  config.compute.frozen_dtype = frozen_dtype
  return inference.build(config)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=32, help="throughput batch size")
  parser.add_argument("--video_frames", type=int, default=64)
  parser.add_argument("--video_batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--frozen_dtype", default="float32", choices=["float32", "bfloat16"])
  parser.add_argument("--json", default=None, help="also write the results here")
  args = parser.parse_args()

  print(common.device_summary())
  t0 = time.perf_counter()
  model = paper_model(frozen_dtype=args.frozen_dtype)
  print(f"built {model} in {time.perf_counter() - t0:.1f}s")
  res = model.resolution
  rng = np.random.default_rng(0)
  rows = []

  for batch in (1, args.batch):
    a = jax.device_put(rng.uniform(-1, 1, (batch, res, res, 3)).astype(np.float32))
    b = jax.device_put(rng.uniform(-1, 1, (batch, res, res, 3)).astype(np.float32))
    t0 = time.perf_counter()
    model.swap(a, b).block_until_ready()
    compile_s = time.perf_counter() - t0
    timing = common.time_fn(lambda: model.swap(a, b).block_until_ready(), warmup=1, repeats=args.repeats)  # noqa: B023
    flops = common.compiled_flops(model._swap, model._frozen_state, model._trainable_state, a, b)  # pylint: disable=protected-access
    rows.append(
      {
        "what": f"swap batch {batch}",
        "latency_ms": timing.median_s * 1e3,
        "best_ms": timing.best_s * 1e3,
        "images_per_s": batch / timing.median_s,
        "gflop_per_image": flops / batch / 1e9 if flops else None,
        "compile_s": compile_s,
      }
    )

  from disentangle_jax.apps import video  # pylint: disable=import-outside-toplevel

  frames = [rng.integers(0, 256, (res, res, 3), dtype=np.uint8) for _ in range(args.video_frames)]
  identity = rng.uniform(-1, 1, (res, res, 3)).astype(np.float32)
  warm = list(video.drive(model, identity, frames[: args.video_batch], batch_size=args.video_batch))  # compile
  del warm
  t0 = time.perf_counter()
  n = sum(1 for _ in video.drive(model, identity, frames, batch_size=args.video_batch))
  elapsed = time.perf_counter() - t0
  rows.append(
    {
      "what": f"video ({args.video_frames} frames, batch {args.video_batch})",
      "latency_ms": elapsed / n * 1e3,
      "best_ms": None,
      "images_per_s": n / elapsed,
      "gflop_per_image": None,
      "compile_s": None,
    }
  )

  peak = common.dense_peak_flops()
  print(f"dense matmul peak of this device: {peak / 1e9:.1f} GFLOP/s")
  for r in rows:
    if r["gflop_per_image"]:
      r["fraction_of_peak"] = r["gflop_per_image"] * 1e9 * r["images_per_s"] / peak
  common.print_table(rows)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": common.device_summary(), "peak_flops": peak, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main()
