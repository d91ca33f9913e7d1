"""E_id (VGGFace2 ResNet-50): parity with upstream (fixture set C), shapes of the real checkpoint (set F),
preprocessing, gradients, converters and their errors."""

from __future__ import annotations

import pickle
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from disentangle_jax.third_party import vggface2
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError
from disentangle_jax.third_party.vggface2.preprocess import reference_preprocess
from tests import recipe

SET = "vggface2_resnet50"
SMOKE = vggface2.Config(width=8, layers=(1, 1, 1, 1), input_size=64, proj_dim=16)


def _atol(output: str) -> float:
  return recipe.meta(SET)["suggested_atol"][output]


@pytest.fixture(scope="module")
def fixture_npz(tmp_path_factory) -> str:
  """The rebuilt full-size set C state_dict as an `.npz`, the format `convert` reads with no torch."""
  path = tmp_path_factory.mktemp("vggface2") / "resnet50.npz"
  np.savez(path, **recipe.state_dict(SET))
  return str(path)


def test_full_size_parity_with_upstream(fixture_npz):
  """One batch-2 forward of the full ResNet-50 reproduces upstream's pooled features and logits."""
  io = recipe.io(SET)
  net = vggface2.load(fixture_npz)
  assert net.config == vggface2.Config(num_classes=8631)
  out = vggface2.features(net, jnp.asarray(io["input"].transpose(0, 2, 3, 1)))
  np.testing.assert_allclose(np.asarray(out["pool"]), io["features"][:, :, 0, 0], rtol=0, atol=_atol("features"))
  np.testing.assert_allclose(np.asarray(out["logits"]), io["logits"], rtol=0, atol=_atol("logits"))


def test_caffe_normalize_reproduces_fixture_input():
  io = recipe.io(SET)
  got = np.asarray(vggface2.caffe_normalize(io["image_rgb_uint8"]))
  np.testing.assert_allclose(got, io["input"].transpose(0, 2, 3, 1), rtol=0, atol=2e-5)


@pytest.mark.parametrize("size,input_size", [(256, 224), (32, 64), (1024, 224)])
def test_preprocess_matches_float64_reference(size, input_size):
  """Central 80% crop, bilinear resize (half-pixel, no antialias), centre crop, BGR minus mean."""
  images = np.random.RandomState(size).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
  got = np.asarray(vggface2.preprocess(jnp.asarray(images), input_size))
  want = reference_preprocess(images, input_size)
  assert got.shape == (2, input_size, input_size, 3)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)  # float32 resize weights on a 0..255 range


def test_preprocess_of_flat_colour_is_its_bgr_minus_mean():
  rgb = np.array([0.2, -0.4, 0.9], np.float32)
  images = np.broadcast_to(rgb, (1, 256, 256, 3))
  got = np.asarray(vggface2.preprocess(jnp.asarray(images)))
  want = (rgb[::-1] + 1) * 127.5 - np.asarray(vggface2.MEAN_BGR)
  np.testing.assert_allclose(got, np.broadcast_to(want, got.shape), rtol=0, atol=1e-4)


def test_full_size_shapes_match_the_released_checkpoint():
  """Every key/shape of upstream `resnet50(num_classes=8631)` maps one-to-one onto a Flax variable."""
  manifest = {k: v for k, v in recipe.manifest(SET).items() if not k.endswith("num_batches_tracked")}
  assert vggface2.expected_state_dict(vggface2.Config(num_classes=8631)) == manifest
  assert vggface2.expected_state_dict(vggface2.FULL) == {k: v for k, v in manifest.items() if not k.startswith("fc.")}


def test_smoke_config_outputs_and_round_trip(tmp_path):
  net = vggface2.init(SMOKE, seed=3)
  images = jnp.asarray(np.random.RandomState(0).uniform(-1, 1, (2, 48, 48, 3)), jnp.float32)
  for head, dim in (("pool", SMOKE.feature_dim), ("proj", 16)):
    emb = np.asarray(vggface2.embed(net, images, head=head))
    assert emb.shape == (2, dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-5)
  # .npz export -> convert -> converted dir -> load gives the same network.
  npz = tmp_path / "smoke.npz"
  np.savez(npz, **vggface2.to_numpy_state_dict(net))
  vggface2.convert_to(str(npz), str(tmp_path / "conv"))
  back = vggface2.load(str(tmp_path / "conv"), input_size=64)
  assert back.config == SMOKE
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(back)), nnx.to_pure_dict(nnx.state(net)))


