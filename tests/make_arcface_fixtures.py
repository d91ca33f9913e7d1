r"""Writes fixture set `arcface_ir_se50`: upstream ArcFace IR-SE50 with random weights, its inputs and outputs.

    /work/torchenv/bin/python tests/make_arcface_fixtures.py /path/to/InsightFace_Pytorch

The checkout is TreB1eN/InsightFace_Pytorch (its `model.py` is imported from there; nothing of it is committed).
The network is upstream's `Backbone(50, 0.6, "ir_se")`, the architecture of `model_ir_se50.pth`, in eval mode.

Weights follow `tests/recipe.py`: every conv / linear weight is generated from (seed, key index) and not stored
(He scale sqrt(2 / fan_in) for convolutions, 1 / sqrt(fan_in) for the SE's second convolution, which feeds a
sigmoid, and for the head's linear layer). The small tensors are stored: PReLU slopes, BatchNorm affine parameters,
the linear bias, and BatchNorm running statistics, which are calibrated by one train-mode pass (cumulative
average) over noise images so that every BatchNorm sees O(1) inputs through all 50 layers instead of blowing up.

Inputs are regenerated, not stored (`recipe.generated_image`, checksums in the meta): two 112x112 images, used as
they are, and one 256x256 image that goes through pSp's identity-loss pipeline (`criteria/id_loss.py`:
`x[:, :, 35:223, 32:220]`, then `AdaptiveAvgPool2d((112, 112))`). Images are uint8 mapped to [-1, 1] by
`u8 / 127.5 - 1` in float32, the generator's range; upstream's own `ToTensor()` + `Normalize([0.5] * 3, [0.5] * 3)`
gives the same numbers (the difference is recorded). Outputs: the embedding before L2 normalisation
(`features`), the network's normalised output (`embedding`), pSp's pooled input and its embedding.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from tests import recipe  # noqa: E402  pylint: disable=wrong-import-position

SET = "arcface_ir_se50"
SEEDS = {"torch_init": 2030, "recipe": 2030, "stored": 2031, "calibration_images": 2032, "test_images": 2033}
IMAGES = {"image_112": (0, [2, 112, 112, 3]), "image_256": (1, [1, 256, 256, 3])}
CALIBRATION = (0, [8, 112, 112, 3])
PSP_CROP = (35, 223, 32, 220)  # rows, then columns, of pSp's id_loss on 256x256 images


def _upstream(checkout: pathlib.Path):
  spec = importlib.util.spec_from_file_location("insightface_model", checkout / "model.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _to_torch(images_u8: np.ndarray, dtype=torch.float32) -> torch.Tensor:
  x = images_u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)
  return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(dtype)


def _scale(key: str, shape: tuple[int, ...]) -> float:
  fan_in = int(np.prod(shape[1:]))
  if len(shape) == 2 or key.endswith("fc2.weight"):
    return float(1.0 / np.sqrt(fan_in))
  return float(np.sqrt(2.0 / fan_in))


def _pre_norm(net, x: torch.Tensor) -> torch.Tensor:
  return net.output_layer(net.body(net.input_layer(x)))


def _psp(net, x256: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
  top, bottom, left, right = PSP_CROP
  pooled = torch.nn.AdaptiveAvgPool2d((112, 112))(x256[:, :, top:bottom, left:right])
  return pooled, net(pooled)


def _maxdiff(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
  d = float((a.double() - b.double()).abs().max())
  return {"max_abs": d, "max_abs_over_ref_absmax": d / float(b.double().abs().max())}


def main(checkout: pathlib.Path) -> None:
  upstream = _upstream(checkout)
  torch.manual_seed(SEEDS["torch_init"])
  net = upstream.Backbone(50, 0.6, "ir_se")
  keys = list(net.state_dict().keys())
  state = net.state_dict()

  # Generated tensors: every weight of rank >= 2 (convolutions, the head's linear layer).
  entries = []
  with torch.no_grad():
    for index, key in enumerate(keys):
      shape = tuple(state[key].shape)
      if len(shape) >= 2:
        scale = _scale(key, shape)
        entries.append({"key": key, "index": index, "shape": list(shape), "scale": scale})
        state[key].copy_(torch.from_numpy(recipe.generated_array(SEEDS["recipe"], index, list(shape), scale)))
    rng = np.random.default_rng(SEEDS["stored"])
    for module in net.modules():
      if isinstance(module, torch.nn.PReLU):
        module.weight.copy_(torch.from_numpy(rng.uniform(0.05, 0.45, module.weight.shape).astype(np.float32)))
      elif isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
        module.weight.copy_(torch.from_numpy(rng.uniform(0.6, 1.4, module.weight.shape).astype(np.float32)))
        module.bias.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, module.bias.shape).astype(np.float32)))
      elif isinstance(module, torch.nn.Linear):
        module.bias.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, module.bias.shape).astype(np.float32)))

  # Running statistics: one train-mode pass, cumulative average (momentum None), dropout kept off.
  for module in net.modules():
    if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
      module.reset_running_stats()
      module.momentum = None
  net.train()
  for module in net.modules():
    if isinstance(module, torch.nn.Dropout):
      module.eval()
  calibration = recipe.generated_image(SEEDS["calibration_images"], CALIBRATION[0], CALIBRATION[1])
  with torch.no_grad():
    net(_to_torch(calibration))
  net.eval()

  state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
  generated = {e["key"] for e in entries}
  for e in entries:  # calibration touched no generated tensor
    want = recipe.generated_array(SEEDS["recipe"], e["index"], e["shape"], e["scale"])
    assert np.array_equal(state[e["key"]], want), e["key"]
  stored = {k: v for k, v in state.items() if k not in generated}

  images = {name: recipe.generated_image(SEEDS["test_images"], i, shape) for name, (i, shape) in IMAGES.items()}
  x112, x256 = _to_torch(images["image_112"]), _to_torch(images["image_256"])
  upstream_transform = (torch.from_numpy(images["image_112"].transpose(0, 3, 1, 2).copy()).float() / 255 - 0.5) / 0.5
  with torch.no_grad():
    features = _pre_norm(net, x112)
    embedding = net(x112)
    assert torch.allclose(embedding, upstream.l2_norm(features), atol=1e-6)
    psp_input, psp_embedding = _psp(net, x256)
    net64 = net.double()
    f64 = _pre_norm(net64, x112.double())
    e64 = net64(x112.double())
    _, p64 = _psp(net64, x256.double())
  io = {
    "features": features.numpy(),
    "embedding": embedding.numpy(),
    "psp_input": psp_input.numpy(),
    "psp_embedding": psp_embedding.numpy(),
  }
  float64 = {"features": _maxdiff(features, f64), "embedding": _maxdiff(embedding, e64)}
  float64["psp_embedding"] = _maxdiff(psp_embedding, p64)

  commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
  meta = {
    "upstream": {
      "repo": "TreB1eN/InsightFace_Pytorch",
      "module": "model.py",
      "commit": commit.stdout.strip() or "350ff7aa9c9db8d369d1932e14d2a4d11a3e9553 (git archive, no .git)",
      "psp_id_loss": "eladrich/pixel2style2pixel criteria/id_loss.py (crop and pooling re-implemented here)",
    },
    "torch_version": torch.__version__,
    "init": {"cls": "model.Backbone(num_layers=50, drop_ratio=0.6, mode='ir_se')", "mode": "eval"},
    "seeds": SEEDS,
    "images": {
      name: {"seed": SEEDS["test_images"], "index": i, "shape": shape, "uint8_sum": int(images[name].sum())}
      for name, (i, shape) in IMAGES.items()
    },
    "image_to_input": "u8 / 127.5 - 1 (float32), NCHW",
    "upstream_transform_max_abs_diff": float((upstream_transform - x112).abs().max()),
    "psp_crop_rows_cols": list(PSP_CROP),
    "io": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in io.items()},
    "output_stats": {
      k: {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()), "std": float(v.std())}
      for k, v in io.items()
    },
    "float32_vs_float64": float64,
    "suggested_atol": {"features": 2e-4, "embedding": 1e-5, "psp_input": 1e-6, "psp_embedding": 1e-5},
    "recipe_scale_rule": (
      "weights of rank >= 2: conv sqrt(2 / fan_in) (He), SE fc2 and the linear layer 1 / sqrt(fan_in); "
      "every 1-D / 0-D entry is stored (BatchNorm running statistics calibrated by one train-mode pass)"
    ),
    "state_dict_keys": keys,
    "recipe": {"seed": SEEDS["recipe"], "keys": entries},
  }
  out = recipe.TESTDATA
  np.savez_compressed(out / f"{SET}_stored.npz", **stored)
  np.savez_compressed(out / f"{SET}_io.npz", **io)
  (out / f"{SET}_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
  print(json.dumps({k: meta[k] for k in ("output_stats", "float32_vs_float64", "upstream_transform_max_abs_diff")}))


if __name__ == "__main__":
  if len(sys.argv) != 2 or not (pathlib.Path(sys.argv[1]) / "model.py").is_file():
    raise SystemExit("usage: make_arcface_fixtures.py INSIGHTFACE_PYTORCH_CHECKOUT (a directory holding model.py)")
  main(pathlib.Path(sys.argv[1]))
