"""Two processes on localhost (`jax.distributed`, CPU collectives over gloo, 4 devices each) train like one process.

1. The train step: the same fixed global batches over 2 x 4 devices give the losses and parameters of the
   one-process 8-device step (this test process has 8 devices).
2. The whole loop (`train_and_evaluate`: dataset generation split between the processes, input pipeline, metric
   writers, evaluation, Orbax checkpoints in a shared workdir) runs to the end in both processes, which report the
   same (replicated) finite losses. Its batches differ from a one-process run by design: each process reads its own
   part of the split (`tfds.split_for_jax_process`), so equality is checked at the step level above.
Processes run as subprocesses with a timeout; stand-in networks keep compilation short (`tests/standins.py`).
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests import standins
from tests import test_train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tests", "train_runner.py")
TIMEOUT_S = 420


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
  """A compilation cache shared by the subprocesses: the second pair reuses the first pair's programs."""
  return str(tmp_path_factory.mktemp("jax_cache"))


def _two_processes(workdir, cache, *extra):
  port = _free_port()
  env = dict(os.environ, DISENTANGLE_TEST_CACHE=cache)
  env.pop("XLA_FLAGS", None)
  procs = [
    subprocess.Popen(
      [
        sys.executable,
        RUNNER,
        str(workdir),
        *extra,
        "--devices=4",
        f"--process_id={i}",
        "--num_processes=2",
        f"--port={port}",
      ],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      env=env,
    )
    for i in range(2)
  ]
  outputs = []
  try:
    for p in procs:
      out, err = p.communicate(timeout=TIMEOUT_S)
      assert p.returncode == 0, f"process exited with {p.returncode}:\n{err[-3000:]}"
      outputs.append(json.loads(out.split("RESULT ", 1)[1].splitlines()[0]))
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  return outputs


def test_two_process_step_matches_one_process(tmp_path, monkeypatch, cache_dir):
  num_steps = 3
  results = _two_processes(tmp_path, cache_dir, "{}", f"--steps_only={num_steps}")

  standins.install(monkeypatch)
  config = standins.tiny_config()
  from disentangle_jax import model as model_lib  # pylint: disable=import-outside-toplevel

  batches = standins.random_batches(model_lib.build(config).spec, num_steps, batch=8)
  _, _, state, _, history = test_train._run_steps(config, jax.devices()[:8], batches)  # pylint: disable=protected-access

  for result in results:
    assert len(result["history"]) == num_steps
    for got, want in zip(result["history"], history):
      for k, v in want.items():
        np.testing.assert_allclose(got[k], float(v), rtol=1e-5, atol=1e-5, err_msg=k)
  saved = np.load(tmp_path / "params.npz")
  leaves = jax.tree.leaves(state.params)
  assert len(saved.files) == len(leaves)
  for i, leaf in enumerate(leaves):
    np.testing.assert_allclose(saved[f"arr_{i}"], leaf, rtol=1e-5, atol=1e-5)


def test_two_process_training_loop(tmp_path, cache_dir):
  results = _two_processes(tmp_path, cache_dir, json.dumps({"num_steps": 3, "checkpoint_every": 3, "eval_every": 3}))
  assert [r["step"] for r in results] == [3, 3]
  assert results[0]["history"] == results[1]["history"] and sorted(results[0]["history"]) == ["1", "2", "3"]
  for metrics in results[0]["history"].values():
    assert metrics and all(np.isfinite(v) for v in metrics.values())
  assert (tmp_path / "checkpoints" / "3").is_dir()
  assert (tmp_path / "data" / "dataset_info.json").is_file()
  assert (tmp_path / "config.json").is_file()  # written by process 0
