"""The original TF2 release's weight files load: E_attr, M and D_W reproduce the authors' Keras models.

Fixtures (`tests/make_official_fixtures.py`): the official classes run with weights drawn from a fixed numpy seed
(`tests/official_weights.py`); the files are rebuilt here from their recorded layout and the same seed. Tolerances
are float32 round-off over the networks' depth, relative to the outputs' scale (measured: InceptionV3 pooled
features 7.6e-6 on values up to 16.9; M 3.9e-6 on values up to 5.1; D_W 1.2e-7 on logits up to 1.7).
"""

from __future__ import annotations

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from disentangle_jax import errors
from disentangle_jax import trees
from disentangle_jax.nets import discriminator
from disentangle_jax.nets import inception
from disentangle_jax.nets import mapper
from disentangle_jax.third_party.common import keras_h5
from tests import official_weights as ow


@pytest.fixture(scope="module")
def attr_h5(tmp_path_factory):
  return ow.write_h5("AttrEncoder", tmp_path_factory.mktemp("official") / "AttrEncoder_best_id_epoch_3.h5")


@pytest.fixture(scope="module")
def release(attr_h5, tmp_path_factory):
  """A folder in the release layout (G: the 8 px TF-format synthesis checkpoint) and its InferenceModel."""
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel
  from disentangle_jax import official  # pylint: disable=import-outside-toplevel

  folder = tmp_path_factory.mktemp("release")
  (folder / attr_h5.name).write_bytes(attr_h5.read_bytes())
  ow.write_h5("LatentMappingNetwork", folder / "LatentMappingNetwork_best_id_epoch_3.h5")
  ow.write_h5("W_D", folder / "W_D_best_id_epoch_3.h5")
  ow.write_tf_checkpoint("stylegan_G_8x8_synthesis", folder / "stylegan_G_8x8_synthesis")
  config, trained, attr_arch = official.read(folder, _release_config())
  return folder, inference.build(config, trained, source=str(folder), attr_encoder_config=attr_arch)


def test_attr_encoder_matches_keras_inception(attr_h5, release):
  """[-1, 1] images at 256 px (resized to 299 inside) -> the Keras model's pooled 2048-d feature.

  Run through the release model's `encode` (its code is concat(E_id, E_attr)), so the tests compile InceptionV3
  once for both; `inception.load` of the same file gives the same module (both go through `inception.convert`).
  """
  assert inception.load(attr_h5).config == inception.KERAS
  model = release[1]
  assert model.trainable.attr_encoder.config == inception.KERAS
  io = np.load(ow.DIR / "AttrEncoder_io.npz")
  code, _ = model.encode(io["images_uint8"], io["images_uint8"])  # uint8 -> [-1, 1] inside
  np.testing.assert_allclose(np.asarray(code)[:, 512:], io["pooled"], rtol=0, atol=5e-5)


def test_mapper_matches_keras(tmp_path):
  io = np.load(ow.DIR / "LatentMappingNetwork_io.npz")
  module = mapper.load(ow.write_h5("LatentMappingNetwork", tmp_path / "LatentMappingNetwork_best.h5"))
  np.testing.assert_allclose(np.asarray(module(io["x"])), io["y"], rtol=0, atol=5e-5)


def test_discriminator_matches_keras(tmp_path):
  io = np.load(ow.DIR / "W_D_io.npz")
  module = discriminator.load(ow.write_h5("W_D", tmp_path / "W_D.h5"))
  np.testing.assert_allclose(np.asarray(module(io["x"]))[:, None], io["y"], rtol=0, atol=1e-5)


def test_keras_pool_excludes_padding():
  x = jnp.ones((1, 4, 4, 1))
  np.testing.assert_allclose(np.asarray(inception.layers.avg_pool_3x3_same(x, False)), 1.0, rtol=0, atol=1e-7)
  torch_style = np.asarray(inception.layers.avg_pool_3x3_same(x, True))[0, :, :, 0]
  assert torch_style[0, 0] == pytest.approx(4 / 9) and torch_style[1, 1] == pytest.approx(1.0)


