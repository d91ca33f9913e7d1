"""Applications: image IO errors, frame writers, the method learning the toy world, and every command on
that trained toy model."""

from __future__ import annotations

import importlib
import json
import pathlib
import shutil

import numpy as np
import pytest
from absl import app as absl_app
from PIL import Image

from disentangle_jax.apps import images
from disentangle_jax.apps import media
from tests import cached_runs

# ---------------------------------------------------------------------------------------------------------------
# Image IO.
# ---------------------------------------------------------------------------------------------------------------


def _rgb(h=20, w=24, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_rgb_roundtrip_and_resize(tmp_path):
  arr = _rgb()
  images.write_image(tmp_path / "a.png", arr)
  np.testing.assert_array_equal(images.read_rgb_uint8(tmp_path / "a.png"), arr)
  batch = images.load_images([tmp_path / "a.png", tmp_path / "a.png"], 16)
  assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.float32
  assert -1.0 <= batch.min() and batch.max() <= 1.0


def test_unreadable_and_missing_images_name_the_file(tmp_path):
  (tmp_path / "bad.png").write_bytes(b"this is not a png")
  with pytest.raises(images.ImageReadError, match="bad.png: not a readable image"):
    images.read_rgb_uint8(tmp_path / "bad.png")
  with pytest.raises(images.ImageReadError, match="nope.jpg: no such image file"):
    images.read_rgb_uint8(tmp_path / "nope.jpg")
  good = tmp_path / "trunc.png"
  images.write_image(good, _rgb(64, 64))
  good.write_bytes(good.read_bytes()[:200])
  with pytest.raises(images.ImageReadError, match="trunc.png: not a readable image"):
    images.read_rgb_uint8(good)


def test_grayscale_is_refused_unless_converted(tmp_path):
  Image.fromarray(_rgb()[..., 0]).save(tmp_path / "gray.png")
  with pytest.raises(images.ImageReadError, match=r"gray.png: is grayscale \(mode L\)"):
    images.read_rgb_uint8(tmp_path / "gray.png")
  out = images.read_rgb_uint8(tmp_path / "gray.png", convert=True)
  assert out.shape == (20, 24, 3)
  np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_rgba_transparent_is_refused_unless_converted_opaque_is_fine(tmp_path):
  rgba = np.concatenate([_rgb(), np.full((20, 24, 1), 255, np.uint8)], -1)
  Image.fromarray(rgba).save(tmp_path / "opaque.png")
  np.testing.assert_array_equal(images.read_rgb_uint8(tmp_path / "opaque.png"), rgba[..., :3])
  rgba[:5, :5, 3] = 0
  Image.fromarray(rgba).save(tmp_path / "holes.png")
  with pytest.raises(images.ImageReadError, match=r"holes.png: has an alpha channel.*mode RGBA"):
    images.read_rgb_uint8(tmp_path / "holes.png")
  out = images.read_rgb_uint8(tmp_path / "holes.png", convert=True)
  assert (out[:5, :5] == 255).all()  # composited over white


# ---------------------------------------------------------------------------------------------------------------
# Frame writers.
# ---------------------------------------------------------------------------------------------------------------


def test_tile_and_strip_place_frames():
  frames = [np.full((4, 6, 3), 10 * i, np.uint8) for i in range(5)]
  grid = media.tile(frames, columns=2, pad=1)
  assert grid.shape == (3 * 4 + 2, 2 * 6 + 1, 3)
  assert (grid[5:9, 7:13] == 30).all() and (grid[10:14, 0:6] == 40).all() and (grid[10:14, 7:] == 255).all()
  assert media.strip(frames, pad=0).shape == (4, 30, 3)
  with pytest.raises(ValueError, match="frame 1 has shape"):
    media.tile([frames[0], np.zeros((5, 6, 3), np.uint8)])


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_animation_frame_counts(tmp_path, suffix):
  frames = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(7)]
  path = media.write_animation(tmp_path / f"a{suffix}", frames, fps=5)
  decoded, fps = media.read_video(path)
  assert len(decoded) == 7 and decoded[0].shape == (32, 32, 3) and fps == pytest.approx(5, rel=0.05)
  # Frames keep their order (mean brightness rises), within compression error.
  assert np.all(np.diff([f.mean() for f in decoded]) > 10)
  back = media.write_animation(tmp_path / f"b{suffix}", frames, fps=5, loop_back=True)
  assert media.count_frames(back) == 12


