r"""Throughput of the MediaPipe face mesh port (468 landmarks, 192x192) beside the TFLite interpreter on the same model.

Rows: the package's jitted `landmarks` (float32, real weights), then `tf.lite.Interpreter` on the same
face_landmark.tflite with its input resized to the batch, once with the default XNNPACK delegate (what MediaPipe
runs) and once with the reference kernels (the parity tests' reference). Reported: images/s (median of the timed
calls), the JAX program's FLOPs per image from XLA's cost analysis and its fraction of this run's dense-matmul
peak, and the largest landmark difference to the JAX port in pixels.

  python -m benchmarks.mediapipe_facemesh \
      --wheel=~/.cache/disentangle_jax/wheels/mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl
  python -m benchmarks.mediapipe_facemesh --wheel=face_landmark.tflite --batch=8 --repeats=20 --threads=2

The wheel comes from `pip download mediapipe==0.10.21 --no-deps`; nothing is downloaded here.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pathlib
import tempfile

import jax
import numpy as np

from benchmarks import common


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--wheel", required=True, help="mediapipe wheel or face_landmark.tflite")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--threads", type=int, default=os.cpu_count(), help="TFLite interpreter threads")
  args = parser.parse_args()

  from disentangle_jax.third_party import mediapipe_facemesh as mp  # pylint: disable=import-outside-toplevel

  convert = importlib.import_module("disentangle_jax.third_party.mediapipe_facemesh.convert")
  tflite = importlib.import_module("disentangle_jax.third_party.mediapipe_facemesh.tflite")

  src = pathlib.Path(args.wheel).expanduser()
  mesh = mp.load(src)
  images = np.random.default_rng(0).uniform(-1, 1, (args.batch, 192, 192, 3)).astype(np.float32)
  ours = np.asarray(mp.landmarks(mesh, images))
  timing = common.time_fn(lambda: common.block(mp.landmarks(mesh, images)), warmup=2, repeats=args.repeats)
  fn = jax.jit(lambda m, x: m.landmarks(x), compiler_options=mp.xla_options.compiler_options())
  flops = common.compiled_flops(fn, mesh, images)
  peak = common.dense_peak_flops()
  rows = [
    {
      "impl": "jax",
      "batch": args.batch,
      "img/s": args.batch / timing.median_s,
      "best img/s": args.batch / timing.best_s,
      "GFLOP/img": flops / args.batch / 1e9 if flops else None,
      "of peak": flops / timing.median_s / peak if flops else None,
      "max |d| px": 0.0,
    }
  ]

  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  data, _ = tflite.read_bytes(src, convert.WHEEL_MEMBER)
  with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
    f.write(data)
    f.flush()
    for name, kwargs in (
      ("tflite xnnpack", {}),
      (
        "tflite reference",
        {"experimental_op_resolver_type": tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES},
      ),
    ):
      interp = tf.lite.Interpreter(model_path=f.name, num_threads=args.threads, **kwargs)
      inp = interp.get_input_details()[0]["index"]
      interp.resize_tensor_input(inp, [args.batch, 192, 192, 3])
      interp.allocate_tensors()
      out = next(d["index"] for d in interp.get_output_details() if d["shape"][-1] == 1404)
      x01 = (images + 1) / 2

      def run(interp=interp, inp=inp, out=out, x01=x01):
        interp.set_tensor(inp, x01)
        interp.invoke()
        return interp.get_tensor(out)

      diff = float(np.abs(run().reshape(ours.shape) - ours).max())
      t = common.time_fn(run, warmup=2, repeats=args.repeats)
      rows.append(
        {
          "impl": name,
          "batch": args.batch,
          "img/s": args.batch / t.median_s,
          "best img/s": args.batch / t.best_s,
          "GFLOP/img": None,
          "of peak": None,
          "max |d| px": diff,
        }
      )
  print(common.device_summary(), f"load average {os.getloadavg()[0]:.1f}, TFLite threads {args.threads}")
  common.print_table(rows)


if __name__ == "__main__":
  main()