def test_torchvision_weights_see_minus_one_one_inputs(tmp_path):
  """torchvision's `transform_input=True` maps its mean/std-normalised input back to (x - 0.5) / 0.5, i.e. the
  [-1, 1] image: converted torchvision weights are recorded with input_norm="minus_one_one" and fed the image as
  is. The torchvision fixture ran its layers on `input` directly, i.e. as transform_input=True would on the image
  whose [-1, 1] form is `input` (torch is not installed here, so this identity stands in for a second fixture)."""
  from tests import recipe  # pylint: disable=import-outside-toplevel
  from tests import torch_writer  # pylint: disable=import-outside-toplevel

  path = tmp_path / "tv.pth"
  torch_writer.save(recipe.state_dict("tv_inception_v3"), str(path))
  config, _ = inception.convert(str(path))
  assert config.input_norm == "minus_one_one" and config.bn_scale and config.pool_count_include_pad
  io = recipe.io("tv_inception_v3")
  x = io["input"].transpose(0, 2, 3, 1)
  abstract = inception.nnx.eval_shape(lambda: inception.Inception(config, rngs=inception.nnx.Rngs(0)))
  np.testing.assert_array_equal(np.asarray(abstract.preprocess(jnp.asarray(x))), x)
  # transform_input=True applied to the normalised version of that image gives back the same network input.
  mean, std = np.asarray(inception.IMAGENET_MEAN), np.asarray(inception.IMAGENET_STD)
  normalised = ((x + 1) / 2 - mean) / std
  transformed = normalised * (std / 0.5) + (mean - 0.5) / 0.5
  np.testing.assert_allclose(transformed, x, rtol=0, atol=1e-5)


# --- errors: each names the file, the layer and the weight at fault ------------------------------------------------


def _assert_user_error(exc_info, *parts):
  assert isinstance(exc_info.value, errors.UserError)
  for part in parts:
    assert part in str(exc_info.value), (part, str(exc_info.value))


