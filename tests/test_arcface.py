"""ArcFace IR-SE50: parity with TreB1eN/InsightFace_Pytorch and pSp's identity crop (fixture set
`arcface_ir_se50`, `tests/make_arcface_fixtures.py`), the crop at other sizes, converters and their errors, and
ArcFace as E_id in the training step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from disentangle_jax import config_check
from disentangle_jax import errors
from disentangle_jax import model as model_lib
from disentangle_jax import train_step as step_lib
from disentangle_jax.cli import convert as convert_cli
from disentangle_jax.configs import paper
from disentangle_jax.configs import smoke
from disentangle_jax.third_party import arcface
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError
from tests import metric_weights
from tests import recipe
from tests import torch_writer

SET = "arcface_ir_se50"
# Tiny, but at the real geometry: 112 px input, four stride-2 stages, a 7x7 map flattened into the linear layer.
TINY = arcface.Config(stem_width=8, widths=(8, 16, 24, 32), units=(1, 2, 1, 1), se_reduction=4, embedding_dim=16)


def _images(name: str) -> np.ndarray:
  """A fixture input image batch, regenerated from its seed, in the generator's [-1, 1] range."""
  info = recipe.meta(SET)["images"][name]
  u8 = recipe.generated_image(info["seed"], info["index"], info["shape"])
  assert int(u8.sum()) == info["uint8_sum"], "numpy's generator no longer reproduces the fixture images"
  return u8.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


def _atol(output: str) -> float:
  return recipe.meta(SET)["suggested_atol"][output]


def _random_net(tmp_path, config: arcface.Config, seed: int) -> arcface.ArcFace:
  path = tmp_path / f"random_{seed}.npz"
  np.savez(path, **metric_weights.arcface_state_dict(config, seed))
  return arcface.load(path)


@pytest.fixture(scope="module")
def fixture_net(tmp_path_factory) -> arcface.ArcFace:
  """The fixture's full-size state_dict written as a legacy-format torch file (as `model_ir_se50.pth` is), loaded
  through the public `load`."""
  path = tmp_path_factory.mktemp("arcface") / "model_ir_se50.pth"
  torch_writer.save_legacy(recipe.state_dict(SET), str(path))
  return arcface.load(path)


def test_full_size_parity_with_upstream_and_psp_crop(fixture_net):
  """Pre-normalisation features within 2e-4 (values up to ~7), unit embeddings within 1e-5, of upstream's float32
  outputs (measured: 1.3e-5 and 5e-7); pSp's crop + AdaptiveAvgPool2d of a 256 px image within 1e-6."""
  io = recipe.io(SET)
  assert fixture_net.config == arcface.IR_SE50
  pooled = np.asarray(arcface.preprocess(fixture_net, jnp.asarray(_images("image_256"))))
  np.testing.assert_allclose(pooled, io["psp_input"].transpose(0, 2, 3, 1), rtol=0, atol=_atol("psp_input"))
  # One batch (one compilation) holds the two 112 px images and the pooled 256 px one.
  x = jnp.asarray(np.concatenate([_images("image_112"), pooled]))
  features = np.asarray(arcface.features(fixture_net, x))
  np.testing.assert_allclose(features[:2], io["features"], rtol=0, atol=_atol("features"))
  embedding = features / np.linalg.norm(features, axis=-1, keepdims=True)
  np.testing.assert_allclose(embedding[:2], io["embedding"], rtol=0, atol=_atol("embedding"))
  np.testing.assert_allclose(embedding[2:], io["psp_embedding"], rtol=0, atol=_atol("psp_embedding"))
  # The outputs tell the images apart, so matching them is not matching a constant.
  assert float(io["embedding"][0] @ io["embedding"][1]) < 0.5


def test_full_size_keys_and_shapes_match_upstream():
  """Every key/shape of upstream `Backbone(50, 0.6, "ir_se")` maps one-to-one onto a variable of `Config()`."""
  upstream = {k: v.shape for k, v in recipe.state_dict(SET).items() if not k.endswith("num_batches_tracked")}
  assert arcface.expected_state_dict(arcface.IR_SE50) == upstream
  assert upstream["output_layer.3.weight"] == (512, 512 * 7 * 7)


def test_crop_box_is_psp_at_256_and_scales():
  assert arcface.crop_box(256, 256) == (35, 223, 32, 220)
  assert arcface.crop_box(1024, 1024) == (140, 892, 128, 880)
  assert arcface.crop_box(512, 256) == (70, 446, 32, 220)


def _adaptive_avg_pool(x: np.ndarray, size: int) -> np.ndarray:
  """PyTorch's AdaptiveAvgPool2d on NHWC in float64, window by window."""
  _, h, w, _ = x.shape
  out = np.zeros((x.shape[0], size, size, x.shape[3]))
  for i in range(size):
    r0, r1 = (i * h) // size, -(-((i + 1) * h) // size)
    for j in range(size):
      c0, c1 = (j * w) // size, -(-((j + 1) * w) // size)
      out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  return out


