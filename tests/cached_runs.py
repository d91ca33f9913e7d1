"""Trained models shared by test modules: each trained once per source version and kept in the temp folder.

Training is most of what the command and evaluation tests would otherwise cost, and a trained result depends only
on the training code, the networks, the config and JAX's version and device count. `trained` keys a cache folder by
a hash of those, trains into it when it is missing, and marks it complete last, so an interrupted training is redone
rather than reused. A file lock per model lets parallel test workers (pytest-xdist) wait for one training.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import shutil
import tempfile
from collections.abc import Callable
from collections.abc import Sequence

import ml_collections

ROOT = pathlib.Path(__file__).resolve().parents[1]
CACHE = pathlib.Path(tempfile.gettempdir()) / "disentangle_jax_test_cache"
# What a trained result depends on: the training code, the networks, the configs.
TRAINING_SOURCES = (
  "disentangle_jax/model.py",
  "disentangle_jax/train.py",
  "disentangle_jax/train_step.py",
  "disentangle_jax/losses.py",
  "disentangle_jax/frozen.py",
  "disentangle_jax/evaluate.py",
  "disentangle_jax/nets",
  "disentangle_jax/data",
  "third_party",
  "configs",
)
RESULT = "test_result.json"  # written last: its presence marks a complete training


def source_hash(description: str, extra_sources: Sequence[str] = ()) -> str:
  """A short hash of `description` (the config's text), JAX's version and device count and the sources' bytes."""
  import jax  # pylint: disable=import-outside-toplevel

  h = hashlib.sha256(f"{jax.__version__} {jax.device_count()} {description}".encode())
  for name in (*TRAINING_SOURCES, *extra_sources):
    p = ROOT / name
    for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
      if f.is_file():
        h.update(str(f.relative_to(ROOT)).encode())
        h.update(f.read_bytes())
  return h.hexdigest()[:16]


def trained(
  name: str,
  config: Callable[[pathlib.Path], ml_collections.ConfigDict],
  prepare: Callable[[pathlib.Path], None] | None = None,
  extra_sources: Sequence[str] = (),
) -> tuple[pathlib.Path, dict]:
  """(workdir, {"step": N, "evaluation": the evaluation at step N, "score": the toy score or None}) of
  `config(workdir)` trained once.

  Args:
    name: the model's name in the cache: the workdir is `<tmp>/disentangle_jax_test_cache/<name>-<hash>` (older
      versions of the same name are deleted when a new one is trained).
    config: the workdir -> the training config (files the config names, such as metric weights, are written into
      the workdir by `prepare`; the hash is taken of the config made for a placeholder path).
    prepare: writes those files into the workdir before training.
    extra_sources: files beyond `TRAINING_SOURCES` the result depends on (stand-in networks, weight recipes).
  """
  import fcntl  # pylint: disable=import-outside-toplevel

  from disentangle_jax import train  # pylint: disable=import-outside-toplevel

  workdir = CACHE / f"{name}-{source_hash(str(config(pathlib.Path('<workdir>'))), extra_sources)}"
  done = workdir / RESULT
  CACHE.mkdir(parents=True, exist_ok=True)
  with open(CACHE / f"{name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not done.is_file():
      for stale in CACHE.glob(f"{name}-*"):  # this version's interrupted training, and older versions
        shutil.rmtree(stale, ignore_errors=True)
      workdir.mkdir()
      if prepare is not None:
        prepare(workdir)
      result = train.train_and_evaluate(config(workdir), str(workdir))
      done.write_text(
        json.dumps({"step": result.step, "evaluation": result.evaluations[result.step], "score": result.score})
      )
  return workdir, json.loads(done.read_text())


def serve(monkeypatch, workdir: pathlib.Path, model) -> None:
  """Makes `inference.load(workdir)` return the already loaded `model`: commands under test load the session's
  model instead of rebuilding it (loading itself is tested separately); other paths load as usual."""
  import functools  # pylint: disable=import-outside-toplevel

  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  real = inference.load

  @functools.wraps(real)
  def load(path):
    return model if pathlib.Path(path).absolute() == pathlib.Path(workdir).absolute() else real(path)

  monkeypatch.setattr(inference, "load", load)
