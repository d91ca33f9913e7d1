"""E_attr (torchvision InceptionV3): parity with upstream (fixture set E), shapes of the ImageNet checkpoint (set F),
preprocessing, gradients, training-mode independence, converters and their errors."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from disentangle_jax import model as model_lib
from disentangle_jax.nets import inception
from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError
from tests import recipe
from tests import torch_writer

SET = "tv_inception_v3"
SMOKE = inception.Config(width_multiplier=0.125, input_size=75)

# One compiled function per (config, input shape) shared by the tests: compiling InceptionV3 dominates their time.
_features = jax.jit(lambda module, images: module(images))


def _atol(output: str) -> float:
  return recipe.meta(SET)["suggested_atol"][output]


@pytest.fixture(scope="module")
def tv_pth(tmp_path_factory) -> str:
  """The fixture set's state_dict as a torch-format file (what torchvision's ImageNet checkpoint is)."""
  path = str(tmp_path_factory.mktemp("tv") / "inception_v3.pth")
  torch_writer.save(recipe.state_dict(SET), path)
  return path


def test_full_size_parity_with_upstream(tv_pth):
  """One batch-2 forward of the full network (loaded from a torch-format file) reproduces torchvision."""
  module = inception.load(tv_pth)
  assert module.config == inception.Config(num_classes=1000, input_norm="minus_one_one")
  io = recipe.io(SET)
  out = jax.jit(lambda m, x: m.forward(x))(module, jnp.asarray(io["input"].transpose(0, 2, 3, 1)))
  np.testing.assert_allclose(np.asarray(out["pool"]), io["pool_features"], rtol=0, atol=_atol("pool_features"))
  np.testing.assert_allclose(np.asarray(out["logits"]), io["logits"], rtol=0, atol=_atol("logits"))


def test_imagenet_start_sees_what_torchvision_feeds_its_imagenet_weights(tv_pth):
  """torchvision runs its ImageNet InceptionV3 with `transform_input=True`: fed ImageNet mean/std-normalised
  images, it maps them back to the [-1, 1] the (Google-trained) weights expect. E_attr built from that state_dict
  as the training model builds it, and called as `model.encode` calls it on the same images in [-1, 1], gives that
  model's features (fixture: tests/make_inception_transform_fixtures.py). Fed ImageNet-normalised pixels instead,
  it would give the `transform_input=False` features, 5.9 away."""
  cfg = ml_collections.ConfigDict({"kind": "inception_v3", "weights": tv_pth, "arch": {}})
  e_attr = model_lib.attr_encoder(cfg, seed=0)
  assert e_attr.config.input_norm == "minus_one_one" and e_attr.fc is None
  io = recipe.io(SET)
  want = recipe.io(f"{SET}_transform")["pool_features"]
  assert np.max(np.abs(want - io["pool_features"])) > 100 * _atol("pool_features")  # the fixture tells them apart
  images = jnp.asarray(io["image_rgb_uint8"].astype(np.float32) / 127.5 - 1.0)
  got = np.asarray(jax.jit(lambda m, x: m(x.astype(jnp.float32)))(e_attr, images))
  np.testing.assert_allclose(got, want, rtol=0, atol=_atol("pool_features"))


def test_preprocess_reproduces_fixture_input():
  """uint8 RGB -> [-1, 1] -> `preprocess` at 299 equals torchvision's ((x / 255) - mean) / std."""
  io = recipe.io(SET)
  images = io["image_rgb_uint8"].astype(np.float32) / 127.5 - 1.0
  module = nnx.eval_shape(lambda: inception.Inception(inception.FULL, rngs=nnx.Rngs(0)))
  got = np.asarray(module.preprocess(jnp.asarray(images)))
  np.testing.assert_allclose(got, io["input"].transpose(0, 2, 3, 1), rtol=0, atol=1e-5)


def test_preprocess_resizes_bilinear_without_antialias():
  module = nnx.eval_shape(lambda: inception.Inception(SMOKE, rngs=nnx.Rngs(0)))
  images = np.random.RandomState(0).uniform(-1, 1, (1, 150, 150, 3)).astype(np.float32)
  got = np.asarray(module.preprocess(jnp.asarray(images)))
  # 150 -> 75 with half-pixel centres samples exactly between pixel pairs: the mean of each 2x2 block.
  half = 0.5 * (
    0.25 * (images[:, ::2, ::2] + images[:, 1::2, ::2] + images[:, ::2, 1::2] + images[:, 1::2, 1::2]) + 1.0
  )
  want = (half - np.asarray(inception.IMAGENET_MEAN)) / np.asarray(inception.IMAGENET_STD)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_full_size_shapes_match_the_imagenet_checkpoint():
  """Every torchvision key/shape except `AuxLogits.*` and counters maps one-to-one onto a Flax variable."""
  info = recipe.manifest("torchvision_inception_v3")
  import json  # pylint: disable=import-outside-toplevel

  aux = set(
    json.loads((recipe.TESTDATA / "shapes_manifest.json").read_text())["torchvision_inception_v3"]["aux_logits_keys"]
  )
  want = {k: v for k, v in info.items() if k not in aux and not k.endswith("num_batches_tracked")}
  assert all(k.startswith("AuxLogits.") for k in aux)
  assert inception.expected_state_dict(inception.Config(num_classes=1000)) == want


