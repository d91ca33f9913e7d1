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

**One full official training step** (`training_steps`): their `Network` (G, E_id, E_attr, M, landmark net, D_W) and
their `Trainer.train_epoch`, run unchanged for epochs 0, 1 and 2 of their schedule (0: cross batch with the
adversarial half, 1: same-image batch without it, 2: same-image batch with it), from seeded weights on fixed batches
of two 256 px images. Stored: `train_step_io.npz` (the batches; every loss term as their trainer logs it; the
reconstruction's L1 and MS-SSIM parts and the step's intermediates recomputed with their objects; and per step a
compact record of the update of every tensor of E_attr, M and D_W, `official_weights.summarize`) plus the layouts
of the three frozen stand-ins below. What runs differently from their training, and why (the smallest shims):

* InceptionV3 is built with `weights=None` (no ImageNet download); every network gets seeded weights.
* G is their `StyleGAN_G_synthesis(resolution=256)` with `nf`'s `fmap_base` 8192 -> 1024 (512 channels at 4 px
  halving to 8 at 256 px instead of 512 .. 64): 256 px keeps their pixel mask, sigma and 5-scale MS-SSIM (which
  needs 176 px) exactly; it is saved and loaded as a TF-format checkpoint as their `main.py` loads it.
* E_id is a width-8 Keras VGGFace2 ResNet-50 (one block per stage, `dim_proj` 512 as theirs, so M's input is
  2560), written by `model.save` and loaded by their `IDEncoder` through `tf.keras.models.load_model`.
* Their landmark regressor (a ShuffleNet SavedModel, not published) is replaced by a SavedModel of the same
  interface (`inference(x)["landmark"]`, 68 (x, y) in [0, 1] from a 160 px input in [0, 255]): mean over 32 px
  cells, one dense layer, a sigmoid. Their `LandmarksDetector` loads and runs it unchanged.
* `model.arcface.inference` (ArcFace + MTCNN, used only by their test loop) is a stub module; so are `cv2` and
  `dlib` (image I/O only).
* `Writer.add_scalar` records into a dict instead of TensorBoard (that is how the loss terms are read out), and
  the per-epoch lines of `Trainer.train` are replayed (epoch number, cross flag) without its `test()`.
* Their Conv2d calls Keras' private `_convolution_op`, which tf_keras 2.21 names `convolution_op` (an alias).
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
  """The official modules. Stubbed: cv2 and dlib (image I/O only) and their ArcFace module (their test loop only;
  it needs tensorflow_addons and mtcnn)."""
  for name in ("cv2", "dlib"):
    sys.modules.setdefault(name, types.ModuleType(name))
  arcface = types.ModuleType("model.arcface.inference")
  arcface.MyArcFace = lambda path: types.SimpleNamespace(path=path, trainable=False)
  sys.modules["model.arcface.inference"] = arcface
  sys.path.insert(0, str(root))
  import importlib  # pylint: disable=import-outside-toplevel

  names = ("attr_encoder", "latent_mapping", "discriminator", "stylegan", "model", "landmarks", "id_encoder")
  mods = {n: importlib.import_module(f"model.{n}") for n in names}
  mods["trainer"] = importlib.import_module("trainer")
  mods["writer"] = importlib.import_module("writer")
  # Their Conv2d calls Keras' private `_convolution_op`, which tf_keras 2.21 names `convolution_op`.
  conv_cls = mods["stylegan"].Conv2d
  if not hasattr(conv_cls, "_convolution_op"):
    conv_cls._convolution_op = lambda self, x, w: self.convolution_op(x, w)  # pylint: disable=protected-access
  return mods


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


