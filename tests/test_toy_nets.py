"""The toy world's frozen networks: keypoints of the renderer, the two CNNs' contract, training, and prepare's cache."""

from concurrent import futures

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from disentangle_jax import config_check
from disentangle_jax import errors
from disentangle_jax import frozen
from disentangle_jax import model
from disentangle_jax.toy import cnn
from disentangle_jax.toy import identity_net
from disentangle_jax.toy import landmark_net
from disentangle_jax.toy import prepare as prepare_lib
from disentangle_jax.toy import render

G_ARCH = dict(resolution=32, z_dim=16, w_dim=24, mapping_layers=3)
SEED = 5
# Tiny step counts: enough to show the margins below on any CPU, far from the defaults' accuracy.
ID_TRAINING = prepare_lib.Training(steps=40, batch_size=32)
LANDMARK_TRAINING = prepare_lib.Training(steps=120, batch_size=32)


def _config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(
    dict(
      seed=SEED,
      generator=dict(kind="toy", weights="", arch=G_ARCH, noise_mode="const"),
      id_encoder=dict(kind="toy", weights="", head="pool", arch={}),
      landmarks=dict(kind="toy", weights="", arch={}),
    )
  )


def _factors(**changes: float) -> tuple[jax.Array, jax.Array]:
  """One face at the middle of every factor range, with `changes` (by name) applied."""
  identity = [changes.get(name, (lo + hi) / 2) for name, lo, hi in render.IDENTITY]
  attribute = [changes.get(name, (lo + hi) / 2) for name, lo, hi in render.ATTRIBUTE]
  return jnp.asarray([identity], jnp.float32), jnp.asarray([attribute], jnp.float32)


def _at(image: np.ndarray, point: np.ndarray) -> float:
  """Luminance of the pixel whose centre is nearest `point` (x, y)."""
  return float(image[int(round(point[1])), int(round(point[0]))].mean())


def test_keypoints_sit_on_what_is_drawn_and_move_with_the_pose():
  res = 128
  names = render.KEYPOINT_NAMES
  assert len(names) == render.NUM_KEYPOINTS == len(set(names))
  identity, attribute = _factors()
  points = np.asarray(render.keypoints(identity, attribute, res))[0]
  image = np.asarray(render.render(identity, attribute, res))[0]
  assert points.shape == (render.NUM_KEYPOINTS, 2)
  for side in ("left", "right"):
    pupil, outer, inner = (points[names.index(f"{side}_{p}")] for p in ("pupil", "eye_outer", "eye_inner"))
    assert _at(image, pupil) < -0.6  # the pupil is dark
    # Halfway from the pupil to either corner lies the iris / white: much brighter than the pupil.
    assert _at(image, (pupil + outer) / 2) > _at(image, pupil) + 0.5
    assert _at(image, (pupil + inner) / 2) > _at(image, pupil) + 0.5
  left, right = points[names.index("left_pupil")], points[names.index("right_pupil")]
  assert left[0] < res / 2 < right[0] and abs(left[1] - right[1]) < 1e-3  # a frontal face is symmetric
  assert _at(image, points[names.index("mouth_centre")]) < _at(image, points[names.index("nose_tip")])
  chin = points[names.index(f"jaw_{len(render.JAW_INDICES) // 2}")]
  assert chin[0] == pytest.approx((res - 1) / 2, abs=1e-3) and chin[1] > points[names.index("mouth_bottom")][1]

  # Yaw turns the features right (the outline stays put), pitch moves them down.
  turned = np.asarray(render.keypoints(*_factors(yaw=0.5), res))[0]
  nodded = np.asarray(render.keypoints(*_factors(pitch=0.25), res))[0]
  keep = list(landmark_net.KEEP_INDICES)
  assert np.all(turned[keep, 0] > points[keep, 0] + 1.0)
  assert np.all(nodded[keep, 1] > points[keep, 1] + 0.5)
  np.testing.assert_allclose(turned[list(render.JAW_INDICES)], points[list(render.JAW_INDICES)])
  turned_image = np.asarray(render.render(*_factors(yaw=0.5), res))[0]
  assert _at(turned_image, turned[names.index("right_pupil")]) < -0.6  # still on the pupil after the turn
  # Same geometry at any resolution: pixel positions scale with the side.
  half = np.asarray(render.keypoints(identity, attribute, res // 2))[0]
  np.testing.assert_allclose((half + 0.5) * 2, points + 0.5, atol=1e-4)


def test_the_loss_landmarks_follow_the_attributes_alone():
  """Identity factors move only the outline (dropped by the landmark loss), so the loss cannot pull identity from
  I_attr; every attribute but the light moves the kept points."""
  res = 32
  keep, jaw = list(landmark_net.KEEP_INDICES), list(render.JAW_INDICES)
  base = np.asarray(render.keypoints(*_factors(), res))[0]
  for name, lo, hi in render.IDENTITY:
    for value in (lo, hi):
      moved = np.asarray(render.keypoints(*_factors(**{name: value}), res))[0]
      np.testing.assert_allclose(moved[keep], base[keep], atol=1e-5, err_msg=name)
  wider = np.asarray(render.keypoints(*_factors(face_width=render.IDENTITY[0][2]), res))[0]
  assert np.abs(wider[jaw] - base[jaw]).max() > 1.0
  for name, lo, hi in render.ATTRIBUTE:
    if name != "light_azimuth":
      low, high = (np.asarray(render.keypoints(*_factors(**{name: v}), res))[0] for v in (lo, hi))
      assert np.abs(high[keep] - low[keep]).max() > 1.0, name


def test_contract_shapes_and_gradients():
  images = jax.random.uniform(jax.random.key(0), (3, 32, 32, 3), minval=-1.0, maxval=1.0)
  e_id = identity_net.init(identity_net.Config(), 0)
  emb = identity_net.embed(e_id, images)
  assert emb.shape == (3, identity_net.Config().embed_dim) and emb.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(np.asarray(emb), axis=-1), 1.0, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(identity_net.embed(e_id, images, head="proj")), np.asarray(emb))
  with pytest.raises(ValueError, match="head"):
    e_id.embed(images, head="logits")
  net = landmark_net.init(landmark_net.Config(), 0)
  points = landmark_net.landmarks(net, images)
  assert points.shape == (3, render.NUM_KEYPOINTS, 2) and points.dtype == jnp.float32
  # Zero-initialised output layer: every point starts at the image centre, in the input's pixels at any size.
  np.testing.assert_allclose(np.asarray(points), 15.5, atol=1e-5)
  bigger = jax.image.resize(images, (3, 64, 64, 3), "bilinear")
  np.testing.assert_allclose(np.asarray(landmark_net.landmarks(net, bigger)), 31.5, atol=1e-5)
  assert identity_net.embed(e_id, bigger).shape == emb.shape
  assert set(landmark_net.KEEP_INDICES).isdisjoint(render.JAW_INDICES)
  assert len(landmark_net.KEEP_INDICES) + len(render.JAW_INDICES) == render.NUM_KEYPOINTS
  for module in (e_id, net):
    assert 5_000 < cnn.num_params(module) < 150_000
  grad = jax.jit(jax.grad(lambda x: jnp.sum(e_id.embed(x)[:, 0]) + jnp.sum(net.landmarks(x))))(images)
  assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.abs(grad).max()) > 0
  with pytest.raises(ValueError, match="input_size"):
    identity_net.Config(input_size=4)
  with pytest.raises(ValueError, match="widths"):
    landmark_net.Config(widths=(8, 0))
  with pytest.raises(ValueError, match=r"images \[B, H, W, 3\]"):
    e_id.embed(images[..., :1])


