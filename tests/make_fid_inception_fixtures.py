"""Fixtures from pytorch-fid itself: its InceptionV3 wrapper's pool3 with seeded weights, and its Frechet distance.

    /path/to/torch-python tests/make_fid_inception_fixtures.py /path/to/pytorch-fid [COMMIT]

needs torch + torchvision and a checkout of mseitzer/pytorch-fid (for a bare clone:
`git -C REPO archive HEAD | tar -x -C DIR`, then pass the commit, which an archive does not record). It is not run by the tests. It writes to `tests/testdata/`:

* `fid_inception_meta.json`, `fid_inception_stored.npz`: the FID network's state_dict in `tests/recipe.py`'s scheme
  (convolution and fc weights drawn from a seed, the 1-D tensors stored), with seeds, versions and tolerances;
* `fid_inception_io.npz`: two 128x128 uint8 images, pytorch-fid's pool3 of them (`InceptionV3()` with its defaults:
  resize to 299, [0, 1] -> [-1, 1]), and a probe of the resized input the network saw;
* `fid_distance.npz`, `fid_distance.json`: features and `calculate_frechet_distance` results for the distance's
  tests (the wide, singular-covariance features are drawn from a seed, not stored).

The network is built by pytorch-fid's own `InceptionV3()`, with its weight download answered by the seeded
state_dict; BatchNorm running statistics are then calibrated through that wrapper (one train-mode pass over 8
images, cumulative average), as the other recipe fixtures were (`/work/shared/fixtures/README.md`).
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import recipe  # noqa: E402  pylint: disable=wrong-import-position

OUT = recipe.TESTDATA
NAME = "fid_inception"
SEEDS = {"recipe": 2030, "bn_affine": 2031, "calibration_images": 2032, "test_images": 2033, "distance": 2034}
SIZE = 128  # != 299, so pytorch-fid's resize runs
PROBE = [0, 1, 2, 3, 150, 295, 296, 297, 298]  # rows/columns of the resized input kept: both borders and the middle


def _images(seed: int, n: int) -> np.ndarray:
  """uint8 [n, SIZE, SIZE, 3]: 8x8 uniform colour blobs upsampled bilinearly plus N(0, 20) pixel noise."""
  rs = np.random.RandomState(seed)
  blobs = torch.from_numpy(rs.uniform(0, 255, (n, 3, 8, 8)).astype(np.float32))
  up = torch.nn.functional.interpolate(blobs, size=(SIZE, SIZE), mode="bilinear", align_corners=False).numpy()
  noisy = up.transpose(0, 2, 3, 1) + rs.normal(0, 20, (n, SIZE, SIZE, 3))
  return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def _to_input(images: np.ndarray) -> torch.Tensor:
  """What pytorch-fid's data loader gives: `ToTensor()`, i.e. uint8 / 255 in float32, NCHW."""
  return torch.from_numpy((images.astype(np.float32) / np.float32(255.0)).transpose(0, 3, 1, 2).copy())


def _seeded_state_dict(template: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[dict]]:
  """Recipe weights (He-scaled convolutions, 1/sqrt(in) fc) and random BatchNorm affines; statistics 0 / 1."""
  rng = np.random.default_rng(SEEDS["bn_affine"])
  out, keys = {}, []
  for index, (key, t) in enumerate(template.items()):
    shape = list(t.shape)
    if t.is_floating_point() and t.ndim >= 2:
      fan_in = int(np.prod(shape[1:]))
      scale = float(np.sqrt(2.0 / fan_in)) if t.ndim == 4 else float(1.0 / np.sqrt(fan_in))
      keys.append({"key": key, "index": index, "shape": shape, "scale": scale})
      out[key] = torch.from_numpy(recipe.generated_array(SEEDS["recipe"], index, shape, scale))
    elif key.endswith("bn.weight"):
      out[key] = torch.from_numpy(rng.uniform(0.5, 1.5, shape).astype(np.float32))
    elif key.endswith("bn.bias") or key == "fc.bias":
      out[key] = torch.from_numpy((0.2 * rng.standard_normal(shape)).astype(np.float32))
    else:
      out[key] = t.clone()  # running_mean 0, running_var 1, num_batches_tracked 0: calibrated below
  return out, keys


def _build(fid_inception_module) -> tuple[torch.nn.Module, torch.nn.Module, list[dict]]:
  """pytorch-fid's `InceptionV3()` holding seeded weights, and the inner torchvision-named network it wraps."""
  template = torchvision.models.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
  state_dict, keys = _seeded_state_dict(template.state_dict())
  inner = []
  build_inner = fid_inception_module.fid_inception_v3
  fid_inception_module.load_state_dict_from_url = lambda *a, **k: state_dict  # the download, answered
  fid_inception_module.fid_inception_v3 = lambda: inner.append(build_inner()) or inner[-1]
  wrapper = fid_inception_module.InceptionV3()
  return wrapper, inner[0], keys


