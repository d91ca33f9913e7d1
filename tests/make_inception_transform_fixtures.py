"""Fixture: torchvision's InceptionV3 with `transform_input=True`, the way its ImageNet weights are used.

    /path/to/torch-python tests/make_inception_transform_fixtures.py

needs torch + torchvision (the installed package is the upstream; no checkout). It is not run by the tests.
torchvision's pretrained InceptionV3 (Google's weights, ported) is built with `transform_input=True`: it takes images
normalised with the ImageNet mean / std, as torchvision's transforms give them, and maps each channel back to
`2 x - 1` of the [0, 1] pixel before the first convolution, because the weights were trained on [-1, 1] inputs.

The weights and images are those of the `tv_inception_v3` set (`tests/recipe.py` rebuilds that state_dict; its io
holds the images and their ImageNet-normalised `input`), so only the outputs are new. Written to `tests/testdata/`:

* `tv_inception_v3_transform_io.npz`: `pool_features` [2, 2048] (the `avgpool` output, flattened, before dropout
  and fc) and `logits` [2, 1000] of the `transform_input=True` model on the set's `input`;
* `tv_inception_v3_transform_meta.json`: versions, the build, measured float32 / float64 differences, tolerances,
  and how far these features are from the set's `transform_input=False` ones (what a wrong input range costs).
"""

from __future__ import annotations

import json
import pathlib
import sys
import types

import numpy as np

# A CUDA torchvision wheel beside a CPU-only torch cannot register its compiled ops; the pure-Python model does
# not need them (as for the other torchvision fixtures).
for _stub in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
  sys.modules.setdefault(_stub, types.ModuleType(_stub))

import torch  # noqa: E402
import torchvision  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import recipe  # noqa: E402  pylint: disable=wrong-import-position

SET = "tv_inception_v3"
OUT = recipe.TESTDATA / f"{SET}_transform"


def _run(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
  pooled = []
  hook = model.avgpool.register_forward_hook(lambda _m, _i, out: pooled.append(out.flatten(1).detach().clone()))
  with torch.no_grad():
    logits = model(x)
  hook.remove()
  return pooled[0].numpy(), logits.numpy()


def main() -> None:
  torch.set_num_threads(2)
  model = torchvision.models.inception_v3(weights=None, aux_logits=False, transform_input=True, init_weights=False)
  state_dict = recipe.state_dict(SET)
  model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
  model.eval()
  io = recipe.io(SET)
  x = torch.from_numpy(io["input"])  # ((image / 255) - mean) / std, NCHW float32: torchvision's transforms
  pool, logits = _run(model, x)
  pool64, logits64 = _run(model.double(), x.double())
  f64 = {"pool_features": float(np.max(np.abs(pool64 - pool))), "logits": float(np.max(np.abs(logits64 - logits)))}
  np.savez_compressed(f"{OUT}_io.npz", pool_features=pool.astype(np.float32), logits=logits.astype(np.float32))
  meta = {
    "upstream": {
      "repo": "pytorch/vision (PyPI torchvision)",
      "module": "torchvision/models/inception.py",
      "version": torchvision.__version__,
    },
    "torch_version": torch.__version__,
    "init": {
      "cls": "torchvision.models.inception_v3",
      "weights": None,
      "aux_logits": False,
      "transform_input": True,
      "init_weights": False,
      "num_classes": 1000,
    },
    "weights": f"the {SET} set's state_dict (tests/recipe.py), loaded with strict=True; eval mode",
    "input": f"the {SET} set's `input`: ((image_rgb_uint8 / 255) - ImageNet mean) / std, NCHW float32",
    "io": {"pool_features": "avgpool output flattened [2, 2048]", "logits": "model(input) [2, 1000]"},
    "float32_vs_float64_max_abs": f64,
    "suggested_atol": recipe.meta(SET)["suggested_atol"],
    "max_abs_difference_to_transform_input_false": {
      "pool_features": float(np.max(np.abs(pool - io["pool_features"]))),
      "logits": float(np.max(np.abs(logits - io["logits"]))),
    },
  }
  pathlib.Path(f"{OUT}_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
  print(json.dumps({k: meta[k] for k in ("float32_vs_float64_max_abs", "max_abs_difference_to_transform_input_false")}))


if __name__ == "__main__":
  main()
