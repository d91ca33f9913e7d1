"""The command line's expected failures: one line on stderr, a documented exit status, no traceback, no work.

Most cases run `main.run` in this process (fast) with the model loader replaced by one that fails the test, which
shows that the paths were checked before any model loads. A few run the real `python -m disentangle_jax` as a
subprocess: the truth for "exactly one line, no traceback, no log noise" (none of them reaches TensorFlow).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types

import pytest

import disentangle_jax
from disentangle_jax import config_check
from disentangle_jax import errors
from disentangle_jax import main
from disentangle_jax import train as train_lib
from disentangle_jax.configs import paper
from disentangle_jax.configs import smoke

# ml_collections loads config files with the deprecated `load_module`.
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *args: str) -> tuple[int, list[str]]:
  """(exit status, stderr lines) of `disentangle-jax args...` run in this process."""
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    main.run(["disentangle-jax", *args])
  code = exit_info.value.code
  return 0 if code is None else code, capsys.readouterr().err.splitlines()


def run_subprocess(tmp_path, *args: str) -> tuple[int, list[str]]:
  """(exit status, stderr lines) of the real command line in a fresh interpreter."""
  env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
  proc = subprocess.run(
    [sys.executable, "-m", "disentangle_jax", *args],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
    check=False,
  )
  return proc.returncode, proc.stderr.splitlines()


def one_line(lines: list[str], prog: str) -> str:
  """The single stderr line, checked to be the command's error line."""
  assert len(lines) == 1, lines
  assert lines[0].startswith(f"disentangle-jax {prog}: error: "), lines
  return lines[0]


@pytest.fixture
def no_model(monkeypatch):
  """Loading a model fails the test: every case here must be refused before."""
  from disentangle_jax.cli import _common  # pylint: disable=import-outside-toplevel

  def load_model():
    raise AssertionError("a model was loaded before the paths were checked")

  monkeypatch.setattr(_common, "load_model", load_model)


@pytest.fixture
def fake_train(monkeypatch):
  """`disentangle_jax.train` replaced by a stand-in recording its calls; `.result` is what it returns."""
  fake = types.ModuleType("disentangle_jax.train")
  fake.calls = []
  fake.result = train_lib.Result(step=0, history={}, evaluations={})

  def train_and_evaluate(config, workdir):
    fake.calls.append((config, workdir))
    if isinstance(fake.result, BaseException):
      raise fake.result
    return fake.result

  fake.train_and_evaluate = train_and_evaluate
  monkeypatch.setitem(sys.modules, "disentangle_jax.train", fake)
  monkeypatch.setattr(disentangle_jax, "train", fake, raising=False)
  return fake


@pytest.fixture
def image(tmp_path):
  from PIL import Image  # pylint: disable=import-outside-toplevel

  path = tmp_path / "face.png"
  Image.new("RGB", (8, 8)).save(path)
  return str(path)


# ---------------------------------------------------------------------------------------------------------------
# Configs.
# ---------------------------------------------------------------------------------------------------------------


def test_validate_accepts_the_shipped_configs_and_lists_every_problem():
  for config in (paper.get_config(), smoke.get_config(), paper.get_config("runlocal,generator=stylegan1")):
    config_check.validate(config)
  c = smoke.get_config()
  c.per_device_batch_size = -1
  c.eval_every = 0
  c.optim.lr = -1e-4
  c.loss.identity = math.nan
  c.mapper.hidden = (64, 0)
  c.data.num_train = 0
  with pytest.raises(errors.ConfigError) as e:
    config_check.validate(c)
  assert str(e.value).splitlines() == [
    "config.loss.identity=nan: must be a finite number",
    "config.per_device_batch_size=-1: must be a positive integer",
    "config.data.num_train=0: must be a positive integer",
    "config.eval_every=0: must be a positive integer (an every-N-steps interval)",
    "config.optim.lr=-0.0001: must be >= 0",
    "config.mapper.hidden=(64, 0): must be a sequence of positive integer layer widths",
  ]
  assert isinstance(e.value, errors.UserError) and isinstance(e.value, ValueError)
  c = smoke.get_config()
  c.num_steps = 0
  with pytest.raises(errors.ConfigError, match="allow_empty"):
    config_check.validate(c)
  config_check.validate(c, allow_empty=True)


