"""The train step and the loop: sharding equality, what changes in a step, resume, SIGTERM, NaN, config typos.

The loop mechanics run on the stand-in networks (`tests/standins.py`, 16 px); `test_smoke_config_trains` runs the
real smoke config (every ported network) for a couple of steps.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from absl import flags
from flax import nnx
from ml_collections import config_flags

from disentangle_jax import checkpoints
from disentangle_jax import losses
from disentangle_jax import model as model_lib
from disentangle_jax import train
from disentangle_jax import train_step as step_lib
from disentangle_jax.nets import discriminator as discriminator_lib
from disentangle_jax.nets import mapper as mapper_lib
from tests import standins

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


pytestmark = pytest.mark.usefixtures("compilation_cache")  # successive runs (resume, NaN) reuse their programs


@pytest.fixture()
def tiny(monkeypatch):
  standins.install(monkeypatch)


# ----------------------------------------------------------------------------------------------------------------
# Networks


def test_mapper_and_discriminator_follow_the_original():
  m = mapper_lib.Mapper(2560, (2048, 1024, 512), 512, rngs=nnx.Rngs(0))
  kernels = [np.asarray(layer.kernel[...]) for layer in m.layers]
  assert [k.shape for k in kernels] == [(2560, 2048), (2048, 1024), (1024, 512), (512, 512)]
  glorot = [np.sqrt(2 / (2560 + 2048)), np.sqrt(2 / (2048 + 1024))]
  he = [np.sqrt(2 / 1.04 / 1024), np.sqrt(2 / 1.04 / 512)]
  np.testing.assert_allclose([k.std() for k in kernels], glorot + he, rtol=0.03)
  assert all(not np.any(layer.bias[...]) for layer in m.layers)
  out = m(jnp.asarray(np.random.RandomState(0).randn(64, 2560), jnp.float32))
  assert out.shape == (64, 512) and float(out.min()) < -0.5  # no activation after the last layer

  d = discriminator_lib.LatentDiscriminator(512, (256, 128, 64), rngs=nnx.Rngs(1))
  assert [layer.kernel.shape for layer in d.layers] == [(512, 256), (256, 128), (128, 64), (64, 1)]
  np.testing.assert_allclose(np.asarray(d.layers[0].kernel[...]).std(), np.sqrt(2 / 1.04 / 512), rtol=0.03)
  assert d(jnp.zeros((3, 512))).shape == (3,)


# ----------------------------------------------------------------------------------------------------------------
# The step


def _setup(config):
  model = model_lib.build(config)
  graphs, frozen_state, params, constants = step_lib.split_model(model)
  optimizers = step_lib.make_optimizers(config.optim)
  state = step_lib.init_state(params, constants, optimizers)
  return model, graphs, jax.device_get(frozen_state), jax.device_get(state), optimizers


def _run_steps(config, devices, batches):
  model, graphs, frozen_state, state, optimizers = _setup(config)
  mesh = step_lib.make_mesh(devices)
  step = step_lib.make_train_step(graphs, model.spec, config, optimizers, mesh)
  frozen_dev = step_lib.replicate(frozen_state, mesh)
  state_dev = step_lib.replicate(state, mesh)
  split = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  history = []
  for b in batches:
    placed = {k: jax.device_put(b[k], split) for k in ("id", "attr", "w_real")}
    state_dev, metrics = step(state_dev, frozen_dev, step_lib.step_batch({**placed, "same": b["same"]}, mesh))
    history.append(jax.device_get(metrics))
  return state, frozen_state, jax.device_get(state_dev), jax.device_get(frozen_dev), history


def _eight_and_one():
  """Three steps (adversarial, plain, adversarial cross) on 8 devices and on 1 device, same global batches."""
  with pytest.MonkeyPatch.context() as mp:
    standins.install(mp)
    config = standins.tiny_config()
    spec = model_lib.build(config).spec
    batches = standins.random_batches(spec, 3)
    eight = _run_steps(config, jax.devices()[:8], batches)
    one = _run_steps(config, jax.devices()[:1], batches)
  return eight, one


def test_step_sharded_equality_and_updates():
  """One fixture-free test (xdist would otherwise run the two costly step runs once per worker)."""
  eight_and_one = _eight_and_one()
  _check_eight_equals_one(eight_and_one)
  _check_updates(eight_and_one)


def _check_eight_equals_one(eight_and_one):
  (_, _, state8, _, hist8), (_, _, state1, _, hist1) = eight_and_one
  assert len(jax.devices()) == 8
  for m8, m1 in zip(hist8, hist1):
    assert m8.keys() == m1.keys()
    for k in m8:
      np.testing.assert_allclose(m8[k], m1[k], atol=1e-5, rtol=1e-5, err_msg=k)
  for a, b in zip(jax.tree.leaves(state8), jax.tree.leaves(state1)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def _check_updates(eight_and_one):
  (before, frozen_before, after, frozen_after, history), _ = eight_and_one
  for a, b in zip(jax.tree.leaves(frozen_before), jax.tree.leaves(frozen_after)):
    np.testing.assert_array_equal(a, b)
  for name in ("attr_encoder", "mapper", "discriminator"):
    for a, b in zip(jax.tree.leaves(before.params[name]), jax.tree.leaves(after.params[name])):
      assert np.any(a != b), name
  assert int(after.step) == 3
  # D_W and the adversarial Adam ran on steps 0 and 2 only; the main Adam on all three.
  counts = {
    k: int(jax.tree.leaves(getattr(after.opt, k)[0].count)[0]) for k in ("main", "adversarial", "discriminator")
  }
  assert counts == {"main": 3, "adversarial": 2, "discriminator": 2}
  assert history[1]["loss/discriminator"] == 0 and history[0]["loss/discriminator"] > 0
  assert history[2]["loss/reconstruction"] == 0 and history[0]["loss/reconstruction"] > 0
  for metrics in history:
    assert all(np.isfinite(v) for v in metrics.values())


def test_train_state_keeps_the_checkpoint_layout(tiny, tmp_path):
  """The typed state is saved under the keys the dict state had (what `restore_inference` and the manifests read),
  and a checkpoint written from that dict restores into the typed state unchanged."""
  _, _, _, host_state, _ = _setup(standins.tiny_config())
  state = jax.tree.map(jnp.asarray, host_state)
  as_dict = {
    "step": state.step,
    "params": state.params,
    "constants": state.constants,
    "opt": {"main": state.opt.main, "adversarial": state.opt.adversarial, "discriminator": state.opt.discriminator},
  }
  assert checkpoints.fingerprints(state) == checkpoints.fingerprints(as_dict)
  assert any(k.startswith("params/attr_encoder/") for k in checkpoints.fingerprints(state))

  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(tmp_path / "typed", state)
    ckptr.save(tmp_path / "dict", as_dict)
  with ocp.StandardCheckpointer() as ckptr:
    raw = ckptr.restore(tmp_path / "typed")
  assert set(raw) == {"step", "params", "constants", "opt"}
  assert set(raw["opt"]) == {"main", "adversarial", "discriminator"}
  assert set(raw["params"]) == {"attr_encoder", "mapper", "discriminator"}

  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(tmp_path / "dict", abstract)
  assert isinstance(restored, step_lib.TrainState) and isinstance(restored.opt, step_lib.OptStates)
  assert jax.tree.structure(restored) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------------------------
# The loop


def _restore_params(workdir, step=None):
  with ocp.CheckpointManager(checkpoints.checkpoint_dir(workdir)) as manager:
    step = manager.latest_step() if step is None else step
    restored = manager.restore(step)
  return step, jax.tree.map(np.asarray, restored["default"]["params"] if "default" in restored else restored["params"])


def test_loop_resume_equals_uninterrupted_and_nan_stops(tiny, tmp_path, monkeypatch):
  full = train.train_and_evaluate(standins.tiny_config(num_steps=4), str(tmp_path / "full"))
  assert full.step == 4 and sorted(full.history) == [1, 2, 3, 4] and 4 in full.evaluations
  for metrics in full.history.values():
    assert all(np.isfinite(v) for v in metrics.values())
  assert set(full.evaluations[4]) >= {"similarity/score", "landmarks/distance", "reconstruction/psnr"}
  for name in ("config.json", "data/dataset_info.json"):
    assert os.path.exists(tmp_path / "full" / name), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(tmp_path / "full"))

  # Interrupted after 2 steps, then resumed to 4: the same losses and the same parameters.
  shutil.copytree(tmp_path / "full" / "data", tmp_path / "split" / "data")
  first = train.train_and_evaluate(standins.tiny_config(num_steps=2), str(tmp_path / "split"))
  assert first.step == 2
  second = train.train_and_evaluate(standins.tiny_config(num_steps=4), str(tmp_path / "split"))
  assert sorted(second.history) == [3, 4]
  for step in (3, 4):
    for k, v in full.history[step].items():
      np.testing.assert_allclose(second.history[step][k], v, rtol=1e-6, atol=1e-7, err_msg=f"{k} at step {step}")
  (s_full, p_full), (s_split, p_split) = _restore_params(tmp_path / "full"), _restore_params(tmp_path / "split")
  assert s_full == s_split == 4
  for a, b in zip(jax.tree.leaves(p_full), jax.tree.leaves(p_split)):
    np.testing.assert_array_equal(a, b)

  # A NaN (here in the R1 penalty) stops the run with the term named; the newest checkpoint stays the good one.
  # (A NaN config value never gets this far: `config_check` refuses it before any work.)
  monkeypatch.setattr(losses, "r1_penalty", lambda *args, **kwargs: jnp.float32(jnp.nan))
  with pytest.raises(train.NonFiniteLossError, match=r"loss/r1 = nan at step 4.*checkpoint \(step 4\).*intact"):
    train.train_and_evaluate(standins.tiny_config(num_steps=8), str(tmp_path / "split"))
  step, params = _restore_params(tmp_path / "split")
  assert step == 4
  for a, b in zip(jax.tree.leaves(p_full), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)


def test_config_typo_fails_clearly(monkeypatch):
  def parse(override):
    # config_flags registers the `--config.*` override flags it finds in sys.argv, as under `app.run`.
    argv = ["disentangle-jax train", override]
    monkeypatch.setattr(sys, "argv", argv)
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
      "config", os.path.join(ROOT, "configs", "smoke.py"), flag_values=values, lock_config=True
    )
    values(argv)
    return values.config

  for typo, message in (("optim.lrr", r"lrr.*Did you mean .lr."), ("optimm.lr", "optimm")):
    with pytest.raises((flags.Error, AttributeError, KeyError), match=message):
      parse(f"--config.{typo}=1e-4")
  assert parse("--config.optim.lr=1e-4").optim.lr == 1e-4


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path, compilation_cache):
  env = dict(os.environ, DISENTANGLE_TEST_CACHE=compilation_cache)
  cmd = [sys.executable, os.path.join(ROOT, "tests", "train_runner.py"), str(tmp_path)]
  overrides = {"num_steps": 10_000, "checkpoint_every": 10_000, "eval_every": 10_000, "image_every": 10_000}
  proc = subprocess.Popen(
    cmd + [json.dumps(overrides)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
  )
  try:
    deadline = time.time() + 400
    for line in proc.stdout:
      if line.startswith("STEP 3"):
        proc.send_signal(signal.SIGTERM)
        break
      assert time.time() < deadline, "the runner did not reach step 3"
    out, _ = proc.communicate(timeout=200)
  finally:
    if proc.poll() is None:
      proc.kill()
  assert proc.returncode == 0, out[-2000:]
  result = json.loads(out.split("RESULT ", 1)[1])
  assert result["preempted"] and result["step"] >= 3
  saved, _ = _restore_params(tmp_path)
  assert saved == result["step"]

  resumed = subprocess.run(
    cmd + [json.dumps({"num_steps": saved + 1})], capture_output=True, text=True, timeout=400, env=env, check=True
  )
  after = json.loads(resumed.stdout.split("RESULT ", 1)[1])
  assert after["step"] == saved + 1 and list(after["history"]) == [str(saved + 1)]


def _smoke(preset: str | None = None):
  """The smoke config (every ported network, random and tiny) cut to two steps at one image per device."""
  from disentangle_jax.configs import smoke  # pylint: disable=import-outside-toplevel

  config = smoke.get_config(preset)
  config.num_steps = 2
  config.per_device_batch_size = 1
  config.eval_every = config.image_every = config.checkpoint_every = 2
  config.eval_batches = 1
  config.data.num_train, config.data.num_validation, config.data.examples_per_shard = 32, 16, 16
  return config


def test_smoke_config_trains(tmp_path):
  """The smoke config's whole loop on the real ported networks (random, tiny): data, two steps, one evaluation."""
  config = _smoke()
  result = train.train_and_evaluate(config, str(tmp_path))
  assert result.step == 2 and 2 in result.evaluations
  for metrics in list(result.history.values()) + list(result.evaluations.values()):
    assert metrics and all(np.isfinite(v) for v in metrics.values())
  generation = json.loads((tmp_path / "data" / "generation.json").read_text())
  assert generation["generator_kind"] == config.generator.kind == "stylegan2"


