"""The pieces of the official semantics `configs/paper.py` switches on, each against its definition.

`tests/test_official_step.py` checks them together against the authors' own training step; these tests pin each
one down on its own (and fast): Keras' Adam, the summed L1, the landmark units, the cross-step phase and the
best-checkpoint policy with its early stop.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from disentangle_jax import checkpoints
from disentangle_jax import config_check
from disentangle_jax import model as model_lib
from disentangle_jax import train_step as step_lib
from disentangle_jax.configs import paper
from disentangle_jax.configs import smoke
from disentangle_jax.data import pipeline


def _keras_adam_numpy(grads, lr, b1=0.9, b2=0.999, eps=1e-7):
  """tf.keras' Adam update (tf_keras `Adam.update_step`, `adaptive_epsilon=False`; TF 2.0's ResourceApplyAdam), in
  float64 numpy: the updates applied at each step. As Keras: `1 - beta` from the Python floats, the bias-correction
  powers from the betas cast to float32."""
  p1, p2 = float(np.float32(b1)), float(np.float32(b2))
  m = v = np.zeros_like(grads[0], np.float64)
  out = []
  for t, g in enumerate(grads, start=1):
    m = m + (g - m) * (1 - b1)
    v = v + (g * g - v) * (1 - b2)
    alpha = lr * np.sqrt(1 - p2**t) / (1 - p1**t)
    out.append(-(m * alpha) / (np.sqrt(v) + eps))
  return out


def test_keras_adam_is_keras_and_not_optax():
  # Gradients from 1e-9 to 1e-2: around eps = 1e-7 and its first-step scale eps / sqrt(1 - b2) = 3.2e-6.
  rng = np.random.default_rng(0)
  grads = [(rng.standard_normal(64) * np.logspace(-9, -2, 64)).astype(np.float32) for _ in range(4)]
  want = _keras_adam_numpy(grads, 5e-5)
  for name, rule, close in (("keras", step_lib.keras_adam, True), ("optax", optax.adam, False)):
    opt = rule(5e-5, b1=0.9, b2=0.999, eps=1e-7)
    state = opt.init(jnp.zeros(64))
    worst = 0.0
    for g, w in zip(grads, want):
      u, state = opt.update(jnp.asarray(g), state)
      worst = max(worst, float(np.abs(np.asarray(u, np.float64) - w).max()) / 5e-5)
    # keras: float32 round-off (measured 3.5e-6 lr); optax: another eps placement (measured 0.70 lr)
    assert (worst < 1e-5) == close, (name, worst)
  assert step_lib.make_optimizers(paper.get_config().optim).main.init(jnp.zeros(2)).count == 0


def test_l1_reduction_sum_is_per_device_batch_times_mean():
  cfg = paper.get_config().loss
  assert step_lib.LossWeights.from_config(cfg, per_device_batch_size=6).l1_scale == 6.0  # Reduction.SUM over 6
  cfg.l1_reduction = "mean"
  assert step_lib.LossWeights.from_config(cfg, per_device_batch_size=6).l1_scale == 1.0
  cfg.l1_reduction = "total"
  with pytest.raises(ValueError, match="l1_reduction"):
    step_lib.LossWeights.from_config(cfg)


def test_landmark_units():
  """160 px units: FAN's 256 px input -> x 160/256 (the same squared error counts 2.56x less), the face mesh's
  192 px -> x 160/192; 0 keeps the net's pixels; without a landmark net (inference) nothing scales."""
  cfg = ml_collections.ConfigDict({"units_px": 160})

  class Net:
    def __init__(self, size):
      self.config = type("C", (), {"input_size": size})()

  assert model_lib.landmark_scale(cfg, Net(256), 256) == pytest.approx(0.625)
  assert (1 / model_lib.landmark_scale(cfg, Net(256), 256)) ** 2 == pytest.approx(2.56)
  assert model_lib.landmark_scale(cfg, Net(192), 256) == pytest.approx(160 / 192)
  assert model_lib.landmark_scale(cfg, None, 256) == 1.0
  assert model_lib.landmark_scale(ml_collections.ConfigDict({"units_px": 0}), Net(256), 256) == 1.0


def test_cross_phase():
  """Theirs: epoch % 3 == 0 is cross (steps 0, 3, 6); the default keeps the last of each three."""
  assert [pipeline.is_same_step(s, 3, 0) for s in range(6)] == [False, True, True] * 2
  assert [pipeline.is_same_step(s, 3) for s in range(6)] == [True, True, False] * 2
  with pytest.raises(ValueError, match="cross_phase"):
    pipeline.is_same_step(0, 3, 3)
  c = paper.get_config()
  c.data.cross_phase = 3
  assert any("cross_phase" in p for p in config_check.problems(c))


def test_paper_is_official_and_smoke_keeps_its_semantics():
  c = paper.get_config()
  config_check.validate(c)
  assert (c.generator.kind, c.id_encoder.head, c.landmarks.units_px) == ("stylegan1", "proj", 160)
  assert (c.loss.l1_reduction, c.optim.adam, c.data.render_from, c.data.cross_phase) == ("sum", "keras", "ws", 0)
  assert (c.eval_every, c.eval_batches, c.per_device_batch_size) == (1000, 50, 6)
  s = smoke.get_config()
  assert (s.loss.l1_reduction, s.optim.adam, s.data.render_from, s.landmarks.units_px) == ("mean", "optax", "w", 0)
  assert "cross_phase" not in s.data and s.keep_best_checkpoints == 0