def test_unknown_config_key_names_the_closest_keys(capsys):
  code, err = run(capsys, "train", "--config.optim.lrr=1e-4")
  assert code == 2
  assert one_line(err, "train").endswith("--config.optim.lrr: no such config key; did you mean: optim.lr?")
  code, err = run(capsys, "train", "--config=" + paper.__file__, "--config.per_device_batch=4")
  assert code == 2 and "did you mean: per_device_batch_size?" in one_line(err, "train")
  code, err = run(capsys, "train", "--config.optim.zzz=1")
  assert (
    code == 2
    and "optim has: adam, adversarial_every, adversarial_lr_scale, attr_encoder_lr_scale, b1" in one_line(err, "train")
  )


@pytest.mark.parametrize(
  "override, message",
  [
    ("--config.per_device_batch_size=-1", "config.per_device_batch_size=-1: must be a positive integer"),
    ("--config.checkpoint_every=0", "config.checkpoint_every=0: must be a positive integer (an every-N-steps"),
    ("--config.optim.adversarial_every=0", "config.optim.adversarial_every=0: must be a positive integer"),
    ("--config.optim.lr=nan", "config.optim.lr=nan: must be a finite number"),
    ("--config.num_steps=0", "config.num_steps=0: must be a positive integer (`train --allow_empty` accepts 0)"),
  ],
)
def test_impossible_config_values_are_refused_before_training(capsys, fake_train, tmp_path, override, message):
  code, err = run(capsys, "train", override, f"--workdir={tmp_path / 'w'}")
  assert code == 2
  assert message in one_line(err, "train")
  assert not fake_train.calls and not (tmp_path / "w").exists()


def test_zero_steps_with_allow_empty_and_the_preemption_status(capsys, fake_train, tmp_path):
  workdir = str(tmp_path / "w")
  code, _ = run(
    capsys, "train", "--config.num_steps=0", "--allow_empty", f"--workdir={workdir}", "--compilation_cache="
  )
  assert code == 0
  ((config, got_workdir),) = fake_train.calls
  assert config.num_steps == 0 and got_workdir == workdir
  fake_train.result = train_lib.Result(step=7, history={}, evaluations={}, preempted=True)
  code, _ = run(capsys, "train", f"--workdir={workdir}", "--compilation_cache=")
  from disentangle_jax.cli import train as cli_train  # pylint: disable=import-outside-toplevel

  assert code == cli_train.EXIT_PREEMPTED == 75


def test_expected_errors_inside_a_command_are_one_line_and_bugs_keep_their_traceback(capsys, fake_train, tmp_path):
  fake_train.result = PermissionError(13, "Permission denied", str(tmp_path / "w" / "ckpt"))
  code, err = run(capsys, "train", f"--workdir={tmp_path / 'w'}", "--compilation_cache=")
  assert code == 1
  assert one_line(err, "train") == f"disentangle-jax train: error: {tmp_path / 'w' / 'ckpt'}: Permission denied"
  fake_train.result = errors.ConfigError("config.x=1: first\nconfig.y=2: second")
  code, err = run(capsys, "train", f"--workdir={tmp_path / 'w'}", "--compilation_cache=")
  assert code == 2 and err == ["disentangle-jax train: error: config.x=1: first", "  config.y=2: second"]
  fake_train.result = RuntimeError("a bug")
  with pytest.raises(RuntimeError, match="a bug"):
    main.run(["disentangle-jax", "train", f"--workdir={tmp_path / 'w'}", "--compilation_cache="])


