"""Fixtures from the authors' TF2 code (YotamNitzan/ID-disentanglement): their Keras classes, seeded weights.

    TF_USE_LEGACY_KERAS=1 python tests/make_official_fixtures.py /path/to/ID-disentanglement

needs TensorFlow 2 with tf_keras (`pip install tf-keras --no-deps`) and a checkout of the official repository (for
a bare clone: `git -C REPO archive HEAD | tar -x -C DIR`). It is not run by the tests. For each network it builds
the official class, sets weights drawn by `tests/official_weights.py` (numpy, fixed seed, file order), writes the
file exactly as their trainer does (`save_weights` HDF5; `Model.save_weights(prefix)` TF format for G), checks that
every array read back equals the drawn one, and stores under `tests/testdata/official/`:

* `<network>_layout.json`: the file's layer names, weight names and shapes (enough to rebuild it from the seed);
* `<network>_io.npz`: the official model's inputs and outputs;
* for G also `stylegan_G_8x8_synthesis_graph.pb`, the checkpoint's serialized object graph.

The weights themselves are not stored (InceptionV3 alone is 87 MB): the tests draw them again from the seed.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys
import tempfile
import types

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import official_weights  # noqa: E402  pylint: disable=wrong-import-position

OUT = official_weights.DIR
INPUT_SEED = 2200


def _import_official(root: pathlib.Path) -> dict[str, types.ModuleType]:
  """The official model modules; their utilities import cv2 and dlib, needed only for image I/O, so stub them."""
  for name in ("cv2", "dlib"):
    sys.modules.setdefault(name, types.ModuleType(name))
  sys.path.insert(0, str(root))
  import importlib  # pylint: disable=import-outside-toplevel

  return {
    n: importlib.import_module(f"model.{n}") for n in ("attr_encoder", "latent_mapping", "discriminator", "stylegan")
  }


def _str(x) -> str:
  return x.decode("utf8") if isinstance(x, bytes) else str(x)


def _h5_layout(path: pathlib.Path) -> dict:
  with h5py.File(path, "r") as f:
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items() if k != "layer_names"}
    layers = []
    for layer in f.attrs["layer_names"]:
      layer = _str(layer)
      g = f[layer]
      layers.append([layer, [[_str(w), list(g[_str(w)].shape)] for w in g.attrs["weight_names"]]])
  return {"attrs": {k: str(v) for k, v in attrs.items()}, "layers": layers}


def _seed_h5_model(model, network: str, tmp: pathlib.Path) -> dict:
  """Saves once to learn the layout, sets the seeded arrays layer by layer, saves again and checks the file."""
  first = tmp / f"{network}_layout.h5"
  model.save_weights(str(first))
  lay = _h5_layout(first)
  drawn = official_weights.arrays(lay, official_weights.SEEDS[network])
  with_weights = [layer for layer in model.layers if layer.weights]
  nonempty = [(name, weights) for name, weights in drawn if weights]
  assert len(with_weights) == len(nonempty), (len(with_weights), len(nonempty))
  for layer, (name, weights) in zip(with_weights, nonempty):
    assert layer.name == name, (layer.name, name)
    layer.set_weights([a for _, a in weights])
  final = tmp / f"{network}.h5"
  model.save_weights(str(final))
  with h5py.File(final, "r") as f:
    for name, weights in drawn:
      for w, a in weights:
        np.testing.assert_array_equal(f[name][w][()], a)
  assert _h5_layout(final) == lay
  (OUT / f"{network}_layout.json").write_text(json.dumps(lay, indent=0))
  return lay


def attr_encoder(mods, tmp: pathlib.Path) -> None:
  import functools  # pylint: disable=import-outside-toplevel

  mod = mods["attr_encoder"]
  mod.InceptionV3 = functools.partial(mod.InceptionV3, weights=None)  # no ImageNet download: seeded weights
  enc = mod.AttrEncoder(types.SimpleNamespace(load_checkpoint=None))
  _seed_h5_model(enc.model, "AttrEncoder", tmp)
  rng = np.random.default_rng(INPUT_SEED)
  images = rng.integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
  images[1] = np.clip(np.linspace(0, 255, 256)[None, :, None] + rng.normal(0, 20, (256, 256, 3)), 0, 255)
  pooled = enc(images.astype(np.float32) / 255.0).numpy()[:, 0]
  np.savez_compressed(OUT / "AttrEncoder_io.npz", images_uint8=images, pooled=pooled.astype(np.float32))


def dense_net(mods, tmp: pathlib.Path, network: str) -> None:
  args = types.SimpleNamespace(load_checkpoint=None, resolution=256)
  rng = np.random.default_rng(INPUT_SEED + 1)
  if network == "LatentMappingNetwork":
    model = mods["latent_mapping"].LatentMappingNetwork(args)
    x = rng.standard_normal((4, 1, 2560)).astype(np.float32)
  else:
    model = mods["discriminator"].W_D(args)
    x = rng.standard_normal((4, 1, 512)).astype(np.float32)
  model(x)  # builds the variables
  _seed_h5_model(model, network, tmp)
  y = model(x).numpy()[:, 0]
  np.savez_compressed(OUT / f"{network}_io.npz", x=x[:, 0], y=y.astype(np.float32))


def synthesis(mods, tmp: pathlib.Path, resolution: int = 8) -> None:
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.core.protobuf import trackable_object_graph_pb2  # pylint: disable=import-outside-toplevel

  network = f"stylegan_G_{resolution}x{resolution}_synthesis"
  # Their Conv2d calls Keras' private `_convolution_op`, which tf_keras 2.21 names `convolution_op`.
  conv_cls = mods["stylegan"].Conv2d
  if not hasattr(conv_cls, "_convolution_op"):
    conv_cls._convolution_op = lambda self, x, w: self.convolution_op(x, w)  # pylint: disable=protected-access
  model = mods["stylegan"].StyleGAN_G_synthesis(resolution=resolution, is_const_noise=True)
  rng = np.random.default_rng(official_weights.SEEDS[network])
  variables = [[v.name, list(v.shape)] for v in model.weights]
  model.set_weights([official_weights.draw(n, tuple(s), rng) for n, s in variables])
  prefix = tmp / network
  model.save_weights(str(prefix))
  reader = tf.train.load_checkpoint(str(prefix))
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  keys = {a.full_name: a.checkpoint_key for node in graph.nodes for a in node.attributes}
  by_name = {v.name: v.numpy() for v in model.weights}
  for name, key in keys.items():
    np.testing.assert_array_equal(reader.get_tensor(key), by_name[name if name in by_name else name + ":0"])
  (OUT / f"{network}_layout.json").write_text(json.dumps({"variables": variables, "keys": keys}, indent=0))
  (OUT / f"{network}_graph.pb").write_bytes(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  num_layers = 2 * int(np.log2(resolution)) - 2
  w = np.random.default_rng(INPUT_SEED + 2).standard_normal((2, num_layers, 512)).astype(np.float32)
  np.savez_compressed(OUT / f"{network}_io.npz", ws=w, images=model(w).numpy().astype(np.float32))


def main(argv: list[str]) -> None:
  if len(argv) != 2 or not pathlib.Path(argv[1], "model", "attr_encoder.py").is_file():
    raise SystemExit("usage: make_official_fixtures.py OFFICIAL_CHECKOUT (a directory holding model/attr_encoder.py)")
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  tf.random.set_seed(0)
  mods = _import_official(pathlib.Path(argv[1]).resolve())
  OUT.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    tmp = pathlib.Path(tmp)
    dense_net(mods, tmp, "LatentMappingNetwork")
    dense_net(mods, tmp, "W_D")
    synthesis(mods, tmp)
    attr_encoder(mods, tmp)
  for p in sorted(OUT.iterdir()):
    print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
  main(sys.argv)