def test_input_size_224_global_mean_equals_avgpool7():
  """At 224 the last map is 7x7, so the global mean is upstream's AvgPool2d(7)."""
  module = vggface2.Module(vggface2.Config(width=4, layers=(1, 1, 1, 1)), rngs=nnx.Rngs(1))
  x = jnp.asarray(np.random.RandomState(1).normal(0, 50, (1, 224, 224, 3)), jnp.float32)
  h = jax.nn.relu(module.bn1(module.conv1(x)))
  from disentangle_jax.third_party.common import layers  # pylint: disable=import-outside-toplevel

  h = layers.max_pool(h, 3, 2, ceil_mode=True)
  assert h.shape[1:3] == (56, 56)
  for s in range(4):
    h = getattr(module, f"layer{s + 1}")(h)
  assert h.shape[1:3] == (7, 7)
  avg7 = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 7, 7, 1), (1, 1, 1, 1), "VALID")[:, 0, 0] / 49
  np.testing.assert_allclose(np.asarray(module.features(x)["pool"]), np.asarray(avg7), rtol=1e-5, atol=1e-6)


def test_embed_gradient_matches_finite_differences():
  """d<embed(x), r>/dx along a random direction, by autodiff and by central differences in float64."""
  with jax.enable_x64(True):
    module = vggface2.Module(SMOKE, rngs=nnx.Rngs(5))
    state = nnx.state(module)
    nnx.update(module, jax.tree.map(lambda v: v.astype(jnp.float64), state))
    rng = np.random.RandomState(2)
    x = jnp.asarray(rng.uniform(-0.9, 0.9, (1, 40, 40, 3)))
    r = jnp.asarray(rng.normal(size=(1, SMOKE.feature_dim)))
    v = rng.normal(size=x.shape)
    v = jnp.asarray(v / np.linalg.norm(v))  # a unit step: a tiny h then crosses (almost) no ReLU / max-pool kink

    # One compiled function serves both sides (compiling dominates): values at x +- h v, gradient at x.
    value_and_grad = jax.jit(jax.value_and_grad(lambda img: jnp.sum(module.embed(img) * r)))
    analytic = jnp.vdot(value_and_grad(x)[1], v)
    h = 1e-6
    numeric = (value_and_grad(x + h * v)[0] - value_and_grad(x - h * v)[0]) / (2 * h)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5)


def test_missing_key_names_it(tmp_path):
  sd = vggface2.to_numpy_state_dict(vggface2.init(SMOKE, seed=0))
  del sd["layer2.0.bn2.running_var"]
  path = tmp_path / "missing.npz"
  np.savez(path, **sd)
  with pytest.raises(CheckpointMismatchError, match=r"layer2\.0\.bn2\.running_var"):
    vggface2.convert(str(path))


def test_misshaped_key_names_it(tmp_path):
  sd = vggface2.to_numpy_state_dict(vggface2.init(SMOKE, seed=0))
  sd["layer3.0.conv2.weight"] = sd["layer3.0.conv2.weight"][:, :, :2]
  path = tmp_path / "bad.npz"
  np.savez(path, **sd)
  with pytest.raises(CheckpointMismatchError, match=r"layer3\.0\.conv2\.weight"):
    vggface2.convert(str(path))


def test_truncated_files_raise_format_errors(tmp_path):
  sd = vggface2.to_numpy_state_dict(vggface2.init(SMOKE, seed=0))
  pkl = tmp_path / "weights.pkl"
  pkl.write_bytes(pickle.dumps(sd, protocol=2))
  cut = tmp_path / "cut.pkl"
  cut.write_bytes(pkl.read_bytes()[:5000])
  with pytest.raises(CheckpointFormatError, match="cut.pkl"):
    vggface2.convert(str(cut))
  npz = tmp_path / "cut.npz"
  np.savez(tmp_path / "full.npz", **sd)
  npz.write_bytes((tmp_path / "full.npz").read_bytes()[:3000])
  with pytest.raises(CheckpointFormatError, match="cut.npz"):
    vggface2.convert(str(npz))


