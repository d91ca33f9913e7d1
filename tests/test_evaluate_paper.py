"""`disentangle-jax evaluate`'s paper table, training's ArcFace / FID logging, and `swap --pairs` / `--cells`.

Everything runs on a stand-in model trained two steps (`tests/standins.py`) with fake metric networks put in through
the injection point `metrics.nets.FACTORIES`: fixed random projections for ArcFace and the FID Inception, a face
mesh template posed by each image's brightness for the landmark net, and the textbook Frechet distance.
"""

from __future__ import annotations

import importlib
import json
import pathlib
import shutil

import numpy as np
import pytest
import scipy.linalg
from absl import app as absl_app

from disentangle_jax.apps import images
from disentangle_jax.metrics import identity
from disentangle_jax.metrics import nets
from disentangle_jax.metrics import periodic
from disentangle_jax.metrics import pose
from disentangle_jax.metrics import templates
from disentangle_jax.third_party.mediapipe_facemesh import mesh_indices
from tests import standins


def _projection(dim: int, seed: int):
  def embed(x):
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    return flat @ np.random.RandomState(seed).randn(flat.shape[1], dim)

  return embed


def _fake_landmarks(kind: str, path: str) -> nets.Landmarker:
  del path
  t = templates.template(kind)

  def points(x):
    x = np.asarray(x, np.float64)
    out = []
    for img in x:
      p = 1.5 * t @ pose.rotation_from_angles(30.0 * img.mean(), 0.0, 0.0).T + 96.0
      p[[17, 84, 314], 1] += 8.0 * img[..., 1].std()  # the lower lip, by the image's green spread
      out.append(p)
    return np.stack(out)

  return nets.Landmarker(kind, points, 192.0, mesh_indices.KEEP_INDICES)


def _frechet(mu1, s1, mu2, s2):
  covmean = scipy.linalg.sqrtm(s1 @ s2).real
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