def _calibrate(wrapper: torch.nn.Module) -> None:
  bns = [m for m in wrapper.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  for m in bns:
    m.reset_running_stats()
    m.momentum = None  # cumulative average: one batch gives its exact statistics
  wrapper.train()
  with torch.no_grad():
    wrapper(_to_input(_images(SEEDS["calibration_images"], 8)))
  for m in bns:
    m.momentum = 0.1
  wrapper.eval()


def _pool3(wrapper: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
  """pool3 [B, 2048] and the input the first block saw (after pytorch-fid's resize and normalisation)."""
  seen = []
  hook = wrapper.blocks[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
  with torch.no_grad():
    out = wrapper(x)[0]
  hook.remove()
  return out[:, :, 0, 0].numpy().astype(np.float32), seen[0].numpy()


def _commit(checkout: pathlib.Path) -> str:
  try:
    return subprocess.check_output(["git", "-C", str(checkout), "rev-parse", "HEAD"], text=True).strip()
  except (OSError, subprocess.CalledProcessError):
    return "unknown (not a git work tree)"


def make_network(fid_inception_module, commit: str) -> None:
  torch.manual_seed(SEEDS["recipe"])
  wrapper, inner, keys = _build(fid_inception_module)
  _calibrate(wrapper)
  state_dict = {k: v.detach().numpy().copy() for k, v in inner.state_dict().items()}
  generated = {e["key"] for e in keys}
  for e in keys:  # the recipe rebuilds what the network holds
    np.testing.assert_array_equal(
      recipe.generated_array(SEEDS["recipe"], e["index"], e["shape"], e["scale"]), state_dict[e["key"]]
    )
  images = _images(SEEDS["test_images"], 2)
  x = _to_input(images)
  pool3, seen = _pool3(wrapper, x)
  with torch.no_grad():
    rerun = wrapper(x)[0][:, :, 0, 0].numpy()
    pool3_f64 = wrapper.double()(x.double())[0][:, :, 0, 0].numpy()
  wrapper.float()
  f64_diff = float(np.max(np.abs(pool3_f64 - pool3)))
  atol = float(max(1e-4, np.ceil(4 * f64_diff * 1e4) / 1e4))  # 4x the float32 rounding of this very network
  np.savez_compressed(
    OUT / f"{NAME}_io.npz",
    image_rgb_uint8=images,
    pool3=pool3,
    resized_input_probe=seen[:, :, PROBE][:, :, :, PROBE].astype(np.float32),
  )
  np.savez_compressed(OUT / f"{NAME}_stored.npz", **{k: v for k, v in state_dict.items() if k not in generated})
  meta = {
    "upstream": {"repo": "mseitzer/pytorch-fid", "commit": commit, "module": "src/pytorch_fid/inception.py"},
    "torch_version": torch.__version__,
    "torchvision_version": torchvision.__version__,
    "init": {
      "wrapper": "pytorch_fid.inception.InceptionV3() (output_blocks=[3], resize_input=True, normalize_input=True)",
      "network": "fid_inception_v3(): inception_v3(num_classes=1008, aux_logits=False) with FIDInceptionA/C/E_1/E_2",
    },
    "seeds": SEEDS,
    "batchnorm": "weight ~ U(0.5, 1.5), bias ~ 0.2 N(0, 1) (numpy default_rng(bn_affine), state_dict order; fc.bias"
    " too); running statistics calibrated by one train-mode pass of 8 calibration images, momentum=None",
    "input": f"uint8 [2, {SIZE}, {SIZE}, 3] -> ToTensor (x / 255, float32, NCHW) -> InceptionV3 (resize to 299 "
    "bilinear, align_corners=False; 2x - 1)",
    "io": {
      "image_rgb_uint8": "the test images, RGB HWC uint8",
      "pool3": "InceptionV3()(x)[0] squeezed: [2, 2048] float32",
      "resized_input_probe": f"the input blocks[0] received (NCHW, [-1, 1], 299x299) at rows and columns {PROBE}",
    },
    "rerun_max_abs": float(np.max(np.abs(rerun - pool3))),
    "float32_vs_float64_max_abs": f64_diff,
    "pool3_stats": {"min": float(pool3.min()), "max": float(pool3.max()), "mean": float(pool3.mean())},
    "suggested_atol": {"pool3": atol},
    "state_dict_keys": list(state_dict),
    "recipe": {"seed": SEEDS["recipe"], "keys": keys},
    "recipe_scale_rule": "conv weights [out, in, kh, kw]: sqrt(2 / (in*kh*kw)) (He); fc.weight [out, in]: "
    "1 / sqrt(in). Every 1-D / 0-D entry is stored.",
  }
  (OUT / f"{NAME}_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
  print(f"pool3 max {pool3.max():.3f}, float32 vs float64 {f64_diff:.2e}, atol {atol}")


def make_distance(fid_score_module, commit: str) -> None:
  """Cases for `frechet_distance`: small full-rank sets, 512-d sets with fewer samples than dimensions (singular
  covariances), and covariances whose product has no real square root (pytorch-fid raises)."""
  rs = np.random.RandomState(SEEDS["distance"])
  mix = rs.normal(size=(16, 16)) / 4.0
  small_a = (rs.normal(size=(64, 16)) @ mix).astype(np.float32)
  small_b = (rs.normal(size=(64, 16)) @ (mix + 0.1 * np.eye(16)) + 0.3).astype(np.float32)
  # pool3-like (non-negative) features, fewer samples than dimensions (singular covariances),, drawn with tests/recipe.py (not stored)
  # 512-d, not 2048-d: scipy's sqrtm of a 2048-d product takes most of a minute on the tests' two cores
  wide = {"seed": SEEDS["distance"], "shape": [48, 512], "scale": 0.3, "index_a": 0, "index_b": 1, "offset_b": 0.05}
  wide_a = np.abs(recipe.generated_array(wide["seed"], wide["index_a"], wide["shape"], wide["scale"]))
  wide_b = np.abs(recipe.generated_array(wide["seed"], wide["index_b"], wide["shape"], wide["scale"])) + np.float32(
    wide["offset_b"]
  )

  def upstream(a: np.ndarray, b: np.ndarray) -> tuple[float, bool]:
    # pytorch-fid's statistics: mean and np.cov(rowvar=False) of float64 activations (`calculate_activation_statistics`)
    a, b = a.astype(np.float64), b.astype(np.float64)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
      value = fid_score_module.calculate_frechet_distance(
        np.mean(a, axis=0), np.cov(a, rowvar=False), np.mean(b, axis=0), np.cov(b, rowvar=False)
      )
    return float(value), "adding" in printed.getvalue()

  fid_small, retry_small = upstream(small_a, small_b)
  fid_wide, retry_wide = upstream(wide_a, wide_b)
  fid_same, _ = upstream(small_a, small_a)
  not_psd = np.diag([-1.0, 1.0])
  try:
    fid_score_module.calculate_frechet_distance(np.zeros(2), not_psd, np.zeros(2), np.eye(2))
    complex_raises = ""
  except ValueError as e:
    complex_raises = str(e)
  np.savez_compressed(OUT / "fid_distance.npz", small_a=small_a, small_b=small_b, not_psd_sigma=not_psd)
  info = {
    "upstream": {"repo": "mseitzer/pytorch-fid", "commit": commit, "function": "fid_score.calculate_frechet_distance"},
    "statistics": "mu = mean(axis=0), sigma = np.cov(rowvar=False) of the float64 features (as pytorch-fid)",
    "small": {"fid": fid_small, "eps_retry": retry_small, "shape": list(small_a.shape)},
    "small_same": {"fid": fid_same},
    "wide": {
      **wide,
      "fid": fid_wide,
      "eps_retry": retry_wide,
      "draw": "abs(recipe.generated_array(seed, index, shape, scale)) (+ offset_b for b)",
    },
    "not_psd": {"sigma1": "not_psd_sigma", "mu": [0, 0], "sigma2": "identity", "raises": complex_raises},
    "numpy": np.__version__,
  }
  (OUT / "fid_distance.json").write_text(json.dumps(info, indent=1) + "\n")
  print(json.dumps({k: v for k, v in info.items() if k in ("small", "wide", "not_psd")}))


def main() -> None:
  if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
  checkout = pathlib.Path(sys.argv[1]).resolve()
  sys.path.insert(0, str(checkout / "src"))
  torch.set_num_threads(2)
  import pytorch_fid.fid_score as fid_score  # pylint: disable=import-outside-toplevel
  import pytorch_fid.inception as fid_inception  # pylint: disable=import-outside-toplevel

  commit = sys.argv[2] if len(sys.argv) == 3 else _commit(checkout)
  make_distance(fid_score, commit)
  make_network(fid_inception, commit)


if __name__ == "__main__":
  main()
