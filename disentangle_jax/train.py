"""`train_and_evaluate(config, workdir)`: the training loop, in sections (mesh, data, model, state, loop).

What it guarantees:
- one trainer per workdir (`workdir_lock`): a second one fails at once naming the holder;
- resumes by itself from the newest usable checkpoint in `workdir/checkpoints` (the input pipeline restarts at that
  step, so an interrupted-then-resumed run is step-for-step the uninterrupted one); a damaged newest checkpoint is
  moved aside with a warning and the one before it is used (`checkpoints`), and every save is read back and
  verified;
- on SIGTERM (preemption) it finishes the current step, saves a checkpoint and returns normally; with several
  processes the decision is taken together through JAX's preemption sync point;
- a non-finite loss or gradient norm stops the run with `FloatingPointError` naming the term and the step, before
  any checkpoint of the bad state can be written: every metric since the last check is inspected before each save;
- process 0 writes TensorBoard scalars (every loss term, the learning rates, steps/s), image grids (rows: identity
  image | attribute image | output) and the hyper-parameters (once, on a fresh start) through clu; other processes
  only log.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import threading
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from clu import periodic_actions
from flax import nnx

from disentangle_jax import checkpoints
from disentangle_jax import config_check
from disentangle_jax import errors
from disentangle_jax import evaluate as evaluate_lib
from disentangle_jax import hosts
from disentangle_jax import inference
from disentangle_jax import model as model_lib
from disentangle_jax import train_step as step_lib
from disentangle_jax import trees
from disentangle_jax import workdir_lock
from disentangle_jax.metrics import periodic as periodic_metrics
from disentangle_jax.toy import prepare as toy_prepare
from disentangle_jax.toy import score as toy_score

SCORE_FILE = "score.json"  # the toy world's exact score, written at the last step
PREPARED_DIR = "prepared"  # the toy world's trained E_id and landmark net (converted weights)


@dataclasses.dataclass
class Result:
  """What a run returns: its last step, logged training metrics per step, and evaluation results per step."""

  step: int
  history: dict[int, dict[str, float]]
  evaluations: dict[int, dict[str, float]]
  preempted: bool = False
  score: dict[str, float] | None = None  # the toy world's exact score at the last step (`toy/score.py`)
  stopped_early: bool = False  # `early_stop_evaluations` evaluations in a row without a new best


class NonFiniteLossError(errors.UserError, FloatingPointError):
  """A loss term or gradient norm became NaN/inf; the newest checkpoint predates it."""


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _flat_hparams(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """`{"section.field": value}` with values TensorBoard's hparams accept (anything else as its str)."""
  return {
    ".".join(path): v if isinstance(v, (int, float, str, bool)) else str(v)
    for path, v in trees.flatten(config.to_dict()).items()
  }


def _toy_score(config: ml_collections.ConfigDict, model: model_lib.Model, workdir: str) -> dict[str, float]:
  """The toy world's exact score of `model` on held-out pairs, also written to `<workdir>/score.json`."""
  result = toy_score.score(
    inference.InferenceModel(config, model),
    num_pairs=int(config.score_pairs),
    truncation_psi=float(config.data.truncation_psi),
  )
  if jax.process_index() == 0:
    with open(os.path.join(workdir, SCORE_FILE), "w") as f:
      json.dump(result, f, indent=2, sort_keys=True)
  logging.info("toy score: %s", ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.items())))
  return result


def data_dir(config: ml_collections.ConfigDict, workdir: str) -> str:
  """`config.data.dir`, or `<workdir>/data` when it is empty (the smoke config)."""
  return config.data.dir or os.path.join(workdir, "data")


def ensure_dataset(config: ml_collections.ConfigDict, directory: str, generator: Any = None) -> None:
  """Renders the dataset with G if `directory` has none yet (resumes a partly written one, repairs a damaged one).

  With several processes all of them look at the folder between two barriers, so they agree on whether to render
  (each then writes its own shards, and `generate` synchronises them before process 0 writes the metadata).
  """
  from disentangle_jax.data import generate  # pylint: disable=import-outside-toplevel

  hosts.barrier("train.dataset_check")
  missing = not os.path.exists(os.path.join(directory, "dataset_info.json"))
  # A stat and the record count of each shard (no hashing: cheap for 70,000 images); generate-data hashes too.
  problems = [] if missing else generate.verify(directory, checksums=False)
  hosts.barrier("train.dataset_checked")
  if missing or problems:
    if problems:
      logging.warning(
        "the dataset in %s needs repair (%s): rendering its bad shards again",
        directory,
        "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""),
      )
    else:
      logging.info("no dataset in %s: generating it with the configured generator", directory)
    generate.generate(config, directory, generator=generator)
    hosts.barrier("train.dataset_ready")


def local_rows(x: jax.Array) -> np.ndarray:
  """The rows of a batch-sharded global array held by this process (all of it with one process)."""
  if x.is_fully_addressable:
    return np.asarray(jax.device_get(x))
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  seen, parts = set(), []
  for s in shards:
    if (s.index[0].start, s.index[0].stop) not in seen:
      seen.add((s.index[0].start, s.index[0].stop))
      parts.append(np.asarray(s.data))
  return np.concatenate(parts)