def _py2_pickle(arrays: dict[str, np.ndarray]) -> bytes:
  """A protocol-2 pickle as Python 2 + numpy wrote it: keys and array bytes as (byte) `str`, which only
  unpickle with `encoding="latin1"` (how cydonia999's `resnet50_ft_weight.pkl` was written)."""

  def pystr(b: bytes) -> bytes:
    return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b

  def num(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)

  out = [b"\x80\x02}"]
  for key, a in arrays.items():
    a = np.ascontiguousarray(a, np.float32)
    out += [
      pystr(key.encode()),
      b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n",
      num(0),
      b"\x85",
      pystr(b"b"),
      b"\x87R",
      b"(",
      num(1),
      b"(",
      *[num(d) for d in a.shape],
      b"t",
      b"cnumpy\ndtype\n",
      pystr(b"f4"),
      num(0),
      num(1),
      b"\x87R",
      b"(",
      num(3),
      pystr(b"<"),
      b"NNN",
      num(-1),
      num(-1),
      num(0),
      b"tb",
      b"\x89",
      pystr(a.tobytes()),
      b"tbs",
    ]
  return b"".join(out) + b"."


def test_python2_pickle_of_numpy_arrays_without_counters(tmp_path):
  """cydonia999's .pkl layout: Python 2 pickle of numpy arrays, state_dict names, no num_batches_tracked."""
  net = vggface2.init(vggface2.Config(width=8, layers=(1, 1, 1, 1), input_size=64, num_classes=5), seed=1)
  sd = vggface2.to_numpy_state_dict(net)
  path = tmp_path / "resnet50_ft_weight.pkl"
  path.write_bytes(_py2_pickle(sd))
  with pytest.raises(UnicodeDecodeError):  # what a plain Python 3 unpickler makes of it
    pickle.loads(path.read_bytes())
  config, params = vggface2.convert(str(path))
  assert config == vggface2.Config(width=8, layers=(1, 1, 1, 1), num_classes=5)
  np.testing.assert_array_equal(params["fc"]["kernel"], sd["fc.weight"].T)
  np.testing.assert_array_equal(
    params["layer1"]["block0"]["downsample_conv"]["kernel"], sd["layer1.0.downsample.0.weight"].transpose(2, 3, 1, 0)
  )


def test_torch_zip_checkpoint_is_read_without_torch():
  """The set-A `.pt` is a real `torch.save` file: reading a ResNet from it must fail naming the keys, not crash."""
  with pytest.raises(CheckpointMismatchError, match="conv1.weight"):
    vggface2.convert(str(recipe.TESTDATA / "sg2ada_r32_weights.pt"))


def test_converted_dir_refuses_other_network(tmp_path):
  converted.save(tmp_path / "other", "fan", {}, {"a": np.zeros(1)})
  with pytest.raises(ValueError, match="fan"):
    vggface2.load(str(tmp_path / "other"))


def test_random_proj_head_needs_an_explicit_seed(tmp_path):
  config = vggface2.Config(width=8, layers=(1, 1, 1, 1), input_size=64)
  path = tmp_path / "noproj.npz"
  np.savez(path, **vggface2.to_numpy_state_dict(vggface2.init(config, seed=0)))
  with pytest.raises(ValueError, match="seed"):
    vggface2.load(str(path), proj_dim=16, input_size=64)
  net = vggface2.load(str(path), proj_dim=16, seed=4, input_size=64)
  assert net.config == SMOKE
  assert net.proj.kernel[...].shape == (SMOKE.feature_dim, 16)


KERAS = vggface2.Config(width=8, layers=(1, 2, 1, 1), input_size=64, proj_dim=16, num_classes=5, flavor="keras")