def test_embed_of_256_images_equals_embedding_the_explicit_crop(tmp_path):
  """embed(256 px) = embed(x[:, 35:223, 32:220] area-pooled to 112); 112 px images are used as they are."""
  net = _random_net(tmp_path, TINY, seed=0)
  images = np.random.RandomState(0).uniform(-1, 1, (2, 256, 256, 3)).astype(np.float32)
  reference = _adaptive_avg_pool(images[:, 35:223, 32:220].astype(np.float64), 112).astype(np.float32)
  np.testing.assert_allclose(np.asarray(arcface.preprocess(net, jnp.asarray(images))), reference, rtol=0, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(net.preprocess(jnp.asarray(reference))), reference)
  emb = np.asarray(arcface.embed(net, jnp.asarray(images)))
  assert emb.shape == (2, 16)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=-1), 1.0, atol=1e-6)
  np.testing.assert_allclose(emb, np.asarray(arcface.embed(net, jnp.asarray(reference))), rtol=0, atol=1e-5)
  features = np.asarray(arcface.features(net, jnp.asarray(reference)))
  np.testing.assert_allclose(emb, features / np.linalg.norm(features, axis=-1, keepdims=True), rtol=0, atol=1e-5)


@pytest.mark.parametrize("se_reduction", [4, 0])  # upstream mode "ir_se" and "ir"
def test_tiny_round_trip_infers_the_config(tmp_path, se_reduction):
  """Upstream-named .npz -> `disentangle-jax convert arcface` (architecture from the keys) -> load: same network."""
  config = arcface.Config(**{**TINY.to_dict(), "se_reduction": se_reduction, "input_size": 32})
  net = _random_net(tmp_path, config, seed=1)
  assert net.config == config
  npz = tmp_path / "tiny.npz"
  np.savez(npz, **arcface.to_numpy_state_dict(net))
  convert_cli.main(["convert", "arcface", str(npz), str(tmp_path / "converted")])
  back = arcface.load(tmp_path / "converted")
  assert back.config == config
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(back)), nnx.to_pure_dict(nnx.state(net)))


def test_input_and_head_errors(tmp_path):
  net = _random_net(tmp_path, arcface.Config(**{**TINY.to_dict(), "input_size": 32}), seed=0)
  with pytest.raises(ValueError, match="head"):
    net.embed(jnp.zeros((1, 32, 32, 3)), head="logits")
  with pytest.raises(ValueError, match=r"\[B, 32, 32, 3\]"):
    net.features(jnp.zeros((1, 64, 64, 3)))
  with pytest.raises(ValueError, match="widths"):
    arcface.Config(widths=(64, 64, 128, 256))


def _tiny_state_dict() -> dict[str, np.ndarray]:
  return metric_weights.arcface_state_dict(arcface.Config(**{**TINY.to_dict(), "input_size": 32}), seed=2)


def test_wrong_checkpoint_names_the_bad_key(tmp_path):
  missing = _tiny_state_dict()
  del missing["body.3.res_layer.4.running_var"]
  torch_writer.save(missing, str(tmp_path / "missing.pth"))
  with pytest.raises(CheckpointMismatchError, match=r"body\.3\.res_layer\.4\.running_var"):
    arcface.load(tmp_path / "missing.pth")
  misshaped = _tiny_state_dict()
  misshaped["body.2.res_layer.5.fc2.weight"] = misshaped["body.2.res_layer.5.fc2.weight"][:, :1]
  torch_writer.save(misshaped, str(tmp_path / "misshaped.pth"))
  with pytest.raises(CheckpointMismatchError, match=r"body\.2\.res_layer\.5\.fc2\.weight"):
    arcface.convert(tmp_path / "misshaped.pth")
  # Another network's checkpoint (a StyleGAN2 state_dict): refused naming the key ArcFace starts from.
  with pytest.raises(CheckpointMismatchError, match=r"input_layer\.0\.weight"):
    arcface.convert(recipe.TESTDATA / "sg2ada_r32_weights.pt")


def test_paper_preset_selects_arcface():
  config = paper.get_config("id_encoder=arcface")
  assert (config.id_encoder.kind, config.id_encoder.weights) == ("arcface", "weights/arcface_ir_se50")
  assert paper.get_config().id_encoder.kind == "vggface2"
  config_check.validate(config)
  config_check.validate(smoke.get_config("id_encoder=arcface"))
  with pytest.raises(errors.ConfigError, match="'vgg'"):
    paper.get_config("id_encoder=vgg")


def test_arcface_as_id_encoder_in_the_training_step():
  """`id_encoder=arcface` builds the composed model (M's input follows ArcFace's 16-d embedding) and the whole
  training step traces through it, gradients included (abstractly: `eval_shape`, nothing is computed)."""
  config = smoke.get_config("id_encoder=arcface")
  specs = {}

  def build():
    model = model_lib.build(config)
    specs["spec"] = model.spec
    return model.frozen, model.trainable

  frozen, trainable = nnx.eval_shape(build)
  spec = specs["spec"]
  assert isinstance(frozen.id_encoder, arcface.ArcFace) and spec.id_dim == 16
  assert trainable.mapper.layers[0].in_features == spec.id_dim + spec.attr_dim
  graphs, frozen_state, params, constants = step_lib.split_model(model_lib.Model(spec, frozen, trainable))
  optimizers = step_lib.make_optimizers(config.optim)
  state = jax.eval_shape(lambda p, c: step_lib.init_state(p, c, optimizers), params, constants)
  step = step_lib.make_step_fn(graphs, spec, config.loss, optimizers, config.optim.adversarial_every)
  images = jax.ShapeDtypeStruct((2, spec.resolution, spec.resolution, 3), jnp.float32)
  batch = {
    "id": images,
    "attr": images,
    "w_real": jax.ShapeDtypeStruct((2, spec.w_dim), jnp.float32),
    "same": jax.ShapeDtypeStruct((), jnp.float32),
  }
  new_state, metrics = jax.eval_shape(step, state, frozen_state, batch)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  assert metrics["loss/identity"].shape == ()