def _seeded_tf_checkpoint(model, network: str, tmp: pathlib.Path) -> pathlib.Path:
  """Sets seeded weights (drawn by variable name, in `model.weights` order), saves `model.save_weights(prefix)`
  (TF format, as the release's G), checks it and records its layout and object graph. Returns the prefix."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.core.protobuf import trackable_object_graph_pb2  # pylint: disable=import-outside-toplevel

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
  return prefix


def synthesis(mods, tmp: pathlib.Path, resolution: int = 8) -> None:
  network = f"stylegan_G_{resolution}x{resolution}_synthesis"
  model = mods["stylegan"].StyleGAN_G_synthesis(resolution=resolution, is_const_noise=True)
  _seeded_tf_checkpoint(model, network, tmp)
  num_layers = 2 * int(np.log2(resolution)) - 2
  w = np.random.default_rng(INPUT_SEED + 2).standard_normal((2, num_layers, 512)).astype(np.float32)
  np.savez_compressed(OUT / f"{network}_io.npz", ws=w, images=model(w).numpy().astype(np.float32))


# --- one full official training step ---------------------------------------------------------------------------

BATCH = official_weights.STEP_BATCH
LANDMARK_CELL = 32  # the landmark stand-in averages 32x32 cells of its 160 px input: 5 x 5 x 3 = 75 features


def _set_seeded(model, network: str) -> None:
  """The seeded arrays of the recorded layout `network`, set layer by layer in order (names are not compared:
  Keras numbers its auto-named layers per process)."""
  drawn = [
    w for _, w in official_weights.arrays(official_weights.layout(network), official_weights.SEEDS[network]) if w
  ]
  layers = [layer for layer in model.layers if layer.weights]
  assert len(layers) == len(drawn), (network, len(layers), len(drawn))
  for layer, weights in zip(layers, drawn):
    assert [tuple(v.shape) for v in layer.weights] == [a.shape for _, a in weights], (network, layer.name)
    layer.set_weights([a for _, a in weights])


def _vggface2_small(tmp: pathlib.Path) -> pathlib.Path:
  """E_id: WeidiXie's Keras VGGFace2 ResNet-50 structure at width 8, one block per stage, `dim_proj` 512, seeded;
  written by `model.save` (the full-model file their `IDEncoder` loads). Returns its path."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  kl = tf.keras.layers

  def bn(x, name):
    return kl.BatchNormalization(axis=3, name=name)(x)

  def block(x, planes, stage, strides):
    p = f"conv{stage}_1"
    y = kl.Conv2D(planes, 1, strides=strides, use_bias=False, name=f"{p}_1x1_reduce")(x)
    y = kl.Activation("relu")(bn(y, f"{p}_1x1_reduce/bn"))
    y = kl.Conv2D(planes, 3, padding="same", use_bias=False, name=f"{p}_3x3")(y)
    y = kl.Activation("relu")(bn(y, f"{p}_3x3/bn"))
    y = bn(kl.Conv2D(planes * 4, 1, use_bias=False, name=f"{p}_1x1_increase")(y), f"{p}_1x1_increase/bn")
    x = bn(kl.Conv2D(planes * 4, 1, strides=strides, use_bias=False, name=f"{p}_1x1_proj")(x), f"{p}_1x1_proj/bn")
    return kl.Activation("relu")(kl.add([y, x]))

  width = 8
  inputs = tf.keras.Input((224, 224, 3))
  x = kl.Conv2D(width, 7, strides=2, padding="same", use_bias=False, name="conv1/7x7_s2")(inputs)
  x = kl.Activation("relu")(bn(x, "conv1/7x7_s2/bn"))
  x = kl.MaxPooling2D(3, strides=2)(x)
  for s in range(4):
    x = block(x, width * 2**s, s + 2, 1 if s == 0 else 2)
  x = kl.Flatten()(kl.AveragePooling2D(7, name="avg_pool")(x))
  x = kl.Dense(512, activation="relu", name="dim_proj")(x)
  x = kl.Dense(8, activation="softmax", use_bias=False, name="classifier_low_dim")(x)
  model = tf.keras.Model(inputs, x)
  _seed_h5_model(model, "VGGFace2_small", tmp)
  path = tmp / "vggface2.h5"
  model.save(str(path))
  return path


