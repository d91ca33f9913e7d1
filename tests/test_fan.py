"""FAN-2D port: parity with face-alignment (fixture set D), the full-size layout, decoding, gradients, bad files."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from disentangle_jax.third_party import fan
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.fan import decode
from tests import recipe
from tests import torch_writer

# `fan.convert` is the function; the module of the same name is reached through importlib.
convert_lib = importlib.import_module("disentangle_jax.third_party.fan.convert")

SMOKE = fan.Config(num_modules=1, width=16, input_size=64)
TWO_STACKS = fan.Config(num_modules=2, width=16, input_size=64)  # exercises the bl / al feedback layers


def _images_from_uint8(rgb: np.ndarray) -> np.ndarray:
  """uint8 RGB -> the generator's [-1, 1] range, as the training pipeline hands images to the landmark net."""
  return rgb.astype(np.float32) / 127.5 - 1.0


@pytest.fixture(scope="module")
def fixture_checkpoint(tmp_path_factory) -> str:
  """Fixture set D's state_dict written as a torch zip file (the layout of the released checkpoint)."""
  path = tmp_path_factory.mktemp("fan") / "fan2d_m1.pth.tar"
  torch_writer.save(recipe.state_dict("fan2d_m1"), str(path))
  return str(path)


@pytest.fixture(scope="module")
def fixture_net(fixture_checkpoint):
  return fan.load(fixture_checkpoint)


def test_parity_with_face_alignment(fixture_net):
  io = recipe.io("fan2d_m1")
  images = _images_from_uint8(io["image_rgb_uint8"])
  assert fixture_net.config == fan.Config(num_modules=1, width=256, num_landmarks=68, input_size=256)
  # Our [-1, 1] -> [0, 1] step reproduces upstream's uint8 / 255 input.
  np.testing.assert_allclose(
    np.asarray(fan.preprocess(fixture_net, images)), io["input"].transpose(0, 2, 3, 1), rtol=0, atol=1e-6
  )
  heatmaps = np.asarray(fan.heatmaps(fixture_net, images))
  np.testing.assert_allclose(
    heatmaps,
    io["heatmaps_0"].transpose(0, 2, 3, 1),
    rtol=0,
    atol=recipe.meta("fan2d_m1")["suggested_atol"]["heatmaps_0"],
  )
  # Landmarks are the decoded heatmaps scaled by the stride 4 of a 256 input.
  points = np.asarray(fan.landmarks(fixture_net, images))
  np.testing.assert_allclose(points, 4.0 * np.asarray(fan.soft_argmax(jnp.asarray(heatmaps))), rtol=0, atol=1e-3)
  assert points.shape == (2, 68, 2)


def test_npz_and_legacy_torch_files_convert_identically(fixture_checkpoint, tmp_path):
  config, params = fan.convert(fixture_checkpoint)
  state_dict = recipe.state_dict("fan2d_m1")
  np.savez(tmp_path / "fan.npz", **state_dict)
  torch_writer.save_legacy(state_dict, str(tmp_path / "legacy.pth.tar"))
  for other in (tmp_path / "fan.npz", tmp_path / "legacy.pth.tar"):
    other_config, other_params = fan.convert(other)
    assert other_config == config
    jax.tree.map(np.testing.assert_array_equal, other_params, params)


def test_full_size_manifest_maps_one_to_one_onto_fan4():
  manifest = recipe.manifest("face_alignment_FAN4_2D")
  used = {k: v for k, v in manifest.items() if not k.endswith(".num_batches_tracked")}
  abstract = nnx.eval_shape(lambda: fan.FAN(fan.FAN4, rngs=nnx.Rngs(0)))
  variables = nnx.to_pure_dict(nnx.state(abstract, nnx.Variable))
  ours = keymap.expected(convert_lib.rules(fan.FAN4))
  assert len(ours) == len(jax.tree.leaves(variables))  # no two Flax variables claim the same upstream key
  assert set(ours) == set(used), (sorted(set(used) - set(ours))[:5], sorted(set(ours) - set(used))[:5])
  assert {k: ours[k] for k in used} == used
  # Parameters proper (BatchNorm statistics excluded) add up to the manifest's count.
  params = nnx.state(abstract, nnx.Param)
  assert sum(int(np.prod(v.shape)) for v in jax.tree.leaves(params)) == 23_820_176
  # The converter infers FAN4 from a state_dict of these shapes.
  fake = {k: np.zeros(s, np.float32) for k, s in manifest.items()}
  assert convert_lib.infer_config(fake, "manifest") == fan.FAN4


def _variables(net) -> dict:
  return nnx.to_pure_dict(nnx.state(net, nnx.Variable))