def test_bad_flags_are_one_line(capsys):
  code, err = run(capsys, "swap", "--batch_size=0")
  assert code == 2 and "--batch_size=0" in one_line(err, "swap")
  code, err = run(capsys, "train", "--no_such_flag")
  assert code == 2 and "no_such_flag" in one_line(err, "train")
  code, err = run(capsys, "train", "--config=configs/paper.py:bogus=1")
  assert code == 2 and "unknown preset 'bogus'" in one_line(err, "train")


# ---------------------------------------------------------------------------------------------------------------
# Paths, checked before any model loads.
# ---------------------------------------------------------------------------------------------------------------


def test_swap_output_and_input_paths(capsys, no_model, tmp_path, image):
  (tmp_path / "file").write_text("x")
  (tmp_path / "dir").mkdir()
  args = ["swap", f"--model={tmp_path / 'no-model'}", "--id", image, "--attr", image]
  cases = [
    (
      [f"--out={tmp_path / 'file' / 'grid.png'}"],
      f"{tmp_path / 'file' / 'grid.png'}: parent {tmp_path / 'file'} is a file",
    ),
    ([f"--out={tmp_path / 'dir'}"], f"{tmp_path / 'dir'}: is a directory; --out names the file to write"),
    ([f"--out={tmp_path / 'grid.txt'}"], "must end in an image suffix such as .png or .jpg"),
    (
      [f"--out={tmp_path / 'grid.png'}", "--id", str(tmp_path / "dir")],
      f"{tmp_path / 'dir'}: is a directory, not an image file",
    ),
    ([f"--out={tmp_path / 'grid.png'}", "--attr", str(tmp_path / "missing.png")], "missing.png: no such image file"),
    ([f"--out={tmp_path / 'grid.png'}"], "no-model: no such model directory"),
  ]
  for extra, message in cases:
    code, err = run(capsys, *args, *extra)
    assert code == 2 and message in one_line(err, "swap"), (extra, err)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "face.png", "file"]


def test_interpolate_bad_animation_fails_before_the_strip_is_written(capsys, no_model, tmp_path, image):
  (tmp_path / "file").write_text("x")
  out = tmp_path / "strip.png"
  base = ["interpolate", f"--model={tmp_path}", "--id", image, image, "--attr", image, f"--out={out}"]
  for animation, message in (
    (tmp_path / "morph.avi", "morph.avi: must end in .gif or .mp4"),
    (tmp_path / "file" / "morph.gif", f"parent {tmp_path / 'file'} is a file"),
  ):
    code, err = run(capsys, *base, f"--animation={animation}")
    assert code == 2 and message in one_line(err, "interpolate")
  assert not out.exists()


def test_other_commands_check_their_paths_first(capsys, no_model, tmp_path, image):
  (tmp_path / "file").write_text("x")
  (tmp_path / "full").mkdir()
  (tmp_path / "full" / "x").write_text("x")
  model = f"--model={tmp_path}"
  cases = [
    (
      ["video", model, "--id", image, "--attr", str(tmp_path), f"--out={tmp_path / 'o.mp4'}"],
      f"{tmp_path}: is a directory, not a video file",
    ),
    (["video", model, "--id", image, "--attr", image, f"--out={tmp_path / 'o.avi'}"], "must end in .mp4 or .gif"),
    (
      ["evaluate", model, f"--photos={tmp_path / 'none'}", f"--out={tmp_path / 'e.json'}"],
      "none: no such photo folder",
    ),
    (["evaluate", model, f"--out={tmp_path}"], "is a directory; --out names the file to write"),
    (["export", model, f"--out={tmp_path / 'full'}"], "full: exists and is not empty"),
    (["export", model, f"--out={tmp_path / 'file'}"], "file: is a file, not a directory"),
    (["export", f"--model={tmp_path / 'none'}", f"--out={tmp_path / 'e'}"], "none: no such model directory"),
    (["sample", f"--out={tmp_path / 'file' / 'g.png'}"], "is a file"),
    (["sample", f"--generator={tmp_path / 'none.pkl'}", f"--out={tmp_path / 'g.png'}"], "none.pkl: no such generator"),
    (["convert", "stylegan2", str(tmp_path / "none.pkl"), str(tmp_path / "out")], "none.pkl: no such checkpoint"),
    (["convert", "stylegan2", str(tmp_path), str(tmp_path / "out")], "is a directory, not a checkpoint file"),
    (["convert", "stylegan2", image, str(tmp_path / "full")], "full: exists and is not empty"),
    (["generate-data", f"--out={tmp_path / 'file'}"], "file: is a file, not a directory"),
  ]
  for argv, message in cases:
    code, err = run(capsys, *argv)
    assert code == 2 and message in one_line(err, argv[0]), (argv, err)


