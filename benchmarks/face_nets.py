r"""Throughput of the face networks at full size: E_id (VGGFace2 ResNet-50), FAN-2D (4 stacks), E_attr (InceptionV3),
and the metric networks (ArcFace IR-SE50, FID InceptionV3).

Each network runs its forward pass on a batch of already-sized inputs (224 / 256 / 299 / 112) in float32 and in bfloat16
(parameters, statistics and inputs cast), with random weights from a fixed seed (speed does not depend on the
values). Reported per row: images/s (median of the timed calls), FLOPs per image from XLA's cost analysis of the
compiled program, and the achieved FLOP/s as a fraction of this run's dense-matmul peak in the same dtype. Given
the upstream checkouts and torch, the upstream PyTorch networks run in the same process on the same inputs and
the ratio JAX / PyTorch is printed.

  python -m benchmarks.face_nets
  python -m benchmarks.face_nets --upstream_vggface2=/tmp/VGGFace2-pytorch --upstream_fan=/tmp/face-alignment \
      --upstream_arcface=/tmp/InsightFace_Pytorch --batch=8 --repeats=5 --json=/tmp/face_nets.json

Upstream checkouts are passed by path and never committed: cydonia999/VGGFace2-pytorch (`models/resnet.py`),
1adrianb/face-alignment (`face_alignment/models/fan.py`), TreB1eN/InsightFace_Pytorch (`model.py`, whose
`Backbone(50, 0.6, "ir_se")` ends in the L2 normalisation the JAX row leaves out), mseitzer/pytorch-fid
(`src/pytorch_fid/inception.py`, `--upstream_pytorch_fid`); torchvision's `inception_v3` is used if importable. The
FID Inception rows feed 256 px images (our swaps' size), which both sides resize to 299 as part of the measured forward.
PyTorch runs with `torch.set_num_threads(os.cpu_count())`, the same core count XLA uses.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common


def _cast(module: nnx.Module, dtype: Any) -> nnx.Module:
  """Casts every floating variable (weights and BatchNorm statistics) of `module` to `dtype`, in place."""
  state = nnx.state(module)
  nnx.update(module, jax.tree.map(lambda v: v.astype(dtype) if jnp.issubdtype(v.dtype, jnp.floating) else v, state))
  return module


def _jax_networks(seed: int) -> dict[str, tuple[Callable[[], nnx.Module], Callable[[nnx.Module, jax.Array], Any], int]]:
  """name -> (module factory, forward(module, x), input side)."""
  from disentangle_jax.nets import inception  # pylint: disable=import-outside-toplevel
  from disentangle_jax.third_party import arcface  # pylint: disable=import-outside-toplevel
  from disentangle_jax.third_party import vggface2  # pylint: disable=import-outside-toplevel

  nets = {
    "vggface2_resnet50": (
      lambda: vggface2.Module(vggface2.FULL, rngs=nnx.Rngs(seed)),
      lambda m, x: m.features(x)["pool"],
      224,
    ),
    "inception_v3": (
      lambda: inception.Inception(inception.FULL, rngs=nnx.Rngs(seed)),
      lambda m, x: m.forward(x)["pool"],
      299,
    ),
    "arcface_ir_se50": (lambda: arcface.Module(arcface.IR_SE50, rngs=nnx.Rngs(seed)), lambda m, x: m.features(x), 112),
  }
  try:
    from disentangle_jax.third_party import fan  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    print(f"FAN rows skipped: disentangle_jax.third_party.fan is not importable ({e})")
  else:
    nets["fan2d_4stack"] = (lambda: fan.init(fan.FAN4, seed), lambda m, x: m.heatmaps(x), 256)
  order = ("vggface2_resnet50", "fan2d_4stack", "inception_v3", "arcface_ir_se50")
  return {k: nets[k] for k in order if k in nets}


def _import_file(name: str, path: str) -> Any:
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def _torch_networks(args: argparse.Namespace) -> dict[str, Any]:
  """name -> upstream torch module in eval mode (only those whose code is available)."""
  # OpenMP's default active spin-waiting collapses PyTorch on an oversubscribed machine (measured here: ResNet-50
  # 0.75 img/s active vs 3.6 passive at load 15 on 2 cores); passive waiting keeps the comparison about the kernels.
  wait = args.torch_omp_wait
  if wait == "auto":
    wait = "passive" if os.getloadavg()[0] > (os.cpu_count() or 1) else "default"
  if wait == "passive":
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read when torch's OpenMP runtime starts, i.e. at import
  print(f"torch OpenMP wait policy: {wait}")
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    print("upstream rows skipped: torch is not installed")
    return {}
  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  nets = {}
  if args.upstream_vggface2:
    resnet = _import_file("upstream_vggface2_resnet", os.path.join(args.upstream_vggface2, "models", "resnet.py"))
    nets["vggface2_resnet50"] = resnet.resnet50(num_classes=8631, include_top=False)
  if args.upstream_fan:
    fan_py = _import_file("upstream_fan", os.path.join(args.upstream_fan, "face_alignment", "models", "fan.py"))
    nets["fan2d_4stack"] = fan_py.FAN(4)
  if args.upstream_arcface:
    insightface = _import_file("upstream_insightface_model", os.path.join(args.upstream_arcface, "model.py"))
    nets["arcface_ir_se50"] = insightface.Backbone(50, 0.6, "ir_se")
  # A CUDA torchvision wheel next to a CPU-only torch cannot register its compiled ops; the pure-Python model code
  # does not need them, so (as for the fixtures) these two registration modules are pre-registered empty.
  for stub in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(stub, types.ModuleType(stub))
  try:
    from torchvision.models import inception_v3  # pylint: disable=import-outside-toplevel

    nets["inception_v3"] = inception_v3(weights=None, aux_logits=False, init_weights=False)
  except Exception as e:  # pylint: disable=broad-except
    print(f"torchvision InceptionV3 skipped: {type(e).__name__}: {e}")
  for net in nets.values():
    net.eval()
  return nets


# --- FID InceptionV3 (the metric network) ---------------------------------------------------------------------------

FID_INPUT_SIZE = 256  # our images; pool3 resizes them to 299 on both sides


def _fid_inception_jax(seed: int) -> dict[str, tuple[Callable[[], nnx.Module], Callable[..., Any], int]]:
  from disentangle_jax.third_party import fid_inception  # pylint: disable=import-outside-toplevel

  return {"fid_inception": (lambda: fid_inception.init(fid_inception.FID, seed), lambda m, x: m(x), FID_INPUT_SIZE)}


def _fid_inception_torch(checkout: str) -> dict[str, Any]:
  """pytorch-fid's `InceptionV3()` (pool3 wrapper, resize on), its weight download answered by an uninitialised
  state_dict of the same keys (speed does not depend on the values)."""
  if not checkout:
    return {}
  try:
    from torchvision.models import inception_v3  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    print(f"pytorch-fid row skipped: {e}")
    return {}

  upstream = _import_file(
    "upstream_pytorch_fid_inception", os.path.join(checkout, "src", "pytorch_fid", "inception.py")
  )
  blank = inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False).state_dict()
  upstream.load_state_dict_from_url = lambda *a, **k: blank
  return {"fid_inception": upstream.InceptionV3().eval()}


def _time_jax(factory, forward, size: int, batch: int, dtype, repeats: int) -> dict[str, Any]:
  module = _cast(factory(), dtype)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)), dtype)
  fn = jax.jit(forward)
  flops = common.compiled_flops(fn, module, x)
  timing = common.time_fn(lambda: fn(module, x).block_until_ready(), warmup=2, repeats=repeats)
  return {
    "img_per_s": batch / timing.median_s,
    "flops_per_img": None if flops is None else flops / batch,
    "median_s": timing.median_s,
  }


def _time_torch(net, size: int, batch: int, repeats: int) -> float:
  import torch  # pylint: disable=import-outside-toplevel

  x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32))
  with torch.inference_mode():
    timing = common.time_fn(lambda: net(x), warmup=2, repeats=repeats)
  return batch / timing.median_s


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--only", default="", help="comma-separated subset of network names")
  parser.add_argument("--upstream_vggface2", default="", help="cydonia999/VGGFace2-pytorch checkout")
  parser.add_argument("--upstream_fan", default="", help="1adrianb/face-alignment checkout")
  parser.add_argument("--upstream_arcface", default="", help="TreB1eN/InsightFace_Pytorch checkout")
  parser.add_argument("--upstream_pytorch_fid", default="", help="mseitzer/pytorch-fid checkout")
  parser.add_argument(
    "--torch_omp_wait",
    default="auto",
    choices=["auto", "passive", "default"],
    help="OMP_WAIT_POLICY for PyTorch; auto = passive when the load average exceeds the cores",
  )
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", default="", help="also write the rows here")
  args = parser.parse_args()

  print(common.device_summary(), f"| load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
  dtypes = [jnp.dtype(d) for d in args.dtypes.split(",") if d]
  peaks = {d: common.dense_peak_flops(d) for d in dtypes}
  for d, p in peaks.items():
    print(f"dense peak {d.name}: {p / 1e9:.1f} GFLOP/s")
  nets = _jax_networks(args.seed)
  nets.update(_fid_inception_jax(args.seed))
  if args.only:
    nets = {k: v for k, v in nets.items() if k in args.only.split(",")}
  upstream = _torch_networks(args)
  upstream.update(_fid_inception_torch(args.upstream_pytorch_fid))

  rows = []
  for name, (factory, forward, size) in nets.items():
    torch_ips = _time_torch(upstream[name], size, args.batch, args.repeats) if name in upstream else None
    for dtype in dtypes:
      r = _time_jax(factory, forward, size, args.batch, dtype, args.repeats)
      achieved = None if r["flops_per_img"] is None else r["flops_per_img"] * r["img_per_s"]
      rows.append(
        {
          "network": name,
          "dtype": dtype.name,
          "batch": args.batch,
          "img/s": r["img_per_s"],
          "GFLOP/img": None if r["flops_per_img"] is None else r["flops_per_img"] / 1e9,
          "frac_peak": None if achieved is None else achieved / peaks[dtype],
          "torch_fp32_img/s": torch_ips,
          "jax/torch": None if torch_ips is None else r["img_per_s"] / torch_ips,
        }
      )
      print(rows[-1], flush=True)
  common.print_table(rows)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(
        {"device": common.device_summary(), "peaks": {d.name: p for d, p in peaks.items()}, "rows": rows}, f, indent=2
      )


if __name__ == "__main__":
  main()
