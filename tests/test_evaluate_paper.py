"""`disentangle-jax evaluate`'s paper table, training's ArcFace / FID logging, and `swap --pairs` / `--cells`.

The model is a stand-in (`tests/standins.py`) trained two steps once per source version (`tests/cached_runs.py`);
its config names a tiny random-weight ArcFace and FID Inception, written to disk the way their converters read them
(`tests/metric_weights.py`), so its training logged both. Pose and expression are measured by the face mesh with
the mediapipe wheel's real weights, which with BlazeFace also align the real photos (`skimage.data`'s astronaut and
cameraman) through `--align` (conftest's `wheel`).
"""

from __future__ import annotations

import copy
import importlib
import json
import pathlib
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from absl import app as absl_app

from disentangle_jax import fid
from disentangle_jax.apps import images
from disentangle_jax.metrics import identity
from disentangle_jax.metrics import nets
from disentangle_jax.metrics import periodic
from tests import cached_runs
from tests import metric_weights
from tests import standins

WEIGHTS = "metric_weights"
FID_SAMPLES = 8
BATCH = 8  # evaluate's --batch_size: the batch the training evaluation measured, so their programs are shared
PAPER_KEYS = {
  "arcface/id_to_out",
  "arcface/attr_to_out",
  "arcface/id_to_attr",
  "fid/real",
  "fid/generator",
  "pose/error",
  "pose/yaw",
  "pose/pitch",
  "pose/roll",
  "expression/error",
  "reconstruction/psnr",
  "reconstruction/ms_ssim",
  "similarity/id_to_out",
}


def paper_config(workdir: pathlib.Path) -> ml_collections.ConfigDict:
  """The stand-in config with ArcFace and FID on a sample in its periodic evaluation (at its last step)."""
  arc, inception = metric_weights.paths(workdir / WEIGHTS)
  overrides = {"eval.arcface_weights": arc, "eval.fid_weights": inception, "eval.fid_samples": FID_SAMPLES}
  return standins.tiny_config(num_steps=2, eval_every=2, **overrides)


@pytest.fixture(scope="module")
def paper_run():
  """(workdir, the training's evaluation) of the stand-in model; stand-ins stay installed for the module."""
  with pytest.MonkeyPatch.context() as mp:
    standins.install(mp)
    yield cached_runs.trained(
      "standin-paper",
      paper_config,
      prepare=lambda workdir: metric_weights.write(workdir / WEIGHTS),
      extra_sources=("tests/standins.py", "tests/metric_weights.py"),
    )


@pytest.fixture(scope="module")
def paper_model(paper_run):
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  return inference.load(paper_run[0])


@pytest.fixture
def model_dir(monkeypatch, paper_run, paper_model) -> pathlib.Path:
  cached_runs.serve(monkeypatch, paper_run[0], paper_model)
  return paper_run[0]


def run_cli(name: str, argv: list[str]) -> None:
  from disentangle_jax.cli import _flags  # pylint: disable=import-outside-toplevel

  module = importlib.import_module(f"disentangle_jax.cli.{name}")
  _flags.reset()
  module.main(_flags.FLAGS([f"disentangle-jax {name}"] + argv))


def _faces(directory: pathlib.Path, names: list[str], seed: int) -> list[str]:
  directory.mkdir(parents=True, exist_ok=True)
  rng = np.random.RandomState(seed)
  return [
    str(images.write_image(directory / n, rng.randint(0, 256, (standins.RESOLUTION,) * 2 + (3,), np.uint8)))
    for n in names
  ]


def _real_photos(directory: pathlib.Path) -> list[str]:
  """Unaligned photos of real faces from `skimage.data` (no download): the astronaut, her mirror image, and the
  cameraman (grayscale, stored as RGB)."""
  import skimage.data  # pylint: disable=import-outside-toplevel

  directory.mkdir(parents=True, exist_ok=True)
  astronaut, camera = skimage.data.astronaut(), skimage.data.camera()
  photos = {"astronaut.png": astronaut, "astronaut_mirrored.png": astronaut[:, ::-1], "camera.png": camera[..., None]}
  return [str(images.write_image(directory / n, np.broadcast_to(p, p.shape[:2] + (3,)))) for n, p in photos.items()]