def test_truncated_h5_is_named(tmp_path, attr_h5):
  data = attr_h5.read_bytes()
  bad = tmp_path / "AttrEncoder.h5"
  bad.write_bytes(data[: len(data) // 3])
  with pytest.raises(ValueError) as e:
    inception.load(bad)
  _assert_user_error(e, str(bad))


def test_h5_of_another_network_is_refused(tmp_path):
  w_d = ow.write_h5("W_D", tmp_path / "W_D.h5")
  with pytest.raises(ValueError) as e:
    inception.load(w_d)
  _assert_user_error(e, str(w_d), "4 layers with weights", "188", "not an AttrEncoder.h5")
  mapping = ow.write_h5("LatentMappingNetwork", tmp_path / "LatentMappingNetwork.h5")
  with pytest.raises(ValueError) as e:
    discriminator.load(mapping)
  _assert_user_error(e, str(mapping), "512 outputs")


def test_dense_layer_count_mismatch_is_named(tmp_path):
  lay = ow.layout("W_D")
  layers = [l for l in ow.arrays(lay, 0) if l[1]][:3]
  path = tmp_path / "W_D_short.h5"
  keras_h5.write(path, layers)
  with pytest.raises(ValueError) as e:
    discriminator.load(path)
  _assert_user_error(e, str(path), "3 layers with weights", "W_D has 4 Dense layers")


def test_wrong_kind_and_shape_name_layer_and_weight(tmp_path, attr_h5):
  bad = tmp_path / "AttrEncoder_bad.h5"
  bad.write_bytes(attr_h5.read_bytes())
  with h5py.File(bad, "r+") as f:
    name = "conv2d_5/kernel:0"
    del f["conv2d_5"][name]
    f["conv2d_5"].create_dataset(name, data=np.zeros((1, 1, 192, 65), np.float32))
  with pytest.raises(ValueError) as e:
    inception.load(bad)
  _assert_user_error(e, str(bad), "'conv2d_5'", "'conv2d_5/kernel:0'", "(1, 1, 192, 65)", "(1, 1, 192, 64)")
  with h5py.File(bad, "r+") as f:
    f["conv2d_5"].attrs["weight_names"] = np.array([b"conv2d_5/bias:0"])
  with pytest.raises(ValueError) as e:
    inception.load(bad)
  _assert_user_error(e, str(bad), "'conv2d_5'", "conv2d_5/bias:0", "missing or unreadable")


def test_dense_chain_mismatch_names_layer_and_weight(tmp_path):
  layers = [l for l in ow.arrays(ow.layout("W_D"), 0) if l[1]]
  name, ((kname, kernel), bias) = layers[1]
  layers[1] = (name, [(kname, kernel[:100]), bias])
  path = tmp_path / "W_D.h5"
  keras_h5.write(path, layers)
  with pytest.raises(ValueError) as e:
    discriminator.load(path)
  _assert_user_error(e, str(path), repr(name), repr(kname), "takes 100 inputs", "gives 256")


# --- G: StyleGAN v1 synthesis from the TF-format checkpoint the original loads ---------------------------------------


def test_stylegan1_tf_checkpoint_matches_official_synthesis(tmp_path):
  """`StyleGAN_G_synthesis(8)` saved with `save_weights(prefix)` (the release's `stylegan_G_256x256_synthesis`
  format, at 8 px to stay small) -> our generator renders the official output (measured error 2e-7)."""
  from disentangle_jax.third_party import stylegan1  # pylint: disable=import-outside-toplevel

  pytest.importorskip("tensorflow")
  prefix = ow.write_tf_checkpoint("stylegan_G_8x8_synthesis", tmp_path / "stylegan_G_8x8_synthesis")
  for path in (prefix, str(prefix) + ".index"):
    g = stylegan1.load(str(path))
    assert g.config.resolution == 8
  io = np.load(ow.DIR / "stylegan_G_8x8_synthesis_io.npz")
  got = np.asarray(stylegan1.synthesis(g, jnp.asarray(io["ws"]), noise_mode="const"))
  np.testing.assert_allclose(got, io["images"], rtol=0, atol=1e-5)


def test_unreadable_tf_checkpoint_is_named(tmp_path):
  from disentangle_jax.third_party import stylegan1  # pylint: disable=import-outside-toplevel

  pytest.importorskip("tensorflow")
  (tmp_path / "g.index").write_bytes(b"not a checkpoint")
  with pytest.raises(ValueError) as e:
    stylegan1.load(str(tmp_path / "g"))
  _assert_user_error(e, str(tmp_path / "g"), "not a readable TF-format checkpoint")


# --- the release folder: disentangle_jax.load and `convert official` -------------------------------------------------


def _release_config():
  """The smoke config with E_id's projection at the original's 512 (M takes 512 + 2048): G comes from the folder."""
  from configs import smoke  # pylint: disable=import-outside-toplevel

  config = smoke.get_config()
  config.id_encoder.arch.proj_dim = 512
  config.id_encoder.head = "proj"
  return config


def test_release_folder_loads_swaps_and_exports(tmp_path, release):
  import disentangle_jax  # pylint: disable=import-outside-toplevel
  from disentangle_jax.cli import convert as convert_cli  # pylint: disable=import-outside-toplevel

  folder, model = release
  assert model.resolution == 8 and model.code_dim == 2560 and model.w_dim == 512
  io = np.load(ow.DIR / "AttrEncoder_io.npz")
  images = io["images_uint8"]
  code, w = model.encode(images, images)
  np.testing.assert_allclose(np.asarray(code)[:, 512:], io["pooled"], rtol=0, atol=5e-5)
  m = mapper.load(folder / "LatentMappingNetwork_best_id_epoch_3.h5")
  np.testing.assert_allclose(np.asarray(w), np.asarray(m(code)), rtol=0, atol=1e-5)
  out = np.asarray(model.swap(images, images))
  assert out.shape == (2, 8, 8, 3) and np.isfinite(out).all()
  np.testing.assert_allclose(np.asarray(model.render(w)), out, rtol=0, atol=1e-5)
  # The export written from the release reads back through disentangle_jax.load with the same outputs.
  dst = tmp_path / "export"
  from disentangle_jax import export  # pylint: disable=import-outside-toplevel

  export.export_model(model, dst)
  back = disentangle_jax.load(dst)  # same networks and parameters (compared directly: no third compile)
  assert back.trainable.attr_encoder.config == inception.KERAS and back.spec == model.spec
  jax.tree.map(
    np.testing.assert_array_equal, trees.to_numpy(nnx.state(back.trainable)), trees.to_numpy(nnx.state(model.trainable))
  )
  assert "official" in convert_cli.NETWORKS


def test_release_folder_errors_are_named(tmp_path):
  from disentangle_jax import official  # pylint: disable=import-outside-toplevel

  ow.write_h5("W_D", tmp_path / "AttrEncoder_a.h5")
  with pytest.raises(ValueError) as e:
    official.find(tmp_path)
  _assert_user_error(e, str(tmp_path), "no LatentMappingNetwork*.h5")
  ow.write_h5("W_D", tmp_path / "AttrEncoder_b.h5")
  ow.write_h5("LatentMappingNetwork", tmp_path / "LatentMappingNetwork.h5")
  with pytest.raises(ValueError) as e:
    official.find(tmp_path)
  _assert_user_error(e, "several AttrEncoder*.h5", "AttrEncoder_a.h5, AttrEncoder_b.h5")