def _gif_timeline(path) -> list[tuple[np.ndarray, int]]:
  """(frame, duration in ms) of each frame a GIF stores."""
  out = []
  with Image.open(path) as img:
    for i in range(img.n_frames):
      img.seek(i)
      out.append((np.asarray(img.convert("RGB")), int(img.info["duration"])))
  return out


def test_gif_stores_identical_consecutive_frames_once_for_their_summed_duration(tmp_path):
  a, b = np.full((16, 16, 3), 40, np.uint8), np.full((16, 16, 3), 200, np.uint8)
  path = media.write_animation(tmp_path / "runs.gif", [a, a, a, b, a], fps=10)
  timeline = _gif_timeline(path)
  assert [int(f.mean()) for f, _ in timeline] == [40, 200, 40]
  assert [d for _, d in timeline] == [300, 100, 100]  # the play time of 5 frames at 10 fps
  assert media.count_frames(path) == 3
  mp4 = media.write_animation(tmp_path / "runs.mp4", [a, a, a, b, a], fps=10)
  assert media.count_frames(mp4) == 5


def test_animation_rejects_unknown_suffix(tmp_path):
  with pytest.raises(ValueError, match=r"a.avi: animations are written as .gif or .mp4"):
    media.write_animation(tmp_path / "a.avi", [np.zeros((8, 8, 3), np.uint8)])


# ---------------------------------------------------------------------------------------------------------------
# The method in the toy world, where its success is measured exactly: a short run of the main job's config,
# trained once per source version (cached in tmp) and shared by every test below.
# ---------------------------------------------------------------------------------------------------------------

TOY_STEPS = 200


