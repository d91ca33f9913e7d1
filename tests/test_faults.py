"""Fault injection on the training loop: kill -9, damaged checkpoints, two trainers on one workdir.

Runs on the stand-in networks (`tests/standins.py`); subprocess runs go through `tests/train_runner.py`. Damaged
dataset shards are in `test_faults_data.py`, bad config values and command-line errors in `test_faults_cli.py`.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from disentangle_jax import checkpoints
from disentangle_jax import train
from disentangle_jax import workdir_lock
from tests import standins

pytestmark = pytest.mark.usefixtures("compilation_cache")  # the runs of this module share their programs
ROOT = pathlib.Path(__file__).resolve().parents[1]
RUNNER = [sys.executable, str(ROOT / "tests" / "train_runner.py")]


def _state_leaves(workdir: pathlib.Path, step: int) -> list[np.ndarray]:
  """Every array of the train state saved at `step` (parameters, constants, optimiser moments, step)."""
  with ocp.StandardCheckpointer() as ckptr:
    tree = ckptr.restore(checkpoints.checkpoint_dir(workdir) / str(step) / checkpoints.ITEM)
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _runner(workdir: pathlib.Path, overrides: dict, cache_dir: str, **kwargs) -> subprocess.Popen:
  env = dict(os.environ, DISENTANGLE_TEST_CACHE=cache_dir)
  return subprocess.Popen(
    RUNNER + [str(workdir), json.dumps(overrides)],
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    env=env,
    **kwargs,
  )


def _damage(step_dir: pathlib.Path, how: str) -> None:
  """Truncates every array data file of a checkpoint, or flips one bit in the middle of each.

  (One flipped bit in one file may land in bytes no array uses, e.g. between records; in every file it cannot.)
  """
  files = [p for p in (step_dir / checkpoints.ITEM).rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files, f"no array data files under {step_dir}"  # OCDBT keeps array bytes in `d/` folders
  if how == "truncate":
    for p in files:
      p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])
  else:
    for p in files:
      data = bytearray(p.read_bytes())
      data[len(data) // 2] ^= 0x40
      p.write_bytes(bytes(data))


# ----------------------------------------------------------------------------------------------------------------
# kill -9 at a random step, a lock left behind by it, and a bitwise-equal resume


def test_kill9_at_a_random_step_then_resume_is_bitwise_the_uninterrupted_run(tmp_path, compilation_cache):
  steps = 8
  overrides = {"num_steps": steps, "checkpoint_every": 2, "keep_checkpoints": 10}
  full = _runner(tmp_path / "full", overrides, compilation_cache)
  out, err = full.communicate(timeout=600)
  assert full.returncode == 0, err[-3000:]

  # From step 5 on, the save of step 2 has been read back and verified (the save of step 4 starts by doing so), so
  # the resume must start after step 2; the save of step 4 may be in flight when the kill comes.
  kill_at = random.Random(os.getpid()).randint(5, steps - 1)  # named in every failure message below
  shutil.copytree(tmp_path / "full" / "data", tmp_path / "killed" / "data")
  victim = _runner(tmp_path / "killed", overrides, compilation_cache)
  try:
    deadline = time.time() + 600
    for line in victim.stdout:
      if line.startswith(f"STEP {kill_at}"):
        victim.send_signal(signal.SIGKILL)
        break
      assert time.time() < deadline, f"the runner did not reach step {kill_at}"
    victim.wait(timeout=60)
  finally:
    if victim.poll() is None:
      victim.kill()
  assert victim.returncode == -signal.SIGKILL
  holder = json.loads((tmp_path / "killed" / workdir_lock.LOCK_FILE).read_text())
  assert holder["pid"] == victim.pid  # the dead run's lock is still on disk ...

  resumed = _runner(tmp_path / "killed", overrides, compilation_cache)
  out, err = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, err[-3000:]
  assert f"pid {victim.pid}" in err and "a process that is gone" in err  # ... and is taken over with a warning
  result = json.loads(out.split("RESULT ", 1)[1])
  assert result["step"] == steps
  assert min(int(s) for s in result["history"]) >= 3, f"killed at step {kill_at}, resumed before step 2"
  full_leaves, resumed_leaves = _state_leaves(tmp_path / "full", steps), _state_leaves(tmp_path / "killed", steps)
  assert len(full_leaves) == len(resumed_leaves) > 50
  for a, b in zip(full_leaves, resumed_leaves):
    np.testing.assert_array_equal(a, b, err_msg=f"killed at step {kill_at}")


# ----------------------------------------------------------------------------------------------------------------
# Two trainers on one workdir


def test_a_second_trainer_on_a_busy_workdir_fails_at_once_naming_the_holder(tmp_path, compilation_cache):
  first = _runner(
    tmp_path,
    {"num_steps": 10_000, "checkpoint_every": 10_000, "eval_every": 10_000, "image_every": 10_000},
    compilation_cache,
  )
  try:
    deadline = time.time() + 600
    for line in first.stdout:
      if line.startswith("STEP 1"):
        break
      assert time.time() < deadline, "the first trainer did not start"
    events = sorted(tmp_path.glob("events.out.tfevents.*"))
    with pytest.MonkeyPatch.context() as mp:
      standins.install(mp)
      start = time.perf_counter()
      with pytest.raises(workdir_lock.WorkdirBusyError, match=rf"another trainer.*pid {first.pid}"):
        train.train_and_evaluate(standins.tiny_config(num_steps=2), str(tmp_path))
      assert time.perf_counter() - start < 5  # before building a model or touching the data
    assert sorted(tmp_path.glob("events.out.tfevents.*")) == events  # wrote nothing
  finally:
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=300)
  # Released on exit: the workdir is free again.
  with workdir_lock.WorkdirLock(tmp_path):
    pass


def test_lock_in_one_process_and_stale_takeover(tmp_path, caplog):
  with workdir_lock.WorkdirLock(tmp_path):
    with pytest.raises(workdir_lock.WorkdirBusyError, match=rf"pid {os.getpid()}"):
      workdir_lock.WorkdirLock(tmp_path).acquire()
  assert (tmp_path / workdir_lock.LOCK_FILE).read_text() == ""  # released cleanly: nothing to take over
  (tmp_path / workdir_lock.LOCK_FILE).write_text(json.dumps({"host": "gone-host", "pid": 99999999, "since": 0}))
  with caplog.at_level(logging.WARNING):
    with workdir_lock.WorkdirLock(tmp_path):
      pass
  assert "gone-host, pid 99999999" in caplog.text and "a process that is gone" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# A damaged newest checkpoint


@pytest.mark.parametrize("how", ["truncate", "bitflip"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, how):
  with pytest.MonkeyPatch.context() as mp:
    standins.install(mp)
    config = lambda n: standins.tiny_config(num_steps=n, checkpoint_every=2, keep_checkpoints=3)
    train.train_and_evaluate(config(4), str(tmp_path))
    assert checkpoints.steps(tmp_path) == [2, 4]
    assert all((checkpoints.checkpoint_dir(tmp_path) / s / checkpoints.MANIFEST).is_file() for s in ("2", "4"))
    good = _state_leaves(tmp_path, 2)
    _damage(checkpoints.checkpoint_dir(tmp_path) / "4", how)

    # Inference reads the newest usable checkpoint and leaves the workdir as it is. (It reads E_attr and M only, so
    # a flipped bit elsewhere, e.g. in the optimiser moments, does not concern it.)
    if how == "truncate":
      with caplog.at_level(logging.WARNING):
        _, _, step = checkpoints.restore_inference(tmp_path)
      assert step == 2 and "checkpoints/4 is unusable" in caplog.text
      assert checkpoints.steps(tmp_path) == [2, 4]
      caplog.clear()

    # Training resumes from step 2, moves step 4 aside (kept, not deleted) and writes it again.
    with caplog.at_level(logging.WARNING):
      result = train.train_and_evaluate(config(6), str(tmp_path))
  assert "checkpoints/4 is unusable" in caplog.text and "using the checkpoint of step 2" in caplog.text
  assert sorted(result.history) == [3, 4, 5, 6]
  assert (tmp_path / checkpoints.CORRUPT_DIR / "4").is_dir()
  assert checkpoints.steps(tmp_path) == [2, 4, 6]
  for a, b in zip(good, _state_leaves(tmp_path, 2)):
    np.testing.assert_array_equal(a, b)


def test_no_usable_checkpoint_is_one_clear_error(tmp_path):
  with pytest.MonkeyPatch.context() as mp:
    standins.install(mp)
    train.train_and_evaluate(standins.tiny_config(num_steps=2, checkpoint_every=2), str(tmp_path))
  _damage(checkpoints.checkpoint_dir(tmp_path) / "2", "truncate")
  with pytest.raises(checkpoints.CheckpointError, match=r"no checkpoint reads completely \(step 2: "):
    checkpoints.restore_inference(tmp_path)


def test_a_save_that_reads_back_differently_is_refused(tmp_path, monkeypatch):
  """Verification at write time: the read-back is compared with the fingerprints taken when saving."""
  saver = checkpoints.Saver(tmp_path, keep=2)
  state = {"step": jax.numpy.asarray(3, jax.numpy.int32), "w": jax.numpy.arange(12.0).reshape(3, 4)}
  saver.save(3, state)
  saver.verify_pending()
  manifest = json.loads((checkpoints.checkpoint_dir(tmp_path) / "3" / checkpoints.MANIFEST).read_text())
  assert set(manifest["fingerprints"]) == {"step", "w"}
  saver.save(5, state)  # fingerprinted now; read back and compared at close
  real = checkpoints.fingerprints
  monkeypatch.setattr(checkpoints, "fingerprints", lambda tree: {**real(tree), "w": 0})  # as if a bit flipped
  with pytest.raises(checkpoints.CheckpointError, match="step 5 read back differently from what was saved"):
    saver.close()
  assert checkpoints.steps(tmp_path) == [3] and (tmp_path / checkpoints.CORRUPT_DIR / "5").is_dir()


def test_fingerprints_agree_on_device_and_host_and_see_moved_values():
  """Device arrays (replicated over the mesh, as a train state is) and their host copies fingerprint alike."""
  tree = {
    "a": jax.numpy.arange(10, dtype=jax.numpy.float32),
    "b": jax.numpy.asarray([True, False]),
    "c": jax.numpy.ones((2, 3), jax.numpy.bfloat16),
    "d": jax.numpy.arange(4, dtype=jax.numpy.int32),
  }
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("data",))
  tree = jax.device_put(tree, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
  on_device = checkpoints.fingerprints(tree)
  assert on_device == checkpoints.fingerprints(jax.tree.map(np.asarray, tree))
  # The formula, by hand (manifests written earlier must keep verifying): sum of bits_i * (2 i + 1).
  assert on_device["d"] == 0 * 1 + 1 * 3 + 2 * 5 + 3 * 7
  swapped = np.asarray(tree["a"])[[1, 0, *range(2, 10)]]
  assert checkpoints.fingerprints({"a": swapped})["a"] != on_device["a"]


def test_train_repairs_a_damaged_shard_before_training(tmp_path, caplog):
  with pytest.MonkeyPatch.context() as mp:
    standins.install(mp)
    train.train_and_evaluate(standins.tiny_config(num_steps=1), str(tmp_path))
    shard = sorted((tmp_path / "data").glob("*train.array_record-*"))[0]
    shard.write_bytes(shard.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
      result = train.train_and_evaluate(standins.tiny_config(num_steps=2), str(tmp_path))
  assert result.step == 2 and f"{shard}" in caplog.text and "rendering its bad shards again" in caplog.text
  from disentangle_jax.data import generate  # pylint: disable=import-outside-toplevel

  assert generate.verify(str(tmp_path / "data")) == []