def test_stylegan1_renders_the_dataset_and_the_train_step_traces_through_it(tmp_path):
  """With StyleGAN v1 as G: the dataset is rendered by it, and the train step on its batches traces to the state's
  own shapes and to scalar metrics.

  The step is traced, not compiled: the loop around it is G-agnostic and runs above with StyleGAN2, and
  `test_stylegan1.py` checks v1's outputs and gradients; compiling a second full train step would add minutes.
  """
  config = _smoke("generator=stylegan1")
  model = model_lib.build(config)
  directory = str(tmp_path / "data")
  train.ensure_dataset(config, directory, generator=model.frozen.generator)
  generation = json.loads((tmp_path / "data" / "generation.json").read_text())
  assert generation["generator_kind"] == "stylegan1"
  from disentangle_jax.data import pipeline  # pylint: disable=import-outside-toplevel

  mesh = step_lib.make_mesh()
  batch = next(iter(pipeline.train_pipeline(config, mesh, start_step=0, data_dir=directory, num_steps=1)))
  res = int(model.spec.resolution)
  assert batch["id"].shape == (jax.device_count(), res, res, 3) and np.isfinite(np.asarray(batch["id"])).all()
  graphs, frozen_state, params, constants = step_lib.split_model(model)
  optimizers = step_lib.make_optimizers(config.optim)
  state = step_lib.init_state(params, constants, optimizers)
  step = step_lib.make_train_step(graphs, model.spec, config, optimizers, mesh)
  new_state, metrics = jax.eval_shape(step, state, frozen_state, step_lib.step_batch(batch, mesh))
  shape = lambda tree: jax.tree.map(lambda x: (x.shape, x.dtype), tree)
  assert shape(new_state) == shape(state)
  assert metrics and all(m.shape == () for m in jax.tree.leaves(metrics))