def image_grid(rows: list[np.ndarray], max_columns: int = 8) -> np.ndarray:
  """Stacks image rows [B, H, W, 3] in [-1, 1] into one [R*H, C*W, 3] picture in [0, 1] (one example per column)."""
  rows = [np.clip((np.asarray(r[:max_columns], np.float32) + 1.0) / 2.0, 0.0, 1.0) for r in rows]
  return np.concatenate([np.concatenate(list(r), axis=1) for r in rows], axis=0)


class _Preemption:
  """SIGTERM -> save and stop. One process: our own handler; several: JAX's preemption sync point."""

  def __init__(self):
    self.requested = False
    self._previous = None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning("SIGTERM received: saving a checkpoint after this step, then stopping")
    self.requested = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

      try:
        return bool(multihost_utils.reached_preemption_sync_point(step))
      except RuntimeError:  # the preemption service is not running (jax.distributed not initialised by us)
        return False
    return self.requested

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class _MetricBuffer:
  """Step metrics kept on device until a log or a checkpoint; checked for NaN/inf when read."""

  def __init__(self, adversarial_every: int):
    self.pending: list[tuple[int, dict[str, jax.Array]]] = []
    self.every = adversarial_every

  def add(self, step: int, metrics: dict[str, jax.Array]) -> None:
    self.pending.append((step, metrics))

  def drain(self) -> dict[str, float]:
    """Averages of the pending steps (adversarial terms over the steps that ran them); raises on a non-finite value."""
    if not self.pending:
      return {}
    fetched = jax.device_get(self.pending)
    self.pending = []
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for step, metrics in fetched:
      bad = {k: float(v) for k, v in metrics.items() if not np.isfinite(v)}
      if bad:
        raise NonFiniteLossError(f"non-finite {', '.join(f'{k} = {v}' for k, v in bad.items())} at step {step}")
      adversarial = step % self.every == 0
      for k, v in metrics.items():
        v = float(v)
        if k in step_lib.ADVERSARIAL_METRICS and not adversarial:
          continue
        sums[k] = sums.get(k, 0.0) + v
        counts[k] = counts.get(k, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


# ----------------------------------------------------------------------------------------------------------------
# The loop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> Result:
  """Trains E_attr, M and D_W as `config` says, writing metrics, images and checkpoints into `workdir`.

  Checks the config first (`config_check.validate`: `ConfigError` naming every impossible value) and holds the
  workdir's lock for the whole run: a second trainer on a busy workdir raises `WorkdirBusyError`. With
  `num_steps` at or below the newest checkpoint's step it only resumes and evaluates nothing.
  """
  config_check.validate(config, allow_empty=True)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lock.WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
    return _train(_prepared(config, workdir), workdir)


def _prepared(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """`config` with the toy world's networks (`toy_prepare.needs_preparing`) trained once into
  `<workdir>/prepared` (or reused)."""
  names = toy_prepare.needs_preparing(config)
  if not names:
    return config
  if jax.process_count() > 1:
    raise errors.ConfigError(
      f"the toy world's {', '.join(names)} are trained in one process: run `train` once on one host, or set "
      "their weights to prepared directories"
    )
  logging.info("prepare: the toy world's %s (trained once, then reused from %s)", ", ".join(names), PREPARED_DIR)
  return toy_prepare.prepare(config, os.path.join(workdir, PREPARED_DIR))


def _train(config: ml_collections.ConfigDict, workdir: str) -> Result:
  num_steps = int(config.num_steps)

  # ---- mesh and writers
  mesh = step_lib.make_mesh()
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  logging.info("mesh: %s over %d devices in %d processes", dict(mesh.shape), jax.device_count(), jax.process_count())

  # ---- model (frozen networks loaded or initialised, trainable ones initialised)
  model = model_lib.build(config)
  spec = model.spec
  graphs, frozen_state, params, constants = step_lib.split_model(model)
  frozen_state = step_lib.replicate(model_lib.cast_frozen_state(frozen_state, spec.frozen_dtype), mesh)
  optimizers = step_lib.make_optimizers(config.optim)
  state = step_lib.replicate(step_lib.init_state(params, constants, optimizers), mesh)

  # ---- data
  directory = data_dir(config, workdir)
  ensure_dataset(config, directory, generator=model.frozen.generator)

  # ---- checkpoints: resume from the newest usable one
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
  resumed = checkpoints.restore_train_state(workdir, abstract)
  latest = None
  if resumed is not None:
    latest, state = resumed
    logging.info("resumed from the checkpoint of step %d", latest)
  saver = checkpoints.Saver(workdir, keep=int(config.keep_checkpoints))
  best = checkpoints.BestCheckpoints(
    workdir, keep=int(config.get("keep_best_checkpoints", 0)), patience=int(config.get("early_stop_evaluations", 0))
  )
  start = int(jax.device_get(state.step))
  if start == 0 and jax.process_index() == 0:
    writer.write_hparams(_flat_hparams(config))
    with open(os.path.join(workdir, checkpoints.CONFIG_FILE), "w") as f:
      f.write(config.to_json_best_effort(indent=2))

  # ---- steps
  train_step = step_lib.make_train_step(graphs, spec, config, optimizers, mesh)
  eval_step = evaluate_lib.make_eval_step(graphs, spec, mesh)
  swap = jax.jit(
    lambda state, frozen_state, ids, attrs: model_lib.swap(
      nnx.merge(graphs.frozen, frozen_state), evaluate_lib.trainable_from_state(graphs, state), spec, ids, attrs
    )[0]
  )
  from disentangle_jax.data import pipeline as pipeline_lib  # pylint: disable=import-outside-toplevel

  batches = pipeline_lib.train_pipeline(
    config, mesh, start_step=start, data_dir=directory, num_steps=max(0, num_steps - start)
  )

  def validation_pipeline(num_batches: int) -> pipeline_lib.Pipeline:
    """Cross pairs of the validation split, the same ones at every evaluation."""
    return pipeline_lib.Pipeline(
      directory,
      "validation",
      batch_size=int(config.per_device_batch_size) * jax.local_device_count(),
      seed=int(config.data.seed) + 1,
      cross_every=1,
      num_steps=num_batches,
      mesh=mesh,
    )

  validation = validation_pipeline(int(config.eval_batches))
  # ArcFace and FID on a sample, only when config.eval names their weights.
  paper_metrics = periodic_metrics.PaperMetrics(config)
  global_batch = int(config.per_device_batch_size) * jax.device_count()
  paper_batches = None
  if paper_metrics.active:
    paper_batches = validation_pipeline(-(-paper_metrics.samples // global_batch))

  # ---- the loop
  buffer = _MetricBuffer(int(config.optim.adversarial_every))
  progress = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  preemption = _Preemption()
  result = Result(step=start, history={}, evaluations={})
  last_saved = latest
  lrs = {f"learning_rate/{k}": v for k, v in optimizers.learning_rates.items()}

  def save(step: int) -> None:
    nonlocal last_saved
    buffer_metrics = buffer.drain()  # raises before a bad state is saved
    if buffer_metrics:
      writer.write_scalars(step, {**buffer_metrics, **lrs})
      result.history[step] = buffer_metrics
    saver.save(step, state)
    last_saved = step

  try:
    step = start
    for batch in batches:
      step = batch["step"]
      with jax.profiler.StepTraceAnnotation("train", step_num=step):
        state, metrics = train_step(state, frozen_state, step_lib.step_batch(batch, mesh))
      done = step + 1
      buffer.add(step, metrics)
      progress(done)
      result.step = done

      if done % int(config.log_every) == 0 or done == num_steps:
        averages = buffer.drain()
        writer.write_scalars(done, {**averages, **lrs})
        result.history[done] = averages
      if done % int(config.image_every) == 0 or done == num_steps:
        out = swap(state, frozen_state, batch["id"], batch["attr"])
        rows = [local_rows(x)[:8] for x in (batch["id"], batch["attr"], out)]
        if jax.process_index() == 0:
          writer.write_images(done, {"train/id_attr_output": image_grid(rows)[None]})
      if done % int(config.eval_every) == 0 or done == num_steps:
        with progress.timed("eval"):
          scores = evaluate_lib.evaluate(eval_step, state, frozen_state, validation)
          if paper_batches is not None:
            swap_now = lambda ids, attrs: swap(state, frozen_state, ids, attrs)  # noqa: B023 (called right here)
            scores.update(paper_metrics(swap_now, paper_batches, rows=local_rows))
        writer.write_scalars(done, {f"eval/{k}": v for k, v in scores.items()})
        result.evaluations[done] = scores
        result.stopped_early = best.update(done, scores, state)
      if done == num_steps and config.generator.kind == "toy":
        with progress.timed("score"):
          result.score = _toy_score(
            config,
            model_lib.Model(
              spec, nnx.merge(graphs.frozen, frozen_state), evaluate_lib.trainable_from_state(graphs, state)
            ),
            workdir,
          )
        writer.write_scalars(done, {f"score/{k}": v for k, v in result.score.items()})
      stop = preemption.reached(done)
      if done % int(config.checkpoint_every) == 0 or done == num_steps or stop or result.stopped_early:
        save(done)
      if result.stopped_early:
        logging.warning("no new best in %s evaluations: stopping at step %d", config.early_stop_evaluations, done)
        break
      if stop:
        result.preempted = True
        logging.warning("preempted: checkpoint of step %d saved in %s; stopping", done, workdir)
        break
  except NonFiniteLossError as e:
    saver.close()
    best.close()
    where = f"step {last_saved}" if last_saved is not None else "none yet"
    raise NonFiniteLossError(
      f"{e}; training stopped, the newest checkpoint ({where}) in "
      f"{checkpoints.checkpoint_dir(workdir)} predates it and is intact"
    ) from None
  finally:
    preemption.close()
    saver.close()
    best.close()
    writer.flush()
  return result