def test_load_round_trip(tmp_path):
  from disentangle_jax.third_party.common import converted  # pylint: disable=import-outside-toplevel

  images = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1, maxval=1)
  for package, fn in ((identity_net, identity_net.embed), (landmark_net, landmark_net.landmarks)):
    config = package.Config(widths=(4, 8), hidden=16)
    net = package.init(config, 3)
    converted.write(tmp_path / package.NETWORK, package.NETWORK, net, "test")
    loaded = package.load(tmp_path / package.NETWORK)
    assert isinstance(loaded, package.Module) and loaded.config == config
    np.testing.assert_array_equal(np.asarray(fn(loaded, images)), np.asarray(fn(net, images)))
    assert package.convert_to(tmp_path / package.NETWORK, tmp_path / f"{package.NETWORK}_copy") == config
    with pytest.raises(errors.UserError, match="prepare"):
      package.load(tmp_path / "missing")
  with pytest.raises(ValueError, match="toy_landmark_net"):  # another network's directory
    identity_net.load(tmp_path / landmark_net.NETWORK)


def test_saves_from_threads_do_not_mix(tmp_path):
  """prepare() writes its nets from threads; Orbax's async save is not safe to run twice at once in one process."""
  from disentangle_jax.third_party.common import converted  # pylint: disable=import-outside-toplevel

  def save(i):
    trees = [{f"layer{j}": np.full((32, 32), 10 * i + k + j / 100, np.float32) for j in range(16)} for k in range(3)]
    for k, params in enumerate(trees):
      converted.save(tmp_path / f"net{i}-{k}", "toy", {"i": i}, params)
    return trees

  with futures.ThreadPoolExecutor(4) as pool:
    written = list(pool.map(save, range(4)))
  for i, trees in enumerate(written):
    for k, params in enumerate(trees):
      config, loaded = converted.load(tmp_path / f"net{i}-{k}", "toy")
      assert config == {"i": i}
      jax.tree.map(np.testing.assert_array_equal, loaded, params)


@pytest.fixture(scope="module")
def prepared_nets(tmp_path_factory):
  """prepare() on a fresh cache with tiny step counts; the trainers' calls counted."""
  cache = tmp_path_factory.mktemp("toy_nets")
  calls = []
  with pytest.MonkeyPatch.context() as patch:
    for name in ("train_identity_encoder", "train_landmark_net"):
      real = getattr(prepare_lib, name)

      def counted(*args, real=real, name=name):
        calls.append(name)
        return real(*args)

      patch.setattr(prepare_lib, name, counted)
    config = prepare_lib.prepare(_config(), cache, id_training=ID_TRAINING, landmark_training=LANDMARK_TRAINING)
  g = frozen.generator(config.generator, SEED + model.SEED_OFFSETS["generator"])
  return dict(config=config, cache=cache, calls=calls, g=g)