def _mean_id_to_attr(embed, ids: np.ndarray, attrs: np.ndarray) -> float:
  """The mean ArcFace cosine of the rows of ids and attrs, embedded BATCH rows at a time as `evaluate` embeds them
  (the last batch padded): the compiled program `evaluate` made is reused."""

  def embedded(x: np.ndarray) -> np.ndarray:
    padded = np.concatenate([x, np.repeat(x[-1:], -len(x) % BATCH, axis=0)])
    return np.concatenate([embed(padded[i : i + BATCH]) for i in range(0, len(padded), BATCH)])[: len(x)]

  return float(identity.cosine(embedded(ids), embedded(attrs)).mean())


def test_training_logged_arcface_and_fid_with_the_configured_nets(paper_run):
  workdir, result = paper_run
  scores = result["evaluation"]
  assert {"arcface/id_to_out", "arcface/attr_to_out", "arcface/id_to_attr", "fid"} <= set(scores)
  assert all(-1 <= scores[f"arcface/{k}"] <= 1 for k in ("id_to_out", "attr_to_out", "id_to_attr"))
  assert np.isfinite(scores["fid"]) and scores["fid"] > 0
  # id <-> attr does not depend on the model: the configured ArcFace on the sample training drew gives it again.
  from disentangle_jax.data import pipeline  # pylint: disable=import-outside-toplevel

  config = paper_config(workdir)
  batch = jax.local_device_count() * int(config.per_device_batch_size)  # as training drew its sample
  pipe = pipeline.Pipeline(str(workdir / "data"), "validation", batch_size=batch, seed=int(config.data.seed) + 1,
                           cross_every=1, num_steps=-(-FID_SAMPLES // batch))  # fmt: skip
  drawn = list(pipe)
  embed = nets.load_arcface(config.eval.arcface_weights)
  ids, attrs = (np.clip(np.concatenate([b[k] for b in drawn]), -1, 1)[:FID_SAMPLES] for k in ("id", "attr"))
  assert scores["arcface/id_to_attr"] == pytest.approx(_mean_id_to_attr(embed, ids, attrs), abs=1e-5)
  assert not periodic.PaperMetrics(standins.tiny_config()).active  # the default config: nothing new runs


def test_evaluate_writes_the_paper_table_on_the_model_and_aligned_real_photos(
  model_dir, paper_model, wheel, tmp_path, capsys, monkeypatch
):
  from disentangle_jax.apps import align  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import evaluation  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import faces  # pylint: disable=import-outside-toplevel
  from disentangle_jax.cli import _common  # pylint: disable=import-outside-toplevel

  locate = faces.MediaPipeLocator.from_path(wheel)  # what --align --detector=wheel builds; shared with the check
  monkeypatch.setattr(_common, "locator", lambda: locate)

  photos = _real_photos(tmp_path / "photos")
  arc, inception = metric_weights.paths(model_dir / WEIGHTS)
  out, cache = tmp_path / "table.json", tmp_path / "fid_cache"
  run_cli(
    "evaluate",
    [
      f"--model={model_dir}",
      f"--photos={tmp_path / 'photos'}",
      "--align",
      f"--detector={wheel}",  # also the face mesh that measures pose (the model trained with FAN)
      f"--arcface={arc}",
      f"--fid_inception={inception}",
      f"--fid_reference={tmp_path / 'photos'}",  # the raw photos, centre-cropped, as the real faces
      f"--fid_cache={cache}",
      "--num_pairs=3",
      f"--batch_size={BATCH}",
      f"--out={out}",
    ],
  )
  result = json.loads(out.read_text())
  for split in ("validation", "photos"):
    assert PAPER_KEYS <= set(result[split]), PAPER_KEYS - set(result[split])
    assert result[split]["examples"] == 3
    for key in PAPER_KEYS:
      assert np.isfinite(result[split][key]), (split, key)
    assert result[split]["fid/real"] > 0 and result[split]["pose/error"] >= 0
  assert result["skipped"] == {}
  assert result["nets"]["pose and expression"] == f"mediapipe_facemesh ({wheel})"

  # ArcFace id <-> attr by hand: the validation split's first 3 cross pairs, and the photos aligned as --align does
  # (photo i as identity, photo i+1 as attributes).
  embed = nets.load_arcface(arc)
  config = paper_model.config
  ids, attrs, _ = next(evaluation.validation_pairs(str(model_dir / "data"), BATCH, 1, int(config.data.seed) + 1))
  assert result["validation"]["arcface/id_to_attr"] == pytest.approx(
    _mean_id_to_attr(embed, ids[:3], attrs[:3]), abs=1e-5
  )
  aligned = images.to_model(
    np.stack(
      [images.resize(align.align_image(images.read_rgb_uint8(p), locate)[0].image, standins.RESOLUTION) for p in photos]
    )
  )
  want = _mean_id_to_attr(embed, aligned, np.roll(aligned, -1, axis=0))
  assert result["photos"]["arcface/id_to_attr"] == pytest.approx(want, abs=1e-5)

  # The real faces' statistics were cached under the folder's files and the FID Inception's weights: asked again,
  # they come from the cache without a pass over the images.
  (entry,) = cache.glob("stats_*.npz")
  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(fid, "statistics_of_images", lambda *a, **k: pytest.fail("recomputed cached statistics"))
    net = nets.load_fid_inception(inception)
    mu, _ = fid.folder_statistics(net, tmp_path / "photos", standins.RESOLUTION, BATCH, cache_dir=cache)
  with np.load(entry) as f:
    np.testing.assert_array_equal(mu, f["mu"])

  table = out.with_suffix(".md").read_text()
  assert "| metric | validation | photos |" in table
  for label in ("ArcFace similarity id -> out", "FID swaps vs real faces", "FID swaps vs generator samples",
                "pose error", "expression error", "reconstruction PSNR"):  # fmt: skip
    assert label in table
  printed = capsys.readouterr()
  assert "ArcFace similarity id -> out" in printed.out
  assert "photos: [" in printed.err and "FID reference: [" in printed.err  # the progress bars


def test_metrics_without_weights_are_skipped_with_the_reason(paper_run, paper_model, monkeypatch, tmp_path, capsys):
  """The model config's eval section names weights that are gone, and no landmark weights are found."""
  workdir, _ = paper_run
  config = ml_collections.ConfigDict(paper_model.config.to_dict())
  config.eval.arcface_weights, config.eval.fid_weights = str(tmp_path / "gone.npz"), str(tmp_path / "gone")
  model = copy.copy(paper_model)
  model.config = config
  (tmp_path / "model").mkdir()
  cached_runs.serve(monkeypatch, tmp_path / "model", model)
  out = tmp_path / "t.json"
  run_cli(
    "evaluate",
    [f"--model={tmp_path / 'model'}", f"--data_dir={workdir / 'data'}", f"--detector={tmp_path / 'no_mediapipe'}",
     "--num_pairs=2", f"--batch_size={BATCH}", f"--out={out}"],
  )  # fmt: skip
  printed = capsys.readouterr().out
  assert f"skipping arcface identity: ArcFace weights {tmp_path / 'gone.npz'}: no such file or folder" in printed
  assert f"skipping FID: FID Inception weights {tmp_path / 'gone'}: no such file or folder" in printed
  assert "skipping pose and expression: no mediapipe_facemesh landmark weights (pass --pose_landmarks" in printed
  result = json.loads(out.read_text())
  assert set(result["skipped"]) == {nets.ARCFACE, nets.FID, nets.POSE}
  assert not any(k.startswith(("arcface/", "fid/", "pose/")) for k in result["validation"])
  assert "reconstruction/psnr" in result["validation"] and "Skipped:" in out.with_suffix(".md").read_text()


def test_a_port_missing_from_the_installation_is_skipped_not_fatal(tmp_path):
  weights = tmp_path / "w"
  weights.write_bytes(b"")

  def missing(path):
    raise ImportError("No module named 'disentangle_jax.third_party.arcface'")

  built = nets.build(arcface=str(weights), factories=nets.Factories(arcface=missing))
  assert built.arcface is None and "not available in this installation" in built.skipped[nets.ARCFACE]
  assert "no FID Inception weights (not configured)" == built.skipped[nets.FID]
  assert nets.evaluation_landmarks("fan") == "mediapipe_facemesh" and nets.evaluation_landmarks("facemesh") == "fan"


def test_swap_pairs_by_name_and_cells(model_dir, paper_model, tmp_path):
  ids = _faces(tmp_path / "ids", ["alice.png", "bob.png"], 2)
  attrs = _faces(tmp_path / "attrs", ["bob.png", "alice.jpg"], 3)
  run_cli("swap", [f"--model={model_dir}", "--pairs", "--id", str(tmp_path / "ids"), "--attr", str(tmp_path / "attrs"),
                   f"--out={tmp_path / 'out'}"])  # fmt: skip
  assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alice.png", "bob.png"]
  size = standins.RESOLUTION
  want = images.to_uint8(paper_model.swap(images.load_images([ids[0]], size), images.load_images([attrs[1]], size)))[0]
  got = images.read_rgb_uint8(tmp_path / "out" / "alice.png")
  assert np.abs(got.astype(int) - want).max() <= 1  # alice's identity with alice's attributes, not bob's

  shutil.copy(attrs[0], tmp_path / "attrs" / "carol.png")
  with pytest.raises(absl_app.UsageError, match=r"unmatched: carol \(attribute .*carol.png has no identity file\)"):
    run_cli("swap", [f"--model={model_dir}", "--pairs", "--id", *ids, "--attr", str(tmp_path / "attrs"),
                     f"--out={tmp_path / 'out2'}"])  # fmt: skip

  third = _faces(tmp_path / "more", ["c.png"], 4)
  grid = tmp_path / "grid.png"
  run_cli("swap", [f"--model={model_dir}", "--id", *ids, "--attr", *attrs, *third, f"--out={grid}",
                   f"--cells={tmp_path / 'cells'}"])  # fmt: skip
  predictions = sorted((tmp_path / "cells").rglob("prediction_*.png"))
  assert len(predictions) == 2 * 3 and grid.is_file()
  assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == ["attr_0", "attr_1", "attr_2"]
  cell = images.read_rgb_uint8(tmp_path / "cells" / "attr_1" / "prediction_0.png")
  assert np.abs(cell.astype(int) - want).max() <= 1  # cell (alice, attribute 1 = alice.jpg)


def test_eval_config_fields_default_off_take_overrides_and_are_validated(monkeypatch, capsys, tmp_path):
  import sys  # pylint: disable=import-outside-toplevel
  import types  # pylint: disable=import-outside-toplevel

  import disentangle_jax  # pylint: disable=import-outside-toplevel
  from disentangle_jax import config_check  # pylint: disable=import-outside-toplevel
  from disentangle_jax import main  # pylint: disable=import-outside-toplevel
  from disentangle_jax.configs import paper  # pylint: disable=import-outside-toplevel

  c = paper.get_config()
  assert c.eval.arcface_weights is None and c.eval.fid_weights is None and not periodic.PaperMetrics(c).active
  c.eval.arcface_weights, c.eval.fid_samples = "", 1
  assert config_check.problems(c) == [
    "config.eval.arcface_weights='': must be None (off) or a path",
    "config.eval.fid_samples=1: must be an integer >= 2 (FID needs a covariance)",
  ]
  seen = []
  fake = types.ModuleType("disentangle_jax.train")
  fake.train_and_evaluate = lambda config, workdir: (
    seen.append(config) or types.SimpleNamespace(step=0, preempted=False, score=None)
  )
  monkeypatch.setitem(sys.modules, "disentangle_jax.train", fake)
  monkeypatch.setattr(disentangle_jax, "train", fake, raising=False)
  with pytest.raises(SystemExit):
    main.run(
      ["disentangle-jax", "train", f"--workdir={tmp_path}", "--config.eval.arcface_weights=w/arc.pth",
       "--config.eval.fid_samples=8"]
    )  # fmt: skip
  assert seen and seen[0].eval.arcface_weights == "w/arc.pth" and seen[0].eval.fid_samples == 8