def _write_keras_h5(path, sd: dict[str, np.ndarray], config: vggface2.Config) -> None:
  """A Keras-2 HDF5 full-model file (`model_weights` group, `layer_names` / `weight_names` attributes)."""
  import h5py  # pylint: disable=import-outside-toplevel

  layers = [("conv1/7x7_s2", "conv1"), ("conv1/7x7_s2/bn", "bn1"), ("activation_1", None)]
  for s, blocks in enumerate(config.layers):
    for b in range(blocks):
      kinds = [("1x1_reduce", "conv1", "bn1"), ("3x3", "conv2", "bn2"), ("1x1_increase", "conv3", "bn3")]
      if b == 0:
        kinds.append(("1x1_proj", "downsample.0", "downsample.1"))
      for kind, conv, bn in kinds:
        layers += [
          (f"conv{s + 2}_{b + 1}_{kind}", f"layer{s + 1}.{b}.{conv}"),
          (f"conv{s + 2}_{b + 1}_{kind}/bn", f"layer{s + 1}.{b}.{bn}"),
        ]
  layers += [("avg_pool", None), ("dim_proj", "dim_proj"), ("classifier_low_dim", "fc")]
  bn_leaves = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
  with h5py.File(path, "w") as f:
    root = f.create_group("model_weights")
    for name, torch_name in layers:
      group = root.require_group(name)
      arrays = {}
      if torch_name and f"{torch_name}.running_mean" in sd:
        arrays = {leaf: sd[f"{torch_name}.{t}"] for leaf, t in bn_leaves.items()}
      elif torch_name:
        w = sd[f"{torch_name}.weight"]
        arrays["kernel"] = w.transpose(2, 3, 1, 0) if w.ndim == 4 else w.T
        if f"{torch_name}.bias" in sd:
          arrays["bias"] = sd[f"{torch_name}.bias"]
      names = []
      for leaf, array in arrays.items():
        group.create_dataset(f"{name}/{leaf}:0", data=array)
        names.append(f"{name}/{leaf}:0".encode())
      group.attrs["weight_names"] = names
    root.attrs["layer_names"] = [n.encode() for n, _ in layers]


def test_keras_h5_converter(tmp_path):
  """The Keras model's .h5: names from the file's attributes, Keras layouts, flavor-specific architecture."""
  net = vggface2.init(KERAS, seed=8)
  sd = vggface2.to_numpy_state_dict(net)
  assert "fc.bias" not in sd and sd["fc.weight"].shape == (5, 16)  # classifier_low_dim: bias-free, on dim_proj
  _write_keras_h5(tmp_path / "weights.h5", sd, KERAS)
  config, params = vggface2.convert(str(tmp_path / "weights.h5"))
  assert config == vggface2.Config(width=8, layers=(1, 2, 1, 1), proj_dim=16, num_classes=5, flavor="keras")
  want = nnx.to_pure_dict(nnx.state(net))
  jax.tree.map(np.testing.assert_array_equal, params, jax.tree.map(np.asarray, want))


def test_keras_flavor_stem_and_eps():
  """TF "same" stem padding and a floor-mode max-pool: 224 -> 112 -> 55 (Caffe's ceil mode gives 56)."""
  keras = vggface2.Module(vggface2.Config(width=4, layers=(1, 1, 1, 1), flavor="keras"), rngs=nnx.Rngs(0))
  caffe = vggface2.Module(vggface2.Config(width=4, layers=(1, 1, 1, 1)), rngs=nnx.Rngs(0))
  x = jnp.zeros((1, 224, 224, 3))
  from disentangle_jax.third_party.common import layers  # pylint: disable=import-outside-toplevel

  assert layers.max_pool(keras.conv1(x), 3, 2).shape[1:3] == (55, 55)
  assert layers.max_pool(caffe.conv1(x), 3, 2, ceil_mode=True).shape[1:3] == (56, 56)
  assert keras.bn1.epsilon == 1e-3 and caffe.bn1.epsilon == 1e-5