def test_trained_landmark_net_beats_the_mean_keypoints(prepared_nets):
  net = landmark_net.load(prepared_nets["config"].landmarks.weights)
  error = prepare_lib.landmark_error(prepared_nets["g"], net, seed=11)
  # Measured (seeds 5, 6): 0.93 / 0.79 px against 3.16 / 3.13 px for the mean.
  assert error["net"] < 0.7 * error["mean_predictor"], error


def test_trained_identity_encoder_ignores_attributes(prepared_nets):
  e_id = identity_net.load(prepared_nets["config"].id_encoder.weights)
  similarity = prepare_lib.identity_similarity(prepared_nets["g"], e_id, seed=11)
  # 1 - cosine is half the squared distance of unit embeddings: a change of attributes must move the embedding far
  # less than a change of identity. The regression-led embedding keeps a large common part (every cosine is high),
  # so the distances are compared, not the cosines. Measured (seeds 5, 6): 0.050 / 0.030 of the identity change.
  assert 1.0 - similarity["same"] < 0.25 * (1.0 - similarity["different"]), similarity


def test_prepare_trains_once_then_reads_the_cache(prepared_nets, monkeypatch):
  config, cache = prepared_nets["config"], prepared_nets["cache"]
  assert sorted(prepared_nets["calls"]) == ["train_identity_encoder", "train_landmark_net"]
  for section in ("id_encoder", "landmarks"):
    assert config[section].kind == "toy" and config[section].weights.startswith(str(cache))
  # A leftover temporary directory (an interrupted run) is never taken for a cache entry.
  (cache / ".tmp-landmarks-0123456789abcdef-dead").mkdir()

  def no_training(*args):
    raise AssertionError("trained although the cache holds the nets")

  monkeypatch.setattr(prepare_lib, "train_identity_encoder", no_training)
  monkeypatch.setattr(prepare_lib, "train_landmark_net", no_training)
  again = prepare_lib.prepare(_config(), cache, id_training=ID_TRAINING, landmark_training=LANDMARK_TRAINING)
  assert again.id_encoder.weights == config.id_encoder.weights
  assert again.landmarks.weights == config.landmarks.weights
  # Weights already set, or a kind that is not toy: nothing to train.
  assert prepare_lib.prepare(config, cache).to_dict() == config.to_dict()
  # Any change to what the nets learn from is a new entry: another seed or other settings would train.
  with pytest.raises(AssertionError, match="trained although"):
    prepare_lib.prepare(_config(), cache, id_training=prepare_lib.Training(steps=41, batch_size=32))
  other = _config()
  other.seed = SEED + 1
  with pytest.raises(AssertionError, match="trained although"):
    prepare_lib.prepare(other, cache, id_training=ID_TRAINING, landmark_training=LANDMARK_TRAINING)


def test_prepare_refuses_what_cannot_work(tmp_path):
  config = _config()
  config.generator.kind = "stylegan2"
  with pytest.raises(errors.ConfigError, match="generator.kind"):
    prepare_lib.prepare(config, tmp_path)
  config = _config()
  config.landmarks.arch = ml_collections.ConfigDict(dict(widths=(8, 0)))
  config.id_encoder.kind = "vggface2"
  with pytest.raises(errors.ConfigError, match="config.landmarks.arch"):
    prepare_lib.prepare(config, tmp_path)
  with pytest.raises(errors.ConfigError, match="steps"):
    prepare_lib.Training(steps=0)
  # E_attr's toy start needs the toy G; the config check says so before anything is built.
  from disentangle_jax import config_check  # pylint: disable=import-outside-toplevel
  from disentangle_jax.configs import smoke  # pylint: disable=import-outside-toplevel

  wrong = smoke.get_config()
  wrong.attr_encoder.toy_start = True
  assert [p for p in config_check.problems(wrong) if p.startswith("config.attr_encoder.toy_start=True")]


def test_frozen_builds_the_toy_kinds(prepared_nets):
  config = prepared_nets["config"]
  e_id = frozen.id_encoder(config.id_encoder, seed=0)
  net = frozen.landmark_net(config.landmarks, seed=0)
  assert isinstance(e_id, identity_net.IdentityEncoder) and isinstance(net, landmark_net.LandmarkNet)
  assert frozen.landmark_keep_indices("toy") == landmark_net.KEEP_INDICES
  # Empty weights: random init at the arch sizes, from the seed.
  section = ml_collections.ConfigDict(dict(kind="toy", weights="", arch=dict(input_size=32, embed_dim=8)))
  random_e_id = frozen.id_encoder(section, seed=1)
  assert random_e_id.config.embed_dim == 8
  assert (
    config_check.problems(ml_collections.ConfigDict(dict(id_encoder={"kind": "toy"}, landmarks={"kind": "toy"}))) == []
  )
  assert config_check.problems(ml_collections.ConfigDict(dict(id_encoder={"kind": "toy2"}))) != []