def test_project_errors_are_user_errors():
  from disentangle_jax.apps import align  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import images  # pylint: disable=import-outside-toplevel
  from disentangle_jax.third_party.common import state_dict  # pylint: disable=import-outside-toplevel
  from disentangle_jax.third_party.common import torch_pickle  # pylint: disable=import-outside-toplevel
  from disentangle_jax.third_party.mediapipe_facemesh import graph  # pylint: disable=import-outside-toplevel
  from disentangle_jax.third_party.mediapipe_facemesh import tflite  # pylint: disable=import-outside-toplevel

  for cls in (
    images.ImageReadError,
    align.NoFaceError,
    state_dict.CheckpointMismatchError,
    torch_pickle.CheckpointFormatError,
    tflite.TFLiteFormatError,
    graph.GraphError,
    errors.ConfigError,
  ):
    assert issubclass(cls, errors.UserError) and issubclass(cls, ValueError), cls


# ---------------------------------------------------------------------------------------------------------------
# The real command line (subprocesses).
# ---------------------------------------------------------------------------------------------------------------


def test_subprocess_errors_are_exactly_one_line(tmp_path):
  garbage = tmp_path / "garbage.pkl"
  garbage.write_bytes(bytes(range(256)) * 8)
  code, err = run_subprocess(tmp_path, "convert", "stylegan2", str(garbage), str(tmp_path / "out"))
  assert code == 1 and "garbage.pkl: not a readable stylegan2-ada network pickle" in one_line(err, "convert")
  assert not (tmp_path / "out").exists()
  code, err = run_subprocess(tmp_path, "convert", "stylegan2", "/no/such/file", str(tmp_path / "out"))
  assert code == 2 and one_line(err, "convert").endswith("/no/such/file: no such checkpoint file")
  code, err = run_subprocess(tmp_path, "train", "--config.no_such_kye=3", "--config.log_evry=1")
  assert code == 2 and err == [
    "disentangle-jax train: error: --config.no_such_kye: no such config key",
    "  --config.log_evry: no such config key; did you mean: log_every, eval_every, image_every?",
  ]
  code, err = run_subprocess(
    tmp_path, "swap", "--model=m", "--id", str(tmp_path), "--attr", str(garbage), "--out=g.png"
  )
  assert code == 2 and one_line(err, "swap").endswith(f"{tmp_path}: is a directory, not an image file")


def test_config_check_imports_neither_jax_nor_tensorflow():
  code = (
    "import sys; import disentangle_jax.config_check; "
    "print(sorted(m for m in ('jax', 'tensorflow', 'flax') if m in sys.modules))"
  )
  out = subprocess.run([sys.executable, "-c", code], cwd=_ROOT, capture_output=True, text=True, check=True).stdout
  assert out.strip() == "[]"


def test_subprocess_verbosity_1_adds_the_traceback(tmp_path):
  code, err = run_subprocess(tmp_path, "train", "--config.per_device_batch_size=0", "--verbosity=1")
  assert code == 2
  assert err[0] == "Traceback (most recent call last):" and "ConfigError" in err[-2]
  assert err[-1] == "disentangle-jax train: error: config.per_device_batch_size=0: must be a positive integer"