def _landmarks_standin(tmp: pathlib.Path) -> pathlib.Path:
  """The landmark regressor's stand-in as a SavedModel with their interface (see the module docstring)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  network = "landmarks_standin"
  features = (160 // LANDMARK_CELL) ** 2 * 3
  lay = {"attrs": {}, "layers": [["landmarks", [["landmarks/kernel:0", [features, 136]], ["landmarks/bias:0", [136]]]]]}
  (OUT / f"{network}_layout.json").write_text(json.dumps(lay, indent=0))
  ((_, ((_, kernel), (_, bias))),) = official_weights.arrays(lay, official_weights.SEEDS[network])

  class Landmarks(tf.Module):
    def __init__(self):
      super().__init__()
      self.kernel, self.bias = tf.Variable(kernel), tf.Variable(bias)

    @tf.function(input_signature=[tf.TensorSpec([None, 160, 160, 3], tf.float32)])
    def inference(self, x):
      cells = tf.nn.avg_pool2d(x / 255.0, LANDMARK_CELL, LANDMARK_CELL, "VALID")
      return {"landmark": tf.sigmoid(tf.reshape(cells, [-1, features]) @ self.kernel + self.bias)}

  path = tmp / "keypoints"
  tf.saved_model.save(Landmarks(), str(path))
  return path


def _generator(mods, tmp: pathlib.Path) -> pathlib.Path:
  """G: their synthesis network at 256 px with `fmap_base` 1024 (the shim), as a TF-format checkpoint."""
  import functools  # pylint: disable=import-outside-toplevel

  sg = mods["stylegan"]
  nf = sg.nf
  sg.nf = functools.partial(nf, fmap_base=1024)
  try:
    model = sg.StyleGAN_G_synthesis(resolution=256, is_const_noise=True)
  finally:
    sg.nf = nf
  return _seeded_tf_checkpoint(model, "stylegan_G_256x256_synthesis_small", tmp)


class _Batches:
  """Their `DataLoader.get_batch` for the three epochs: (attr, id, real_w, real_img, matching_ws), tf tensors (their
  loader `tf.concat`s its samples), images in [0, 1] as it reads PNGs (uint8 / 255); on a same-image epoch attr is
  id."""

  def __init__(self, batches):
    self.batches = list(batches)

  def get_batch(self, is_train=True, is_cross=False, ws=True):
    assert is_train and ws
    b = self.batches.pop(0)
    assert is_cross == (not b["same"])
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    ids = tf.constant(b["id"].astype(np.float32) / 255.0)
    attr = ids if b["same"] else tf.constant(b["attr"].astype(np.float32) / 255.0)
    return attr, ids, tf.constant(b["w_real"]), None, None


def _trainable_tensors(model) -> list:
  """Every variable of `model` in file order (`layer.weights` of its layers with weights, as `save_weights`)."""
  return [v for layer in model.layers if layer.weights for v in layer.weights]


def training_steps(mods, tmp: pathlib.Path) -> None:
  """Runs their `Trainer.train_epoch` for epochs 0, 1, 2 and records losses and updates (module docstring)."""
  import functools  # pylint: disable=import-outside-toplevel

  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  args = types.SimpleNamespace(
    train=True,
    load_checkpoint=None,
    resolution=256,
    batch_size=BATCH,
    W_D_loss=True,
    unified=False,
    gp=True,
    id_loss=True,
    landmarks_loss=True,
    pixel_loss=True,
    pixel_mask_type="gaussian",
    pixel_loss_type="mix",
    cross_frequency=3,
    const_noise=True,
    face_detection=False,
    debug=False,
    images_results=tmp / "images",
  )  # arglib.py's defaults (train.py: TrainArgs), batch 2 instead of 6
  args.images_results.mkdir()
  mods["attr_encoder"].InceptionV3 = functools.partial(mods["attr_encoder"].InceptionV3, weights=None)
  g_prefix = _generator(mods, tmp)
  nf = mods["stylegan"].nf
  mods["stylegan"].nf = functools.partial(nf, fmap_base=1024)
  try:
    synthesis_net = mods["stylegan"].StyleGAN_G_synthesis(resolution=256, is_const_noise=True)
  finally:
    mods["stylegan"].nf = nf
  synthesis_net.load_weights(str(g_prefix))  # as their main.py
  network = mods["model"].Network(
    args, str(_vggface2_small(tmp)), synthesis_net, str(_landmarks_standin(tmp)), str(tmp / "detector"), "arcface"
  )
  g = network.G
  g.latent_spaces_mapping(np.zeros((1, 1, 2560), np.float32))  # builds the variables
  network.W_D(np.zeros((1, 512), np.float32))
  _set_seeded(g.attr_encoder.model, "AttrEncoder")
  _set_seeded(g.latent_spaces_mapping, "LatentMappingNetwork")
  _set_seeded(network.W_D, "W_D")
  nets = {"attr_encoder": g.attr_encoder.model, "mapper": g.latent_spaces_mapping, "discriminator": network.W_D}

  # The batches' images: G's renders of seeded w (as their dataset is), stored 4x4-averaged at 64 px.
  ws = np.random.default_rng(official_weights.STEP_SEED).standard_normal((4 * BATCH, 1, 512)).astype(np.float32)
  renders = np.clip((synthesis_net(np.repeat(ws, 14, 1)).numpy() + 1) / 2, 0, 1).astype(np.float64)
  small = np.round(255 * renders.reshape(4 * BATCH, 64, 4, 64, 4, 3).mean(axis=(2, 4))).astype(np.uint8)
  io: dict[str, np.ndarray] = {"images64": small}
  schedule = [(e % args.cross_frequency != 0, e % 2 == 0) for e in range(3)]  # (same, adversarial), trainer.py
  batches = [{**official_weights.step_batch(e, same, small), "same": same} for e, (same, _) in enumerate(schedule)]

  logged: dict[str, float] = {}
  writer = mods["writer"].Writer
  writer.set_writer(str(tmp / "tensorboard"))
  writer.add_scalar = staticmethod(lambda tag, val, step: logged.__setitem__(tag, float(val)))
  trainer = mods["trainer"].Trainer(args, network, _Batches(batches))
  for epoch, ((same, adversarial), batch) in enumerate(zip(schedule, batches)):
    io[f"step{epoch}/batch/same"] = np.asarray(same)
    # The step's intermediates at the current weights, with their modules and loss objects (as train_epoch).
    attr = (batch["attr"] if not same else batch["id"]).astype(np.float32) / 255.0
    ids = batch["id"].astype(np.float32) / 255.0
    id_embedding = g.id_encoder(ids)
    w = g.latent_spaces_mapping(tf.concat([id_embedding, g.attr_encoder(attr)], -1))
    pred = (g.stylegan_s(w) + 1) / 2
    io[f"step{epoch}/inter/id_embedding"] = id_embedding.numpy()[:, 0]
    io[f"step{epoch}/inter/w"] = w.numpy()[:, 0]
    io[f"step{epoch}/inter/landmarks_attr"] = g.landmarks(attr).numpy()
    io[f"step{epoch}/inter/landmarks_pred"] = g.landmarks(pred).numpy()
    io[f"step{epoch}/loss/l1"] = trainer.pixel_loss_func(attr, pred, sample_weight=trainer.pixel_mask).numpy()
    io[f"step{epoch}/loss/ms_ssim"] = tf.reduce_mean(tf.image.ssim_multiscale(attr, pred, 1.0)).numpy()
    before = {name: [v.numpy() for v in _trainable_tensors(m)] for name, m in nets.items()}

    logged.clear()
    trainer.num_epoch, trainer.is_cross_epoch = epoch, not same  # Trainer.train's lines for this epoch
    trainer.train_epoch()
    assert ("loss/W_D_loss" in logged) == adversarial and ("loss/pixel_loss" in logged) == same, sorted(logged)
    for tag, value in logged.items():
      io[f"step{epoch}/loss/{tag.split('/')[-1]}"] = np.float64(value)
    if same:
      mix = 0.02 * (0.84 * (1 - io[f"step{epoch}/loss/ms_ssim"]) + 0.16 * io[f"step{epoch}/loss/l1"])
      np.testing.assert_allclose(logged["loss/pixel_loss"], mix, rtol=1e-5)
    for name, model in nets.items():
      after = [v.numpy() for v in _trainable_tensors(model)]
      record: dict[str, list] = {"tensors": [], "norm": [], "sum": [], "proj": [], "values": []}
      for i, (b0, b1, var) in enumerate(zip(before[name], after, _trainable_tensors(model))):
        if not var.trainable:  # BatchNorm statistics: their E_attr runs in inference mode, nothing updates them
          np.testing.assert_array_equal(b0, b1)
          continue
        record["tensors"].append(i)
        for key, value in official_weights.summarize(b1.astype(np.float64) - b0, i).items():
          record[key].append(value)
      for key, values in record.items():
        io[f"step{epoch}/update/{name}/{key}"] = np.concatenate(values) if key == "values" else np.asarray(values)
  np.savez_compressed(OUT / "train_step_io.npz", **io)


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
    training_steps(mods, tmp)
  for p in sorted(OUT.iterdir()):
    print(f"{p.name}: {p.stat().st_size} bytes")


if __name__ == "__main__":
  main(sys.argv)