def test_smoke_config_round_trips_through_torch_file_and_converted_dir(tmp_path):
  net = fan.init(TWO_STACKS, seed=3)
  images = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3), minval=-1.0, maxval=1.0)  # resized up to 64
  assert fan.heatmaps(net, images).shape == (2, 16, 16, 68)
  # A training-script checkpoint: {"state_dict": {"module.<key>": ...}} from DataParallel.
  state_dict = fan.to_state_dict(_variables(net))
  torch_writer.save(
    {"state_dict": {f"module.{k}": v for k, v in state_dict.items()}, "epoch": np.int64(3)},
    str(tmp_path / "trained.pth"),
  )
  reloaded = fan.load(tmp_path / "trained.pth", input_size=64)
  assert reloaded.config == TWO_STACKS
  jax.tree.map(np.testing.assert_array_equal, _variables(reloaded), _variables(net))
  fan.convert_to(tmp_path / "trained.pth", tmp_path / "converted")
  assert converted.is_converted(tmp_path / "converted")
  from_dir = fan.load(tmp_path / "converted", input_size=64)
  assert from_dir.config == TWO_STACKS
  jax.tree.map(np.testing.assert_array_equal, _variables(from_dir), _variables(net))
  # Different seeds draw different weights; the same seed the same ones.
  assert not np.array_equal(
    _variables(fan.init(SMOKE, seed=4))["l0"]["kernel"], _variables(fan.init(SMOKE, seed=5))["l0"]["kernel"]
  )
  jax.tree.map(np.testing.assert_array_equal, _variables(fan.init(TWO_STACKS, seed=3)), _variables(net))


def test_config_validation_and_dict_round_trip():
  assert fan.Config.from_dict(SMOKE.to_dict()) == SMOKE
  assert fan.FAN4 == fan.Config(num_modules=4, width=256, num_landmarks=68, input_size=256)
  with pytest.raises(ValueError, match="input_size"):
    fan.Config(input_size=100)
  with pytest.raises(ValueError, match="width"):
    fan.Config(width=20)
  with pytest.raises(ValueError, match="bogus"):
    fan.Config.from_dict({"bogus": 1})
  assert set(fan.JAW_INDICES) | set(fan.KEEP_INDICES) == set(range(68))
  assert not set(fan.JAW_INDICES) & set(fan.KEEP_INDICES)


def test_landmark_gradient_matches_finite_differences():
  """d(landmarks)/d(image) through preprocessing, both stacks and the soft-argmax, in float64."""
  net = fan.FAN(TWO_STACKS, rngs=nnx.Rngs(1))
  with jax.enable_x64(True):
    graphdef, state = nnx.split(net)
    state = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), state)
    images = jax.random.uniform(jax.random.key(2), (1, 64, 64, 3), jnp.float64, -1.0, 1.0)
    weights = jax.random.normal(jax.random.key(3), (1, 68, 2), jnp.float64)

    def f(x):
      return jnp.sum(nnx.merge(graphdef, state).landmarks(x) * weights)

    grad = jax.jit(jax.grad(f))(images)
    f_jit = jax.jit(f)
    eps = 1e-6  # small enough that no ReLU or window edge is crossed between the two evaluations
    for seed in range(2):
      direction = jax.random.normal(jax.random.key(10 + seed), images.shape, jnp.float64)
      numeric = (f_jit(images + eps * direction) - f_jit(images - eps * direction)) / (2 * eps)
      analytic = jnp.sum(grad * direction)
      assert abs(float(numeric)) > 1e-3  # the landmarks do depend on the image
      np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5)


def test_soft_argmax_gradient_matches_finite_differences():
  with jax.enable_x64(True):
    centres = np.random.default_rng(0).uniform(10.0, 54.0, (2, 5, 2))
    maps = jnp.asarray(decode.gaussian_heatmaps(centres, 64, noise=0.02, seed=1), jnp.float64)
    weights = jax.random.normal(jax.random.key(0), (2, 5, 2), jnp.float64)
    f = jax.jit(lambda m: jnp.sum(fan.soft_argmax(m) * weights))
    grad = jax.grad(f)(maps)
    assert np.count_nonzero(np.asarray(grad)) > 0
    eps = 1e-6
    for seed in range(3):
      direction = jax.random.normal(jax.random.key(seed), maps.shape, jnp.float64)
      numeric = (f(maps + eps * direction) - f(maps - eps * direction)) / (2 * eps)
      np.testing.assert_allclose(float(jnp.sum(grad * direction)), float(numeric), rtol=1e-6)


def test_soft_argmax_agrees_with_upstream_argmax_on_gaussian_peaks():
  """Clean Gaussian peaks (FAN's training target) at random sub-pixel positions, several widths and heights."""
  centres = np.random.default_rng(7).uniform(2.0, 62.0, (16, 68, 2))
  for sigma in (1.25, 1.75, 2.5):
    for peak in (1.0, 0.5):
      maps = jnp.asarray(decode.gaussian_heatmaps(centres, 64, sigma, peak))
      soft, hard = np.asarray(fan.soft_argmax(maps)), np.asarray(fan.hard_argmax(maps))
      assert np.abs(soft - hard).max() < 0.5, (sigma, peak)
      assert np.abs(hard - centres).max() <= 0.25 + 1e-4  # upstream's own quantisation
      interior = np.all((centres > 7) & (centres < 57), axis=-1)  # window not cut by the map edge
      assert np.abs(soft - centres)[interior].max() < 0.05, (sigma, peak)