def test_smoke_config_feature_and_variable_types():
  module = inception.init(SMOKE, seed=0)
  images = jnp.asarray(np.random.RandomState(1).uniform(-1, 1, (2, 75, 75, 3)), jnp.float32)
  feats = _features(module, images)
  assert feats.shape == (2, 256) and SMOKE.feature_dim == 256
  assert np.all(np.isfinite(np.asarray(feats))) and float(jnp.std(feats)) > 1e-3
  # BatchNorm statistics are BatchStat (out of the optimizer), scale/bias are trainable Params.
  stats = nnx.to_pure_dict(nnx.state(module, nnx.BatchStat))
  assert set(stats["Mixed_7c"]["branch_pool"]["bn"]) == {"mean", "var"}
  params = nnx.to_pure_dict(nnx.state(module, nnx.Param))
  assert set(params["Mixed_7c"]["branch_pool"]["bn"]) == {"scale", "bias"}


def test_output_does_not_depend_on_batch_or_train_mode():
  """Running statistics always: an image's feature ignores its batch-mates, also after `module.train()`."""
  module = inception.init(SMOKE, seed=2)
  images = jnp.asarray(np.random.RandomState(3).uniform(-1, 1, (3, 75, 75, 3)), jnp.float32)
  first = np.asarray(_features(module, images[:2]))
  module.train()
  second = np.asarray(_features(module, images[1:]))
  np.testing.assert_allclose(second[0], first[1], rtol=1e-5, atol=1e-5)


def test_feature_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    module = inception.init(SMOKE, seed=4)
    nnx.update(module, jax.tree.map(lambda v: v.astype(jnp.float64), nnx.state(module)))
    rng = np.random.RandomState(5)
    x = jnp.asarray(rng.uniform(-0.9, 0.9, (1, 80, 80, 3)))
    r = jnp.asarray(rng.normal(size=(1, SMOKE.feature_dim)))
    v = rng.normal(size=x.shape)
    v = jnp.asarray(v / np.linalg.norm(v))  # a unit step: a tiny h then crosses (almost) no ReLU / max-pool kink

    # One compiled function serves both sides (compiling dominates): values at x +- h v, gradient at x.
    value_and_grad = jax.jit(jax.value_and_grad(lambda img: jnp.sum(module(img) * r)))
    analytic = jnp.vdot(value_and_grad(x)[1], v)
    h = 1e-6
    numeric = (value_and_grad(x + h * v)[0] - value_and_grad(x - h * v)[0]) / (2 * h)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5)


def test_npz_round_trip_and_aux_keys_dropped(tmp_path):
  """export -> .npz (with torchvision's extra keys) -> convert_to -> load restores every variable exactly."""
  module = inception.init(inception.Config(width_multiplier=0.125, input_size=75, num_classes=7), seed=6)
  sd = inception.to_numpy_state_dict(module)
  sd["AuxLogits.fc.weight"] = np.zeros((7, 96), np.float32)  # torchvision's aux head: ignored
  sd["Mixed_5b.branch1x1.bn.num_batches_tracked"] = np.array(1, np.int64)
  np.savez(tmp_path / "w.npz", **sd)
  inception.convert_to(str(tmp_path / "w.npz"), str(tmp_path / "conv"))
  back = inception.load(str(tmp_path / "conv"), input_size=75)
  # A torchvision-format file holds torchvision-trained weights: they expect [-1, 1] inputs.
  assert back.config == inception.Config(
    width_multiplier=0.125, input_size=75, num_classes=7, input_norm="minus_one_one"
  )
  want = nnx.to_pure_dict(nnx.state(module))
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(back)), want)
  headless = inception.load(str(tmp_path / "w.npz"), input_size=75, num_classes=0)
  assert headless.fc is None and headless.config == dataclasses.replace(SMOKE, input_norm="minus_one_one")
  got = nnx.to_pure_dict(nnx.state(headless))
  jax.tree.map(np.testing.assert_array_equal, got, {k: v for k, v in want.items() if k != "fc"})


def test_misshaped_and_missing_keys_are_named(tmp_path):
  sd = inception.to_numpy_state_dict(inception.init(SMOKE, seed=0))
  bad = dict(sd)
  bad["Mixed_6b.branch7x7_2.conv.weight"] = bad["Mixed_6b.branch7x7_2.conv.weight"].transpose(0, 1, 3, 2)
  np.savez(tmp_path / "bad.npz", **bad)
  with pytest.raises(CheckpointMismatchError, match=r"Mixed_6b\.branch7x7_2\.conv\.weight"):
    inception.convert(str(tmp_path / "bad.npz"))
  missing = {k: v for k, v in sd.items() if k != "Mixed_7c.branch_pool.bn.running_mean"}
  np.savez(tmp_path / "missing.npz", **missing)
  with pytest.raises(CheckpointMismatchError, match=r"Mixed_7c\.branch_pool\.bn\.running_mean"):
    inception.convert(str(tmp_path / "missing.npz"))


def test_truncated_torch_file_raises_format_error(tmp_path):
  sd = inception.to_numpy_state_dict(inception.init(SMOKE, seed=0))
  torch_writer.save(sd, str(tmp_path / "full.pth"))
  data = (tmp_path / "full.pth").read_bytes()
  (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
  with pytest.raises(CheckpointFormatError, match="cut.pth"):
    inception.convert(str(tmp_path / "cut.pth"))


def test_config_rejects_too_small_input():
  with pytest.raises(ValueError, match="74"):
    inception.Config(input_size=74)
