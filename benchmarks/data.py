r"""Data benchmarks: rendering the dataset at paper256 size, and the training input pipeline at 256px.

  python -m benchmarks.data                    # this machine's devices
  python -m benchmarks.data --gen_batch=32 --gen_images=256 --examples=2048 --steps=600   # an accelerator host

Reports (1) generation images/s with a random-weight StyleGAN2 `FFHQ256` (rendering alone, PNG encoding alone, and
`generate()` end to end, compilation excluded), and (2) pipeline batches/s at 6 images per device over a 256px
dataset of synthetic pictures whose PNGs are about as large as FFHQ-256's (~120 KB; the decode cost follows the
size). It then compares the pipeline with what the train step can consume: a train step runs at least G's synthesis
forward and backward on the batch (3x the synthesis FLOPs, ignoring E_id, E_attr and the landmark net), so
`dense peak / (3 x synthesis FLOPs)` bounds the steps/s from above; the pipeline must deliver >= 10x that.
For one accelerator (no train-step benchmark yet) the stated estimate `--accelerator_step_s=0.025` (40 steps/s):
6 images through G forward + backward (~0.66 TFLOP from the measured synthesis FLOPs) plus E_id, E_attr and the
landmark net (~0.6 TFLOP from their published sizes), ~1.3 TFLOP at ~50 TFLOP/s sustained in float32 on an H100.
Both input modes are measured: streaming (PNG decoding per step) and cached (decoded once into host memory).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import tempfile
import time
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags
from array_record.python import array_record_module
from jax.sharding import Mesh

from benchmarks import common
from disentangle_jax.configs import paper
from disentangle_jax.data import generate
from disentangle_jax.data import pipeline
from disentangle_jax.data import tfds_format
from disentangle_jax.third_party import stylegan2

_GEN_BATCH = flags.DEFINE_integer("gen_batch", 2, "generation batch (rounded up to a multiple of the devices)")
_GEN_IMAGES = flags.DEFINE_integer("gen_images", 8, "images rendered by the end-to-end generate() measurement")
_EXAMPLES = flags.DEFINE_integer("examples", 384, "examples in the synthetic 256px pipeline dataset")
_STEPS = flags.DEFINE_integer("steps", 150, "pipeline steps timed")
_PER_DEVICE = flags.DEFINE_integer("per_device_batch", 6, "pipeline images per device per step")
_ACCEL_STEP_S = flags.DEFINE_float(
  "accelerator_step_s", 0.025, "assumed paper-config train step time on one accelerator (see the module docstring)"
)


def _mesh() -> Mesh:
  return Mesh(np.array(jax.local_devices()), ("data",))


def bench_generation(tmp: str) -> dict[str, float]:
  """Images/s of rendering, of PNG encoding, and of generate() end to end, at paper256 with random weights."""
  g = stylegan2.init(stylegan2.FFHQ256, seed=0, w_avg_samples=256)
  mesh = _mesh()
  n = len(mesh.devices.flat)
  batch = -(-_GEN_BATCH.value // n) * n
  config = paper.get_config("generator=stylegan2,id_head=pool")
  render = generate.make_renderer(g, g.config, mesh, 0, config.data.truncation_psi, config.data.truncation_cutoff)
  seeds = np.arange(batch)
  timing = common.time_fn(lambda: common.block(render(seeds)), warmup=1, repeats=2)
  images, w, z = jax.device_get(render(seeds))
  features = tfds_format.features(256, 512, 512)
  examples = [{"image": images[i % batch], "w": w[i % batch], "z": z[i % batch], "seed": i} for i in range(32)]
  with concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
    list(pool.map(features.serialize_example, examples[:2]))
    t0 = time.perf_counter()
    encoded = list(pool.map(features.serialize_example, examples))
    encode_s = (time.perf_counter() - t0) / len(examples)
  synth = jax.jit(lambda m, ws: m.synthesis(ws))
  ws = jnp.zeros((batch, g.config.num_ws, g.config.w_dim))
  flops = common.compiled_flops(synth, g, ws) or float("nan")

  config.data.num_train, config.data.num_validation = _GEN_IMAGES.value, 0
  config.data.examples_per_shard, config.data.generate_batch_size = _GEN_IMAGES.value, batch
  config.generator.weights, config.generator.arch = "", stylegan2.FFHQ256.to_dict()
  generate.generate(config, os.path.join(tmp, "warm"), generator=g)  # compiles (already cached) and warms up
  t0 = time.perf_counter()
  generate.generate(config, os.path.join(tmp, "gen"), generator=g)
  e2e = _GEN_IMAGES.value / (time.perf_counter() - t0)
  return {
    "batch": batch,
    "render_img_s": batch / timing.median_s,
    "encode_img_s": 1.0 / encode_s,
    "png_kb": float(np.mean([len(e) for e in encoded])) / 1024,
    "generate_img_s": e2e,
    "synthesis_gflop_per_img": flops / batch / 1e9,
    "render_fraction_of_peak": None,
  }


def _face_like(rng: np.random.Generator, size: int) -> np.ndarray:
  """Smooth colour fields plus fine grain: PNGs about the size of FFHQ-256 faces' (~120 KB)."""
  low = rng.uniform(0, 255, (8, 8, 3))
  image = jax.image.resize(low, (size, size, 3), "cubic")
  image = np.asarray(image) + rng.normal(0, 6, (size, size, 3))
  return np.clip(np.round(image), 0, 255).astype(np.uint8)