def test_non_keras_h5_is_a_format_error(tmp_path):
  import h5py  # pylint: disable=import-outside-toplevel

  with h5py.File(tmp_path / "x.h5", "w") as f:
    f.create_dataset("a", data=np.zeros(3))
  with pytest.raises(CheckpointFormatError, match="layer_names"):
    vggface2.convert(str(tmp_path / "x.h5"))
  (tmp_path / "cut.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
  with pytest.raises(CheckpointFormatError, match="cut.h5"):
    vggface2.convert(str(tmp_path / "cut.h5"))


def _keras_vggface2(width: int, layers: tuple[int, ...], proj_dim: int, num_classes: int):
  """WeidiXie's Keras `Vggface2_ResNet50` structure (names, paddings, strides) at a small width, built in Keras 3.

  Returns a model with outputs (flattened 7x7 average pool, dim_proj, classifier logits before the softmax).
  Keras 3 refuses "/" in layer names, so "/" is spelled "__" here and restored in the written file.
  """
  import keras  # pylint: disable=import-outside-toplevel
  from keras import layers as kl  # pylint: disable=import-outside-toplevel

  def bn(x, name):
    return kl.BatchNormalization(axis=3, name=name.replace("/", "__"))(x)

  def block(x, planes, stage, b, strides, project):
    p = f"conv{stage}_{b}"
    y = kl.Conv2D(planes, 1, strides=strides, use_bias=False, name=f"{p}_1x1_reduce")(x)
    y = kl.Activation("relu")(bn(y, f"{p}_1x1_reduce/bn"))
    y = kl.Conv2D(planes, 3, padding="same", use_bias=False, name=f"{p}_3x3")(y)
    y = kl.Activation("relu")(bn(y, f"{p}_3x3/bn"))
    y = bn(kl.Conv2D(planes * 4, 1, use_bias=False, name=f"{p}_1x1_increase")(y), f"{p}_1x1_increase/bn")
    if project:
      x = bn(kl.Conv2D(planes * 4, 1, strides=strides, use_bias=False, name=f"{p}_1x1_proj")(x), f"{p}_1x1_proj/bn")
    return kl.Activation("relu")(kl.add([y, x]))

  inputs = keras.Input((224, 224, 3))
  x = kl.Conv2D(width, 7, strides=2, padding="same", use_bias=False, name="conv1__7x7_s2")(inputs)
  x = kl.Activation("relu")(bn(x, "conv1/7x7_s2/bn"))
  x = kl.MaxPooling2D(3, strides=2)(x)
  for s, n in enumerate(layers):
    for b in range(n):
      x = block(x, width * 2**s, s + 2, b + 1, (1 if s == 0 or b else 2), b == 0)
  pool = kl.Flatten()(kl.AveragePooling2D(7, name="avg_pool")(x))
  proj = kl.Dense(proj_dim, activation="relu", name="dim_proj")(pool)
  logits = kl.Dense(num_classes, use_bias=False, name="classifier_low_dim")(proj)
  return keras.Model(inputs, [pool, proj, logits])


def test_keras_h5_written_by_keras_matches_the_keras_model(tmp_path):
  """Keras itself writes the legacy HDF5 file and runs the model: the converted port reproduces its outputs."""
  import h5py  # pylint: disable=import-outside-toplevel
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=import-outside-toplevel

  model = _keras_vggface2(8, (1, 1, 1, 1), 16, 5)
  rng = np.random.RandomState(9)
  for layer in model.layers:  # non-trivial BatchNorm statistics, so eps and every stored array matter
    if layer.__class__.__name__ == "BatchNormalization":
      n = layer.get_weights()[0].shape[0]
      layer.set_weights(
        [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.5, n), rng.uniform(0.5, 2.0, n)]
      )
  with h5py.File(tmp_path / "keras.h5", "w") as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)
  with h5py.File(tmp_path / "keras.h5", "r") as src, h5py.File(tmp_path / "weights.h5", "w") as dst:
    layer_names = []
    for layer in src.attrs["layer_names"]:
      layer = layer.decode() if isinstance(layer, bytes) else layer
      group, names = dst.create_group(layer.replace("__", "/")), []
      for name in src[layer].attrs["weight_names"]:
        name = name.decode() if isinstance(name, bytes) else name
        group.create_dataset(name.replace("__", "/"), data=src[layer][name][()])
        names.append(name.replace("__", "/").encode())
      group.attrs["weight_names"] = names
      layer_names.append(layer.replace("__", "/").encode())
    dst.attrs["layer_names"] = layer_names
  x = rng.normal(0, 40, (2, 224, 224, 3)).astype(np.float32)
  want = [np.asarray(o) for o in model(x)]
  net = vggface2.load(str(tmp_path / "weights.h5"))
  assert net.config == vggface2.Config(width=8, layers=(1, 1, 1, 1), proj_dim=16, num_classes=5, flavor="keras")
  got = vggface2.features(net, jnp.asarray(x))
  for name, ref in zip(("pool", "proj", "logits"), want):
    np.testing.assert_allclose(np.asarray(got[name]), ref, rtol=0, atol=1e-4 * max(1.0, np.abs(ref).max()))