def test_soft_argmax_beats_upstream_argmax_on_noisy_peaks():
  """With background noise the argmax itself can jump a pixel; the windowed centre of mass stays close."""
  centres = np.random.default_rng(8).uniform(8.0, 56.0, (16, 68, 2))
  for sigma, peak, noise in ((1.75, 1.0, 0.02), (1.25, 0.6, 0.03), (2.5, 1.0, 0.02)):
    maps = jnp.asarray(decode.gaussian_heatmaps(centres, 64, sigma, peak, noise, seed=9))
    soft_err = np.abs(np.asarray(fan.soft_argmax(maps)) - centres)
    hard_err = np.abs(np.asarray(fan.hard_argmax(maps)) - centres)
    assert soft_err.max() < 0.25 and soft_err.mean() < hard_err.mean() / 3, (sigma, peak, noise)


def test_plain_softmax_bias_is_what_the_windowed_decoder_removes():
  errors = decode.measure_decoders(num=4, k=32)
  assert errors["plain softmax"][0] > 5.0  # pulled to the map centre by the background
  assert errors["window r=5 floor 0.2"][0] < 0.05
  assert errors["window r=5 floor 0.2"][0] < errors["upstream argmax"][0] / 4


def test_hard_argmax_follows_face_alignment_conventions():
  hm = np.zeros((1, 64, 64, 4), np.float32)
  # Peak at row 10, column 20; right neighbour above left, lower neighbour below upper: +x, -y quarter shifts.
  hm[0, 10, 20, 0], hm[0, 10, 21, 0], hm[0, 10, 19, 0], hm[0, 9, 20, 0], hm[0, 11, 20, 0] = 1, 0.5, 0.2, 0.4, 0.1
  # Equal neighbours: no shift.
  hm[0, 30, 40, 1] = 1.0
  # Peak on the outer ring (column 0): upstream shifts neither axis, even though the rows differ.
  hm[0, 5, 0, 2], hm[0, 6, 0, 2], hm[0, 5, 1, 2] = 1.0, 0.5, 0.5
  # Ties: the first maximum in row-major order wins.
  hm[0, 40, 50, 3] = hm[0, 20, 60, 3] = 1.0
  got = np.asarray(fan.hard_argmax(jnp.asarray(hm)))
  np.testing.assert_array_equal(got[0], [[20.75, 10.25], [40.5, 30.5], [0.5, 5.5], [60.5, 20.5]])


def test_corrupt_and_mismatched_checkpoints_name_the_fault(tmp_path):
  state_dict = fan.to_state_dict(_variables(fan.init(SMOKE, seed=0)))

  bad_shape = dict(state_dict, **{"m0.b1_4.conv2.weight": np.zeros((5, 8, 3, 3), np.float32)})
  np.savez(tmp_path / "bad_shape.npz", **bad_shape)
  with pytest.raises(fan.CheckpointMismatchError, match=r"m0\.b1_4\.conv2\.weight"):
    fan.convert(tmp_path / "bad_shape.npz")

  missing = {k: v for k, v in state_dict.items() if k != "top_m_0.bn3.running_var"}
  torch_writer.save(missing, str(tmp_path / "missing.pth"))
  with pytest.raises(fan.CheckpointMismatchError, match=r"missing keys \(1\): top_m_0\.bn3\.running_var"):
    fan.load(tmp_path / "missing.pth")

  extra = dict(state_dict, **{"m0.b9_9.conv1.weight": np.zeros((1,), np.float32)})
  np.savez(tmp_path / "extra.npz", **extra)
  with pytest.raises(fan.CheckpointMismatchError, match=r"unexpected keys \(1\): m0\.b9_9\.conv1\.weight"):
    fan.convert(tmp_path / "extra.npz")

  no_head = {k: v for k, v in state_dict.items() if not k.startswith("l0.")}
  np.savez(tmp_path / "no_head.npz", **no_head)
  with pytest.raises(fan.CheckpointMismatchError, match=r"l0\.weight"):
    fan.convert(tmp_path / "no_head.npz")

  torch_writer.save(state_dict, str(tmp_path / "whole.pth"))
  data = (tmp_path / "whole.pth").read_bytes()
  (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
  with pytest.raises(fan.CheckpointFormatError, match="truncated.pth"):
    fan.convert(tmp_path / "truncated.pth")
  (tmp_path / "truncated.npz").write_bytes((tmp_path / "bad_shape.npz").read_bytes()[:1000])
  with pytest.raises(fan.CheckpointFormatError, match="truncated.npz"):
    fan.convert(tmp_path / "truncated.npz")
  torch_writer.save([np.zeros(3, np.float32)], str(tmp_path / "list.pth"))
  with pytest.raises(fan.CheckpointFormatError, match="list.pth"):
    fan.convert(tmp_path / "list.pth")