FAKES = nets.Factories(
  arcface=lambda path: _projection(8, 1),
  fid_inception=lambda path: _projection(5, 2),
  landmarks=_fake_landmarks,
  fid=lambda: ((lambda f: (f.mean(0), np.cov(f, rowvar=False))), _frechet),
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(workdir, training result, the fake weight file) of a stand-in model whose config names metric weights."""
  from disentangle_jax import train  # pylint: disable=import-outside-toplevel

  with pytest.MonkeyPatch.context() as mp:
    standins.install(mp)
    mp.setattr(nets, "FACTORIES", FAKES)
    root = tmp_path_factory.mktemp("paper")
    weights = root / "fake_weights.bin"
    weights.write_bytes(b"fake")
    overrides = {"eval.arcface_weights": str(weights), "eval.fid_weights": str(weights), "eval.fid_samples": 6}
    config = standins.tiny_config(num_steps=2, eval_every=2, **overrides)
    result = train.train_and_evaluate(config, str(root / "run"))
    yield root / "run", result, weights


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


def test_training_logs_arcface_and_fid_only_when_configured(trained):
  _, result, _ = trained
  scores = result.evaluations[2]
  assert {"arcface/id_to_out", "arcface/attr_to_out", "arcface/id_to_attr", "fid"} <= set(scores)
  assert all(-1 <= scores[f"arcface/{k}"] <= 1 for k in ("id_to_out", "attr_to_out", "id_to_attr"))
  assert np.isfinite(scores["fid"]) and scores["fid"] > 0
  assert not periodic.PaperMetrics(standins.tiny_config()).active  # the default config: nothing new runs


def test_evaluate_writes_the_paper_table(trained, tmp_path, capsys):
  workdir, _, weights = trained
  photos = _faces(tmp_path / "photos", [f"p{i}.png" for i in range(4)], 0)
  _faces(tmp_path / "real", [f"r{i}.png" for i in range(5)], 1)
  out = tmp_path / "table.json"
  with pytest.MonkeyPatch.context() as mp:
    standins.install(mp)
    mp.setattr(nets, "FACTORIES", FAKES)
    run_cli(
      "evaluate",
      [
        f"--model={workdir}",
        f"--photos={tmp_path / 'photos'}",
        f"--arcface={weights}",
        f"--fid_inception={weights}",
        f"--fid_reference={tmp_path / 'real'}",
        f"--pose_landmarks={weights}",
        "--num_pairs=3",
        "--batch_size=2",
        f"--out={out}",
      ],
    )
  result = json.loads(out.read_text())
  paper = {
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
  for split in ("validation", "photos"):
    assert paper <= set(result[split]), paper - set(result[split])
    assert result[split]["examples"] == 3
    assert result[split]["pose/error"] > 0 and result[split]["fid/real"] > 0
  assert result["skipped"] == {}
  # The photos' pairs are photo i -> photo i+1: the fake ArcFace's id <-> attr cosine can be checked by hand.
  x = images.load_images(photos, standins.RESOLUTION)
  embed = FAKES.arcface("")
  expected = identity.cosine(embed(x[:3]), embed(x[1:4])).mean()
  assert result["photos"]["arcface/id_to_attr"] == pytest.approx(expected, abs=1e-5)
  table = out.with_suffix(".md").read_text()
  assert "| metric | validation | photos |" in table
  for label in ("ArcFace similarity id -> out", "FID swaps vs real faces", "pose error", "expression error"):
    assert label in table
  assert "ArcFace similarity id -> out" in capsys.readouterr().out


def test_metrics_without_weights_are_skipped_with_the_reason(trained, tmp_path, capsys):
  workdir, _, weights = trained
  out = tmp_path / "t.json"
  moved = weights.with_suffix(".away")
  weights.rename(moved)  # the config's eval paths now name a missing file
  try:
    with pytest.MonkeyPatch.context() as mp:
      standins.install(mp)
      mp.setattr(nets, "FACTORIES", FAKES)
      run_cli("evaluate", [f"--model={workdir}", "--num_pairs=2", "--batch_size=2", f"--out={out}"])
  finally:
    moved.rename(weights)
  printed = capsys.readouterr().out
  assert f"skipping arcface identity: ArcFace weights {weights}: no such file or folder" in printed
  assert f"skipping FID: FID Inception weights {weights}: no such file or folder" in printed
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


def test_swap_pairs_by_name_and_cells(trained, tmp_path):
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  workdir, _, _ = trained
  ids = _faces(tmp_path / "ids", ["alice.png", "bob.png"], 2)
  attrs = _faces(tmp_path / "attrs", ["bob.png", "alice.jpg"], 3)
  with pytest.MonkeyPatch.context() as mp:
    standins.install(mp)
    run_cli("swap", [f"--model={workdir}", "--pairs", "--id", str(tmp_path / "ids"), "--attr", str(tmp_path / "attrs"),
                     f"--out={tmp_path / 'out'}"])  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["alice.png", "bob.png"]
    model = inference.load(workdir)
    want = images.to_uint8(model.swap(images.load_images([ids[0]], 16), images.load_images([attrs[1]], 16)))[0]
    got = images.read_rgb_uint8(tmp_path / "out" / "alice.png")
    assert np.abs(got.astype(int) - want).max() <= 1  # alice's identity with alice's attributes, not bob's

    shutil.copy(attrs[0], tmp_path / "attrs" / "carol.png")
    with pytest.raises(absl_app.UsageError, match=r"unmatched: carol \(attribute .*carol.png has no identity file\)"):
      run_cli("swap", [f"--model={workdir}", "--pairs", "--id", *ids, "--attr", str(tmp_path / "attrs"),
                       f"--out={tmp_path / 'out2'}"])  # fmt: skip

    third = _faces(tmp_path / "more", ["c.png"], 4)
    grid = tmp_path / "grid.png"
    run_cli("swap", [f"--model={workdir}", "--id", *ids, "--attr", *attrs, *third, f"--out={grid}",
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