def _state(value: float):
  """A train-state-shaped tree (what `restore_inference` reads: params / constants of E_attr and M)."""
  leaf = lambda: jnp.full((3,), value, jnp.float32)  # noqa: E731
  return {
    "step": jnp.int32(0),
    "params": {"attr_encoder": {"w": leaf()}, "mapper": {"w": leaf()}},
    "constants": {"attr_encoder": {"s": leaf()}, "mapper": {"s": leaf()}},
  }


def test_best_checkpoints_follow_the_original(tmp_path):
  """trainer.py `test`: a lower landmark error and a higher |id_to_pred| are each saved; the early-stop count is
  reset by a landmark best, then reset again by an identity best or incremented; stop once it exceeds patience."""
  (tmp_path / checkpoints.CONFIG_FILE).write_text(json.dumps(smoke.get_config().to_dict()))
  best = checkpoints.BestCheckpoints(tmp_path, keep=5, patience=1)
  evals = [  # (step, id_to_out, landmarks/mse) -> expected count and stop
    (10, 0.20, 5.0, 0, False),  # both new bests
    (20, 0.10, 4.0, 1, False),  # landmarks only: reset, then +1 (their code)
    (30, -0.30, 6.0, 0, False),  # |id| 0.30 is a new identity best (they compare absolute values)
    (40, 0.25, 6.0, 1, False),
    (50, 0.25, 7.0, 2, True),  # more than patience = 1 evaluations without an identity best
  ]
  for step, ident, lnd, count, stop in evals:
    scores = {"similarity/id_to_out": ident, "landmarks/mse": lnd}
    assert best.update(step, scores, _state(float(step))) == stop
    assert best.state["not_improved"] == count
  best.close()
  assert checkpoints.steps(tmp_path, checkpoints.best_dir(tmp_path, "identity")) == [10, 30]
  assert checkpoints.steps(tmp_path, checkpoints.best_dir(tmp_path, "landmarks")) == [10, 20]
  assert checkpoints.steps(tmp_path) == []  # the latest checkpoints are elsewhere, untouched
  recorded = json.loads((tmp_path / "best" / "state.json").read_text())
  assert recorded["steps"] == {"identity": 30, "landmarks": 20} and recorded["identity"] == pytest.approx(0.3)
  _, trained, step = checkpoints.restore_inference(tmp_path, best="identity")
  assert step == 30 and float(trained["mapper"]["w"][0]) == 30.0
  # A restart continues the records: an equal score is no new best.
  again = checkpoints.BestCheckpoints(tmp_path, keep=5, patience=0)
  assert not again.update(60, {"similarity/id_to_out": 0.3, "landmarks/mse": 4.0}, _state(60.0))
  again.close()
  assert again.state["not_improved"] == 3 and checkpoints.steps(tmp_path, checkpoints.best_dir(tmp_path, "identity"))
  with pytest.raises(checkpoints.CheckpointError, match="no best checkpoints by 'pose'"):
    checkpoints.best_dir(tmp_path, "pose")


def test_keep_best_zero_saves_nothing(tmp_path):
  best = checkpoints.BestCheckpoints(tmp_path, keep=0)
  assert not best.update(1, {"similarity/id_to_out": 1.0, "landmarks/mse": 0.0}, _state(1.0))
  best.close()
  assert not (tmp_path / "best").exists()


@pytest.mark.parametrize("rule", ["keras", "optax"])
def test_attr_encoder_lr_scale_scales_e_attrs_updates_only(rule):
  """`optim.attr_encoder_lr_scale` multiplies E_attr's updates in both of its optimisers (main and adversarial),
  which under Adam is its learning rate, and leaves M's updates, D_W's optimiser and every optimiser state as they
  are (the checkpoint layout does not depend on it). The paper config keeps 1: the original's one rate."""
  assert paper.get_config().optim.attr_encoder_lr_scale == 1.0
  optim = ml_collections.ConfigDict({**smoke.get_config().optim.to_dict(), "adam": rule})
  plain = step_lib.make_optimizers(optim)
  optim.attr_encoder_lr_scale = 0.25
  scaled = step_lib.make_optimizers(optim)
  rng = np.random.default_rng(0)
  params = {"attr_encoder": {"k": jnp.ones((3, 2))}, "mapper": {"k": jnp.ones(4), "b": jnp.zeros(2)}}
  grads = [jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params) for _ in range(3)]
  for name in ("main", "adversarial", "discriminator"):
    want_tx, got_tx = getattr(plain, name), getattr(scaled, name)
    want_state, got_state = want_tx.init(params), got_tx.init(params)
    for g in grads:
      want, want_state = want_tx.update(g, want_state, params)
      got, got_state = got_tx.update(g, got_state, params)
      factor = 1.0 if name == "discriminator" else 0.25
      np.testing.assert_allclose(got["attr_encoder"]["k"], factor * want["attr_encoder"]["k"], rtol=1e-6)
      jax.tree.map(np.testing.assert_array_equal, got["mapper"], want["mapper"])
      jax.tree.map(np.testing.assert_array_equal, got_state, want_state)


def test_jit_compatible_keras_adam():
  """`keras_adam` runs inside jit with the state's count as a traced scalar (as in the train step)."""
  opt = step_lib.keras_adam(1e-3)
  update = jax.jit(opt.update)
  state = opt.init({"a": jnp.zeros(3)})
  for _ in range(2):
    u, state = update({"a": jnp.ones(3)}, state)
  assert int(state.count) == 2 and np.allclose(np.asarray(u["a"]), -1e-3, rtol=1e-4)
