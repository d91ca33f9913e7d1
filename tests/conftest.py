"""Test-wide setup: 8 forced CPU devices (for sharding tests) and full float32 precision.

XLA_FLAGS must be set before jax is first imported, which is why it happens here at import time.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
  os.environ["XLA_FLAGS"] = (_flags + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=wrong-import-position

jax.config.update("jax_default_matmul_precision", "highest")

from tests import forced_devices  # pylint: disable=wrong-import-position

forced_devices.write_whole_arrays()


import fcntl  # pylint: disable=wrong-import-position,wrong-import-order
import pathlib  # pylint: disable=wrong-import-position,wrong-import-order
import subprocess  # pylint: disable=wrong-import-position,wrong-import-order
import sys  # pylint: disable=wrong-import-position,wrong-import-order

import pytest  # pylint: disable=wrong-import-position,wrong-import-order

MEDIAPIPE_WHEEL = "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"


@pytest.fixture(scope="module")
def compilation_cache(tmp_path_factory) -> str:
  """A persistent XLA compilation cache for one test module: repeated runs read their programs back.

  Subprocesses get the directory through $DISENTANGLE_TEST_CACHE (`tests/train_runner.py` reads it).
  """
  directory = str(tmp_path_factory.mktemp("jax_cache"))
  old = (jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  yield directory
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])


@pytest.fixture(scope="session")
def wheel() -> pathlib.Path:
  """The mediapipe 0.10.21 wheel, whose face-mesh and BlazeFace `.tflite` files are real pretrained weights.

  Fetched once per machine with `pip download` into $DISENTANGLE_JAX_CACHE (default ~/.cache/disentangle_jax/wheels);
  the library itself never downloads. A file lock keeps parallel test workers from fetching it twice.
  """
  cache = pathlib.Path(
    os.environ.get("DISENTANGLE_JAX_CACHE", pathlib.Path.home() / ".cache" / "disentangle_jax" / "wheels")
  )
  cache.mkdir(parents=True, exist_ok=True)
  path = cache / MEDIAPIPE_WHEEL
  with open(cache / ".lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not path.is_file():
      result = subprocess.run(
        [
          sys.executable,
          "-m",
          "pip",
          "download",
          "mediapipe==0.10.21",
          "--no-deps",
          "--only-binary=:all:",
          "--platform",
          "manylinux_2_28_x86_64",
          "--python-version",
          "3.11",
          "-d",
          str(cache),
        ],
        capture_output=True,
        text=True,
        check=False,
      )
      assert path.is_file(), f"pip download of mediapipe==0.10.21 failed:\n{result.stdout}\n{result.stderr}"
  return path


# Tests that share an expensive fixture run on one test worker. A session fixture training a model behind a file
# lock, spread over two workers, would leave the second one waiting on the lock for the whole training; a module
# fixture (the official steps, the prepared toy nets) would be computed once on each worker. Used by pytest-xdist's
# `--dist loadgroup` (pyproject.toml); without xdist the marks do nothing.
SHARED_FIXTURES = {
  "toy_run": "toy-model",
  "paper_run": "standin-paper-model",
  "official_steps": "official-steps",
  "prepared_nets": "toy-nets",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks into the test ids
def pytest_collection_modifyitems(config, items):  # pylint: disable=unused-argument
  for item in items:
    for fixture, group in SHARED_FIXTURES.items():
      if fixture in item.fixturenames:
        item.add_marker(pytest.mark.xdist_group(group))
        break