def toy_config():
  """`configs/toy.py` (the README's main job, its `prepare` included) cut to TOY_STEPS steps and 128 scored pairs.

  The global batch stays the main job's 16 however many devices the tests force (8): per device 16 would train on
  128 images a step, 8 times the main job's work.
  """
  import jax  # pylint: disable=import-outside-toplevel

  from configs import toy  # pylint: disable=import-outside-toplevel

  c = toy.get_config()
  c.per_device_batch_size = max(1, c.per_device_batch_size // jax.device_count())
  c.num_steps = c.eval_every = c.checkpoint_every = c.image_every = TOY_STEPS
  c.log_every = TOY_STEPS // 4
  c.score_pairs = 128
  return c


@pytest.fixture(scope="session")
def toy_run():
  """(workdir, {"step", "evaluation", "score"}) of `toy_config()` trained once."""
  return cached_runs.trained("toy", lambda workdir: toy_config(), extra_sources=("disentangle_jax/toy",))


@pytest.fixture(scope="session")
def toy_model(toy_run):
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  return inference.load(toy_run[0])


@pytest.fixture
def cached_load(monkeypatch, toy_run, toy_model):
  """Commands load the session's model instead of rebuilding it (loading itself is tested separately)."""
  cached_runs.serve(monkeypatch, toy_run[0], toy_model)
  return toy_run[0]


@pytest.fixture(scope="session")
def faces(toy_run):
  """Held-out faces of the toy run's dataset: uint8 [8, R, R, 3] (validation images, never trained on)."""
  from disentangle_jax.data import pipeline  # pylint: disable=import-outside-toplevel

  pipe = pipeline.Pipeline(str(toy_run[0] / "data"), "validation", batch_size=8, seed=123, cross_every=1, num_steps=1)
  batch = next(iter(pipe))
  return images.to_uint8(np.concatenate([np.asarray(batch["id"]), np.asarray(batch["attr"])]))


def _write_faces(directory: pathlib.Path, faces_u8: np.ndarray, prefix: str) -> list[str]:
  directory.mkdir(parents=True, exist_ok=True)
  return [str(images.write_image(directory / f"{prefix}{i}.png", f)) for i, f in enumerate(faces_u8)]


def run_cli(name: str, argv: list[str]) -> None:
  """Runs `disentangle-jax <name> argv...` in this process (flags parsed as absl's app.run would)."""
  from disentangle_jax.cli import _flags  # pylint: disable=import-outside-toplevel

  module = importlib.import_module(f"disentangle_jax.cli.{name}")
  _flags.reset()
  rest = _flags.FLAGS([f"disentangle-jax {name}"] + argv)
  module.main(rest)


def test_a_toy_run_prepares_its_nets_and_writes_its_score(toy_run):
  """`prepare` trains the toy E_id, landmark net and E_attr's start into the workdir, the last step scores the model
  into score.json, and the workdir's config names the prepared nets (what `disentangle_jax.load(workdir)` builds)."""
  from disentangle_jax import train  # pylint: disable=import-outside-toplevel

  workdir, result = toy_run
  written = json.loads((workdir / train.SCORE_FILE).read_text())
  assert written == result["score"] and written["pairs"] == 128
  assert all(np.isfinite(v) for v in written.values())
  prepared = sorted(p.name.split("-")[0] for p in (workdir / train.PREPARED_DIR).iterdir())
  assert prepared == ["attr_encoder", "id_encoder", "landmarks"]
  recorded = json.loads((workdir / "config.json").read_text())
  for section in ("id_encoder", "landmarks", "attr_encoder"):
    assert recorded[section]["weights"].startswith(str(workdir / train.PREPARED_DIR)), section


def test_the_method_disentangles_the_toy_world(toy_run):
  """After TOY_STEPS steps, `swap(I_id, I_attr)` takes its identity factors from I_id and its attributes from I_attr.

  Accuracy is the share of held-out pairs whose output factors lie closer to the right source's than to the other's
  (0.5 by chance; a swap copying either input scores 0 on one group); R^2 is over the factors' values (0 for a
  constant guess). Measured on seeds 0 and 1 (config.seed, the suite's 8 forced CPU devices): identity accuracy
  0.953 / 0.898, attribute accuracy 0.969 / 0.898, identity R^2 0.796 / 0.535, attribute R^2 0.699 / 0.708,
  reconstruction PSNR 27.8 / 26.9 dB. The bounds leave at least 0.19 of accuracy, 0.23 of R^2 and 3.9 dB below the
  worst of these, about as much as the seeds differ by at most (0.07, 0.26 and 0.9 dB) and well above chance (0.5
  accuracy, R^2 0).
  """
  score = toy_run[1]["score"]
  assert score["identity/accuracy"] >= 0.7 and score["attribute/accuracy"] >= 0.7, score
  assert score["identity/r2"] >= 0.3 and score["attribute/r2"] >= 0.3, score
  assert score["reconstruction/psnr"] >= 23.0, score


def test_training_reconstructs_held_out_faces(toy_run, toy_model):
  """On held-out faces, `swap(I, I)` reproduces I far better than the untrained model and the mean image do.

  The untrained model is the same networks at step 0 (E_attr at its prepared start, M from its init seed): its error
  is what training started from. The mean image is what a model returning one output for every input reaches.
  Measured on 64 validation faces after TOY_STEPS steps (the suite's 8 devices): seed 0, 0.09 of the untrained
  error and 0.16 of the mean image's; seed 1, 0.14 and 0.20. The bounds leave a factor 2.9 or more.
  """
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel
  from disentangle_jax.data import pipeline  # pylint: disable=import-outside-toplevel

  pipe = pipeline.Pipeline(str(toy_run[0] / "data"), "validation", batch_size=64, seed=0, cross_every=0, num_steps=1)
  x = np.asarray(next(iter(pipe))["id"])

  def mse(a, b):  # in [0, 1] units, on the clipped output as the metrics use
    return float(np.mean(np.square((np.clip(np.asarray(a), -1, 1) - b) / 2.0)))

  trained = mse(toy_model.swap(x, x), x)
  untrained = mse(inference.build(toy_model.config).swap(x, x), x)
  constant = mse(np.broadcast_to(x.mean(0), x.shape), x)
  assert trained < 0.4 * untrained, (trained, untrained)
  assert trained < 0.6 * constant, (trained, constant)


# ---------------------------------------------------------------------------------------------------------------
# The inference API.
# ---------------------------------------------------------------------------------------------------------------


def test_loaded_model_reproduces_the_training_evaluation(toy_run, toy_model):
  """The load path (frozen nets from the seed, E_attr and M from the checkpoint) is the trained model."""
  import jax  # pylint: disable=import-outside-toplevel

  from disentangle_jax.apps import evaluation  # pylint: disable=import-outside-toplevel

  workdir, trained = toy_run
  config = toy_model.config
  batch = int(config.per_device_batch_size) * jax.local_device_count()
  ours = evaluation.Evaluator(toy_model).mean(
    evaluation.validation_pairs(str(workdir / "data"), batch, int(config.eval_batches), int(config.data.seed) + 1)
  )
  for key, value in trained["evaluation"].items():
    assert ours[key] == pytest.approx(value, rel=1e-3, abs=1e-4), key


def test_encode_render_map_agree_and_compile_once_per_shape(toy_model, faces):
  m = toy_model
  x = images.to_model(faces[:4])
  code, w = m.encode(x, x[::-1])
  assert code.shape == (4, m.code_dim) and w.shape == (4, m.w_dim)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(code)[:, : m.spec.id_dim], axis=-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(m.map(code), w, atol=1e-5)
  np.testing.assert_allclose(m.render(w), m.swap(x, x[::-1]), atol=1e-5)
  np.testing.assert_allclose(m.swap(faces[:4], faces[3::-1]), m.swap(x, x[::-1]), atol=1e-5)  # uint8 accepted
  fn = m._swap  # pylint: disable=protected-access
  before = fn._cache_size()  # pylint: disable=protected-access
  m.swap(x, x)
  m.swap(x[:2], x[:2])
  m.swap(x[2:], x[:2])
  assert fn._cache_size() == before + 1  # pylint: disable=protected-access
  with pytest.raises(ValueError, match="same batch size"):
    m.swap(x[:2], x[:3])
  with pytest.raises(ValueError, match=r"render: w must be \[B, 32\]"):
    m.render(np.zeros((2, 7)))


def test_load_errors_name_the_path(tmp_path):
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  with pytest.raises(FileNotFoundError, match="nowhere: no such model directory"):
    inference.load(tmp_path / "nowhere")
  (tmp_path / "empty").mkdir()
  with pytest.raises(inference.ModelLoadError, match="neither an exported model"):
    inference.load(tmp_path / "empty")
  (tmp_path / "run" / "checkpoints").mkdir(parents=True)
  (tmp_path / "run" / "config.json").write_text("{}")
  with pytest.raises(inference.ModelLoadError, match="no checkpoint yet"):
    inference.load(tmp_path / "run")


def test_load_and_commands_skip_a_damaged_newest_checkpoint(toy_run, toy_model, faces, tmp_path, caplog):
  """A newer checkpoint whose arrays were cut short: `load` and the commands use the intact one, with a warning."""
  import logging  # pylint: disable=import-outside-toplevel

  from disentangle_jax import checkpoints  # pylint: disable=import-outside-toplevel
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  workdir = tmp_path / "run"
  shutil.copytree(toy_run[0], workdir, ignore=shutil.ignore_patterns("events.out.*", "data"))
  (workdir / "data").symlink_to(toy_run[0] / "data")
  newer = checkpoints.checkpoint_dir(workdir) / str(TOY_STEPS + 100)
  shutil.copytree(checkpoints.checkpoint_dir(workdir) / str(TOY_STEPS), newer)
  for f in (newer / checkpoints.ITEM).rglob("*"):
    if f.is_file() and f.parent.name == "d":
      f.write_bytes(f.read_bytes()[:10])
  with caplog.at_level(logging.WARNING):
    loaded = inference.load(workdir)
  assert loaded.step == TOY_STEPS and f"{newer} is unusable" in caplog.text
  x = images.to_model(faces[:2])
  np.testing.assert_array_equal(loaded.swap(x, x[::-1]), toy_model.swap(x, x[::-1]))
  ids = _write_faces(tmp_path / "in", faces[:1], "i")
  run_cli("swap", [f"--model={workdir}", f"--id={ids[0]}", f"--attr={ids[0]}", f"--out={tmp_path / 'g.png'}"])
  assert images.read_rgb_uint8(tmp_path / "g.png").shape[0] == 2 * toy_model.resolution + 8
  assert checkpoints.steps(workdir) == [TOY_STEPS, TOY_STEPS + 100]  # loading never moves a checkpoint


def test_export_roundtrip_without_optimizer_state(toy_run, toy_model, faces, tmp_path):
  """An export holds E_attr, M and the random-init toy G, and carries the E_id the run prepared in its workdir, so
  it loads (the same swaps) after being moved; without `carry_from` E_id stays referenced by its path."""
  from disentangle_jax import export  # pylint: disable=import-outside-toplevel
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  dst = export.export_model(toy_model, tmp_path / "export", step=TOY_STEPS, carry_from=toy_run[0])
  meta = json.loads((dst / inference.EXPORT_META).read_text())
  assert meta["format"] == inference.EXPORT_FORMAT and meta["step"] == TOY_STEPS
  assert meta["config"]["id_encoder"]["weights"] == "frozen/id_encoder"
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  with ocp.StandardCheckpointer() as ckptr:
    stored = ckptr.metadata(dst / inference.EXPORT_PARAMS)
  stored = getattr(stored, "item_metadata", stored)
  # E_attr and M, and the toy renderer G (random-init: no weights file to reference). No optimiser state, no D_W.
  assert set(getattr(stored, "tree", stored)) == {"attr_encoder", "mapper", "frozen_generator"}
  moved = pathlib.Path(shutil.move(dst, tmp_path / "moved"))
  loaded = inference.load(moved)
  assert loaded.config.id_encoder.weights == str(moved / "frozen" / "id_encoder")
  x = images.to_model(faces[:3])
  np.testing.assert_allclose(loaded.swap(x, x[::-1]), toy_model.swap(x, x[::-1]), atol=1e-5)
  with pytest.raises(FileExistsError, match="not empty"):
    export.export_model(toy_model, moved)
  plain = export.export_model(toy_model, tmp_path / "plain")
  assert not (plain / "frozen").exists()
  recorded = json.loads((plain / inference.EXPORT_META).read_text())["config"]["id_encoder"]["weights"]
  assert recorded == toy_model.config.id_encoder.weights and pathlib.Path(recorded).is_relative_to(toy_run[0])


# ---------------------------------------------------------------------------------------------------------------
# Commands.
# ---------------------------------------------------------------------------------------------------------------


def test_swap_command_places_each_image(cached_load, toy_model, faces, tmp_path):
  ids = _write_faces(tmp_path / "in", faces[:2], "id")
  attrs = _write_faces(tmp_path / "in", faces[2:5], "attr")
  out = tmp_path / "grid.png"
  run_cli("swap", [f"--model={cached_load}", "--id", *ids, "--attr", *attrs, f"--out={out}", "--batch_size=4"])
  from disentangle_jax.apps import swap  # pylint: disable=import-outside-toplevel

  grid = images.read_rgb_uint8(out)
  r = toy_model.resolution
  assert grid.shape == (3 * r + 1 * 4 + 8, 4 * r + 2 * 4 + 8, 3)
  cell = lambda i, j: grid[swap.cell_origin(i, j, r, r)[0] :][:r, swap.cell_origin(i, j, r, r)[1] :][:, :r]
  assert (cell(0, 0) == 255).all()
  for j in range(3):
    np.testing.assert_array_equal(cell(0, j + 1), faces[2 + j])
  for i in range(2):
    np.testing.assert_array_equal(cell(i + 1, 0), faces[i])
    for j in range(3):
      expected = images.to_uint8(toy_model.swap(faces[i : i + 1], faces[2 + j : 3 + j]))[0]
      assert np.abs(cell(i + 1, j + 1).astype(int) - expected).max() <= 1


def test_interpolate_command_strip_and_animations(cached_load, toy_model, faces, tmp_path):
  paths = _write_faces(tmp_path / "in", faces[:3], "f")
  strip, gif = tmp_path / "strip.png", tmp_path / "morph.gif"
  run_cli(
    "interpolate",
    [
      f"--model={cached_load}",
      "--id",
      paths[0],
      paths[1],
      "--attr",
      paths[2],
      "--steps=5",
      f"--out={strip}",
      f"--animation={gif}",
    ],
  )
  r = toy_model.resolution
  s = images.read_rgb_uint8(strip)
  assert s.shape == (2 * r + 2, 5 * r + 4 * 2, 3)  # rows: W, code
  from disentangle_jax.apps import media  # pylint: disable=import-outside-toplevel

  assert media.count_frames(gif) == 5 + 3  # forth and back
  frames, _ = media.read_video(gif)
  assert frames[0].shape == (r, 2 * r, 3)
  # Both ends are plain swaps: identity of the endpoint with the held attributes, in either space.
  x = images.to_model(faces)
  for end, col in ((0, 0), (1, 4)):
    expected = images.to_uint8(toy_model.swap(x[end : end + 1], x[2:3]))[0]
    for row in (0, 1):
      got = s[row * (r + 2) : row * (r + 2) + r, col * (r + 2) : col * (r + 2) + r]
      assert np.abs(got.astype(int) - expected).max() <= 2
  mp4 = tmp_path / "attr.mp4"
  run_cli(
    "interpolate",
    [
      f"--model={cached_load}",
      "--id",
      paths[0],
      "--attr",
      paths[1],
      paths[2],
      "--space=code",
      "--steps=4",
      f"--out={tmp_path / 's2.png'}",
      f"--animation={mp4}",
      "--noloop_back",
    ],
  )
  assert media.count_frames(mp4) == 4
  assert images.read_rgb_uint8(tmp_path / "s2.png").shape == (r, 4 * r + 3 * 2, 3)
  with pytest.raises(absl_app.UsageError, match="two images for the factor that moves"):
    run_cli("interpolate", [f"--model={cached_load}", "--id", *paths[:2], "--attr", *paths[:2], f"--out={strip}"])


def test_video_command_frames_and_temporal_identity(cached_load, toy_model, faces, tmp_path):
  from disentangle_jax.apps import media  # pylint: disable=import-outside-toplevel

  clip = media.write_animation(tmp_path / "clip.mp4", [images.resize(f, 64) for f in faces[:7]], fps=12)
  idp = _write_faces(tmp_path, faces[:1], "id")[0]
  out = tmp_path / "out.mp4"
  run_cli("video", [f"--model={cached_load}", "--id", idp, "--attr", str(clip), f"--out={out}", "--batch_size=4"])
  frames, fps = media.read_video(out)
  assert len(frames) == 7 and frames[0].shape[:2] == (toy_model.resolution, toy_model.resolution)
  assert fps == pytest.approx(12, rel=0.05)
  metrics = json.loads(out.with_suffix(".json").read_text())
  assert metrics["frames"] == 7 and -1 <= metrics["id_similarity_min"] <= metrics["id_similarity_mean"] <= 1
  assert metrics["id_similarity_std"] >= 0 and "consecutive_similarity_mean" in metrics
  run_cli(
    "video",
    [f"--model={cached_load}", "--id", idp, "--attr", str(clip), f"--out={tmp_path / 'o.gif'}", "--max_frames=3"],
  )
  # A GIF stores a run of identical frames once, for the run's duration: check the frames where they differ, in
  # order, and the play time of 3 frames at the clip's 12 fps (GIF durations are whole centiseconds: 83 ms -> 80).
  timeline = _gif_timeline(tmp_path / "o.gif")
  per_frame = round(1000 / 12) // 10 * 10
  assert sum(d for _, d in timeline) == 3 * per_frame
  shown = [f for f, d in timeline for _ in range(d // per_frame)]
  assert len(shown) == 3
  for got, want in zip(shown, frames[:3]):  # the GIF's frames are the MP4's outputs, up to palette and H.264 error
    assert np.abs(got.astype(int) - want.astype(int)).mean() < 12


def test_evaluate_command_on_validation_and_photos(cached_load, faces, tmp_path):
  _write_faces(tmp_path / "photos", faces[:5], "p")
  out = tmp_path / "eval" / "metrics.json"
  run_cli(
    "evaluate",
    [f"--model={cached_load}", f"--photos={tmp_path / 'photos'}", f"--out={out}", "--batch_size=4", "--eval_batches=1"],
  )
  result = json.loads(out.read_text())
  keys = {
    "similarity/id_to_out",
    "similarity/attr_to_out",
    "similarity/id_to_attr",
    "similarity/score",
    "landmarks/distance",
    "reconstruction/mse",
    "reconstruction/psnr",
    "reconstruction/ms_ssim",
    "reconstruction/id_similarity",
  }
  assert keys <= set(result["validation"]) and keys <= set(result["photos"])
  assert result["photos"]["examples"] == 5 and result["validation"]["examples"] == 4
  assert result["photos"]["similarity/score"] == pytest.approx(
    result["photos"]["similarity/id_to_out"] - result["photos"]["similarity/attr_to_out"], abs=1e-5
  )
  assert list((tmp_path / "eval" / "eval").glob("events.out.tfevents.*"))


def test_export_command_then_swap_from_the_export(cached_load, toy_model, faces, tmp_path):
  run_cli("export", [f"--model={cached_load}", f"--out={tmp_path / 'exp'}"])
  ids = _write_faces(tmp_path, faces[:1], "i")
  run_cli("swap", [f"--model={tmp_path / 'exp'}", f"--id={ids[0]}", f"--attr={ids[0]}", f"--out={tmp_path / 'g.png'}"])
  assert images.read_rgb_uint8(tmp_path / "g.png").shape[0] == 2 * toy_model.resolution + 8


def test_commands_report_bad_inputs_clearly(cached_load, faces, tmp_path):
  good = _write_faces(tmp_path, faces[:1], "ok")[0]
  (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
  Image.fromarray(faces[0][..., 0]).save(tmp_path / "gray.png")
  Image.fromarray(np.concatenate([faces[0], np.zeros_like(faces[0][..., :1])], -1)).save(tmp_path / "rgba.png")
  base = [f"--model={cached_load}", f"--out={tmp_path / 'g.png'}"]
  cases = [
    (["--id", str(tmp_path / "broken.png"), "--attr", good], "broken.png: not a readable image"),
    (["--id", good, "--attr", str(tmp_path / "gray.png")], r"gray.png: is grayscale.*--convert"),
    (["--id", str(tmp_path / "rgba.png"), "--attr", good], "rgba.png: has an alpha channel"),
    (["--id", str(tmp_path / "missing.png"), "--attr", good], "missing.png: no such image file"),
  ]
  for argv, message in cases:
    with pytest.raises(absl_app.UsageError, match=message):
      run_cli("swap", base + argv)
  run_cli("swap", base + ["--id", good, "--attr", str(tmp_path / "gray.png"), "--convert"])
  with pytest.raises(absl_app.UsageError, match="no-model: no such model directory"):
    run_cli("swap", [f"--model={tmp_path / 'no-model'}", "--id", good, "--attr", good, f"--out={tmp_path / 'x.png'}"])
  with pytest.raises(absl_app.UsageError, match=r"missing required flag\(s\): --attr"):
    run_cli("swap", [f"--model={cached_load}", "--id", good, f"--out={tmp_path / 'x.png'}"])


def test_file_lists_after_id_and_attr():
  """`--id a b --attr c d` (the issue's syntax), mixed with other flags before and after."""
  from disentangle_jax.cli import _flags  # pylint: disable=import-outside-toplevel

  f = _flags.FLAGS
  for argv, ids, attrs in (
    (
      [
        "--model=m",
        "--id",
        "a.png",
        "b.png",
        "--attr",
        "c.png",
        "d.png",
        "--all-faces",
        "--out",
        "g.png",
        "--batch_size",
        "3",
      ],
      ["a.png", "b.png"],
      ["c.png", "d.png"],
    ),
    (
      ["--id=a.png,b.png", "--attr", "c.png", "--out=g.png", "--all_faces", "--batch_size=3"],
      ["a.png", "b.png"],
      ["c.png"],
    ),
    (
      ["--attr", "c.png", "--id", "a.png", "--id", "b.png", "--all-faces", "--out=g.png", "--batch_size=3"],
      ["a.png", "b.png"],
      ["c.png"],
    ),
  ):
    _flags.reset()
    assert _flags.finish(f(["prog"] + argv)) == ["prog"]
    assert (f.id, f.attr, f.out, f.all_faces, f.batch_size) == (ids, attrs, "g.png", True, 3)
  _flags.reset()
  with pytest.raises(absl_app.UsageError, match="unexpected arguments: stray.png"):
    _flags.no_positional(_flags.finish(f(["prog", "--out=g.png", "stray.png"])))
  _flags.reset()