def write_synthetic_dataset(out: str, examples: int, size: int = 256, w_dim: int = 512) -> float:
  """A generate()-format dataset of synthetic pictures; returns the mean PNG record size in KB."""
  rng = np.random.default_rng(0)
  features = tfds_format.features(size, w_dim, w_dim)
  shards = tfds_format.plan(out, {"train": examples, "validation": 0}, max(1, examples // 4))
  pool = [_face_like(rng, size) for _ in range(16)]
  sizes = []
  os.makedirs(out, exist_ok=True)
  for shard in shards:
    writer = array_record_module.ArrayRecordWriter(shard.path, tfds_format.WRITER_OPTIONS)
    for s in shard.seeds:
      image = np.roll(pool[s % 16], int(s), axis=1)
      record = features.serialize_example(
        {
          "image": image,
          "w": rng.normal(size=w_dim).astype(np.float32),
          "z": np.zeros(w_dim, np.float32),
          "seed": int(s),
        }
      )
      sizes.append(len(record))
      writer.write(record)
    writer.close()
  tfds_format.write_metadata(out, shards, features, description="synthetic benchmark data")
  return float(np.mean(sizes)) / 1024


def bench_pipeline(data_dir: str, cache: bool) -> dict[str, float]:
  mesh = _mesh()
  batch = _PER_DEVICE.value * len(mesh.devices.flat)
  t0 = time.perf_counter()
  p = pipeline.Pipeline(
    data_dir, "train", batch_size=batch, seed=0, cross_every=3, mesh=mesh, num_steps=_STEPS.value + 10, cache=cache
  )
  startup = time.perf_counter() - t0
  host = iter(p.dataset().as_numpy_iterator())  # what the host side produces (tf.data alone)
  for _ in range(10):
    next(host)
  t0 = time.perf_counter()
  for _ in range(_STEPS.value):
    next(host)
  host_rate = _STEPS.value / (time.perf_counter() - t0)
  it = iter(p)
  for _ in range(10):
    common.block(next(it)["id"])
  t0 = time.perf_counter()
  images = 0
  for b in it:
    common.block((b["id"], b["attr"], b["w_real"]))
    images += batch * (1 if b["same"] else 2)
  dt = time.perf_counter() - t0
  return {
    "mode": "cached" if cache else "streaming",
    "batch": batch,
    "startup_s": startup,
    "host_batches_s": host_rate,
    "batches_s": _STEPS.value / dt,
    "images_s": images / dt,
  }


def main(argv: Sequence[str]) -> None:
  del argv
  print(f"devices: {common.device_summary()}, cpu cores: {os.cpu_count()}")
  peak = common.dense_peak_flops()
  tmp = tempfile.mkdtemp(prefix="bench_data_")
  try:
    gen = bench_generation(tmp)
    gen["render_fraction_of_peak"] = gen["render_img_s"] * gen["synthesis_gflop_per_img"] * 1e9 / peak
    print("\n== generation, StyleGAN2 FFHQ256 (paper256), random weights ==")
    common.print_table([gen])
    kb = write_synthetic_dataset(os.path.join(tmp, "pipe"), _EXAMPLES.value)
    pipes = [bench_pipeline(os.path.join(tmp, "pipe"), cache) for cache in (False, True)]
    print(
      f"\n== input pipeline, 256px, {_PER_DEVICE.value} per device, every 3rd batch cross, "
      f"{_EXAMPLES.value} examples of {kb:.0f} KB =="
    )
    common.print_table(pipes)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)

  step_flops = 3 * gen["synthesis_gflop_per_img"] * 1e9 * pipes[0]["batch"]
  here = peak / step_flops
  accel = 1.0 / _ACCEL_STEP_S.value
  print("\n== against what the train step consumes ==")
  rows = []
  for p in pipes:
    rows.append(
      {
        "mode": p["mode"],
        "train_steps_s (this machine, G-only upper bound)": here,
        "margin here": p["batches_s"] / here,
        "train_steps_s (1 accelerator, assumed)": accel,
        "margin per accelerator (host side, this host's cores)": p["host_batches_s"] / accel,
      }
    )
  common.print_table(rows)


if __name__ == "__main__":
  app.run(main)
