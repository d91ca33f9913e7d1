"""Training checkpoints: where they live, how they are written and verified, and how they are restored.

A training workdir holds

    config.json                        the run's config (written on a fresh start)
    checkpoints/<step>/default/        an Orbax `CheckpointManager` checkpoint of the train state (one item)
    checkpoints/<step>/manifest.json   a fingerprint per array of that state, written once the save was read back
    best/identity/<step>/              the state of the evaluation with the best identity preservation so far
    best/landmarks/<step>/             ... with the lowest landmark error so far (both as checkpoints/<step>/)
    best/state.json                    the best values so far and the early-stop count (`BestCheckpoints`)
    corrupt_checkpoints/<step>/        checkpoints that failed to read, moved aside by the trainer (never deleted)

Why a manifest: a checkpoint can be damaged after it was written (a full disk, a truncated copy, a flipped bit), and
Orbax reads some damage as a traceback deep in TensorStore and some not at all. Every array is fingerprinted (on the
host) when it is saved (an exact, order-sensitive checksum of its bits); once the asynchronous write has finished
the checkpoint is read back and compared, and only then is the manifest written. A restore recomputes the
fingerprints of what it read, so a checkpoint that no longer matches is detected and the newest one that does is
used instead, with a warning naming the bad one. A checkpoint without a manifest (a kill between the write and its
verification) is used if it reads completely.

Only this module knows the layout: `train` saves and resumes through `Saver`, `BestCheckpoints` and
`restore_train_state`, inference and export read through `restore_inference` (`best=` picks a best checkpoint).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import time
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from disentangle_jax import errors
from disentangle_jax import hosts
from disentangle_jax import trees

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "corrupt_checkpoints"
BEST_DIR = "best"
BEST_STATE = "state.json"
ITEM = "default"  # the folder of a `CheckpointManager` checkpoint's single item
MANIFEST = "manifest.json"
INFERENCE_NETS = ("attr_encoder", "mapper")


class CheckpointError(errors.UserError, ValueError):
  """No checkpoint of a workdir can be used; the message names each one and what is wrong with it."""


# ----------------------------------------------------------------------------------------------------------------
# Paths


def checkpoint_dir(workdir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(workdir) / CHECKPOINT_DIR


def best_dir(workdir: str | os.PathLike, metric: str) -> pathlib.Path:
  """Where the best checkpoints by `metric` ("identity" or "landmarks") live: `<workdir>/best/<metric>`."""
  if metric not in BestCheckpoints.METRICS:
    raise CheckpointError(f"no best checkpoints by {metric!r}; choose one of {sorted(BestCheckpoints.METRICS)}")
  return pathlib.Path(workdir) / BEST_DIR / metric


def is_workdir(path: str | os.PathLike) -> bool:
  """True if `path` looks like a training workdir (a checkpoints folder or a saved config)."""
  path = pathlib.Path(path)
  return (path / CHECKPOINT_DIR).is_dir() or (path / CONFIG_FILE).is_file()


def steps(workdir: str | os.PathLike, directory: str | os.PathLike | None = None) -> list[int]:
  """Steps with a finished checkpoint in `workdir` (or in `directory`, e.g. a `best_dir`), ascending (Orbax's
  temporary folders are not finished)."""
  directory = checkpoint_dir(workdir) if directory is None else pathlib.Path(directory)
  if not directory.is_dir():
    return []
  return sorted(int(c.name) for c in directory.iterdir() if c.is_dir() and c.name.isdigit())


def read_config(workdir: str | os.PathLike) -> ml_collections.ConfigDict:
  """The run's `config.json`."""
  path = pathlib.Path(workdir) / CONFIG_FILE
  if not path.is_file():
    raise CheckpointError(
      f"{pathlib.Path(workdir)}: a training workdir without {CONFIG_FILE}; cannot tell which "
      "networks the checkpoint belongs to"
    )
  try:
    return ml_collections.ConfigDict(json.loads(path.read_text()))
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise CheckpointError(f"{path}: not valid JSON ({e})") from e


# ----------------------------------------------------------------------------------------------------------------
# Fingerprints


def _key(path: tuple[Any, ...]) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _as_uint32(x: np.ndarray) -> np.ndarray:
  """The bits of `x` as a flat uint32 vector."""
  x = np.ravel(x)
  if x.dtype == np.bool_:
    return x.astype(np.uint32)
  views = {4: np.uint32, 2: np.uint16, 1: np.uint8}
  if x.dtype.itemsize not in views:
    raise TypeError(f"cannot fingerprint dtype {x.dtype}")
  return x.view(views[x.dtype.itemsize]).astype(np.uint32)


def _fingerprint(x: np.ndarray) -> int:
  """sum_i bits_i * (2 i + 1) mod 2^32: exact in any summation order, and moved or changed values alter it."""
  bits = _as_uint32(x)
  weights = np.arange(bits.shape[0], dtype=np.uint32) * np.uint32(2) + np.uint32(1)
  with np.errstate(over="ignore"):
    return int(np.sum(bits * weights, dtype=np.uint32))


def _to_host(x: Any) -> np.ndarray:
  """A host copy of a numpy or jax array, also when it spans several processes (then a collective)."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    if x.is_fully_replicated:
      return np.asarray(x.addressable_data(0))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))
  return np.asarray(x)


def fingerprints(tree: Any) -> dict[str, int]:
  """{array path: fingerprint} of a tree of host or device arrays.

  Computed on the host, one array at a time: a jitted program over a train state's thousand-odd leaves took XLA
  15 s to compile on a CPU, where copying and hashing them takes well under a second (about 0.15 s for 25 million
  float32 values).
  """
  return {_key(p): _fingerprint(_to_host(v)) for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _read_manifest(step_dir: pathlib.Path) -> dict[str, int] | None:
  path = step_dir / MANIFEST
  if not path.is_file():
    return None
  try:
    return {k: int(v) for k, v in json.loads(path.read_text())["fingerprints"].items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise _Unreadable(f"{path} is unreadable ({type(e).__name__}: {e})") from e


def _check(step_dir: pathlib.Path, restored: Any, *, require_all: bool) -> None:
  """Raises `_Unreadable` if `restored` does not match the step's manifest (when it has one)."""
  expected = _read_manifest(step_dir)
  if expected is None:
    return
  got = fingerprints(restored)
  if require_all and set(got) != set(expected):
    raise _Unreadable(f"its arrays {sorted(set(got) ^ set(expected))[:3]} differ from its manifest's")
  for name, value in got.items():
    if name not in expected:
      raise _Unreadable(f"{name} is not in its manifest")
    if expected[name] != value:
      raise _Unreadable(f"{name} does not match its manifest (changed after it was written)")


class _Unreadable(Exception):
  """One checkpoint cannot be used (internal: restore falls back to an older one)."""


# ----------------------------------------------------------------------------------------------------------------
# Restoring with a fallback


def _restore_newest(
  workdir: str | os.PathLike,
  read: Callable[[pathlib.Path], Any],
  *,
  require_all: bool,
  quarantine: bool,
  step: int | None = None,
  directory: pathlib.Path | None = None,
) -> tuple[int, Any] | None:
  """(step, tree) of the newest checkpoint that reads completely and matches its manifest; None if none exists.

  `read(item_dir)` restores one checkpoint. A bad one is reported with a warning naming it and, with `quarantine`,
  moved into `corrupt_checkpoints/` so that the run can save that step again (nothing is ever deleted).
  `directory` (default `checkpoints/`) is where the checkpoints are.
  """
  directory = checkpoint_dir(workdir) if directory is None else directory
  available = steps(workdir, directory)
  if step is not None:
    if step not in available:
      raise CheckpointError(f"{pathlib.Path(workdir)}: no checkpoint of step {step}; have {available}")
    available = [step]
  if not available:
    return None
  problems = []
  for candidate in reversed(available):
    step_dir = directory / str(candidate)
    try:
      item = step_dir / ITEM
      if not item.is_dir():
        raise _Unreadable(f"{ITEM}/ is missing")
      tree = read(item)
      _check(step_dir, tree, require_all=require_all)
    except Exception as e:  # pylint: disable=broad-except  # TensorStore raises many types for damaged files
      reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
      problems.append(f"step {candidate}: {reason}")
      logging.warning(
        "checkpoint %s is unusable (%s)%s",
        step_dir,
        reason,
        "; trying the previous one" if candidate != available[0] else "",
      )
      if quarantine:
        _quarantine(workdir, step_dir)
      continue
    if problems:
      logging.warning("using the checkpoint of step %d in %s instead", candidate, directory)
    return candidate, tree
  raise CheckpointError(f"{directory}: no checkpoint reads completely ({'; '.join(problems)})")


def _quarantine(workdir: str | os.PathLike, step_dir: pathlib.Path) -> None:
  if jax.process_index() != 0:
    return
  target = pathlib.Path(workdir) / CORRUPT_DIR / step_dir.name
  if target.exists():
    target = target.with_name(f"{step_dir.name}.{int(time.time())}")
  target.parent.mkdir(parents=True, exist_ok=True)
  shutil.move(str(step_dir), str(target))
  logging.warning("moved it to %s", target)


def restore_train_state(workdir: str | os.PathLike, abstract_state: Any) -> tuple[int, Any] | None:
  """The newest usable train state of `workdir` with `abstract_state`'s shapes and shardings, or None.

  Unusable checkpoints are moved into `corrupt_checkpoints/` (the run will write those steps again).
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  def read(item: pathlib.Path) -> Any:
    with ocp.StandardCheckpointer() as ckptr:
      return ckptr.restore(item, abstract_state)

  found = _restore_newest(workdir, read, require_all=True, quarantine=True)
  hosts.barrier("checkpoints.restored")  # every process must have looked before any moves a folder away
  return found


def restore_inference(
  workdir: str | os.PathLike, step: int | None = None, best: str | None = None
) -> tuple[ml_collections.ConfigDict, dict[str, Any], int]:
  """(config, {"attr_encoder": pure dict, "mapper": pure dict}, step) of the newest usable checkpoint (or `step`).

  Reads only the parameters and constants of E_attr and M (Orbax partial restore: the optimiser state, three to
  four times the parameters, is never read). Nothing is moved: loading a model never changes the workdir.
  `best` ("identity" or "landmarks") reads the newest of the best checkpoints by that evaluation metric instead.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  workdir = pathlib.Path(workdir).absolute()
  config = read_config(workdir)

  def read(item: pathlib.Path) -> Any:
    with ocp.PyTreeCheckpointer() as ckptr:
      tree = ckptr.metadata(item)
      tree = getattr(tree, "item_metadata", tree)
      tree = getattr(tree, "tree", tree)
      try:
        wanted = {group: {net: tree[group][net] for net in INFERENCE_NETS} for group in ("params", "constants")}
      except (KeyError, TypeError) as e:
        raise _Unreadable(
          f"not a train state with params/constants of {INFERENCE_NETS} ({type(e).__name__}: {e})"
        ) from e
      restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
      return ckptr.restore(
        item,
        args=ocp.args.PyTreeRestore(
          item=jax.tree.map(lambda _: 0, wanted), restore_args=restore_args, partial_restore=True
        ),
      )

  directory = None if best is None else best_dir(workdir, best)
  found = _restore_newest(workdir, read, require_all=False, quarantine=False, step=step, directory=directory)
  if found is None and best is not None:
    raise CheckpointError(f"{directory}: no best checkpoint yet (they are written after evaluations)")
  if found is None:
    raise CheckpointError(
      f"{checkpoint_dir(workdir)}: no checkpoint yet (train first, or wait for the first save "
      f"at step {config.get('checkpoint_every', '?')})"
    )
  step, restored = found
  trained = {net: _module_tree(restored["params"][net], restored["constants"][net]) for net in INFERENCE_NETS}
  return config, trained, int(step)


def _module_tree(params: Any, constants: Any) -> dict[str, Any]:
  """One module's parameters and constants as one nested dict of numpy arrays.

  Some flax versions save an NNX variable as `{"value": array}`; that level is dropped.
  """
  flat = {**trees.flatten(params), **trees.flatten(constants)}
  return trees.unflatten({path[:-1] if path[-1] == "value" else path: np.asarray(leaf) for path, leaf in flat.items()})


# ----------------------------------------------------------------------------------------------------------------
# Saving


class Saver:
  """Saves train states asynchronously (Orbax), then reads each one back and writes its manifest.

  The read-back of a save happens when the next save starts or at `close()`, so the write itself still overlaps
  with training. A checkpoint that reads back differently from what was saved raises `CheckpointError` (and is
  moved aside); the previous one is untouched.
  """

  def __init__(self, workdir: str | os.PathLike, keep: int, directory: str | os.PathLike | None = None):
    import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

    self._ocp = ocp
    self.workdir = pathlib.Path(workdir)
    self.directory = checkpoint_dir(workdir) if directory is None else pathlib.Path(directory)
    self._manager = ocp.CheckpointManager(
      self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    )
    self._pending: list[tuple[int, Any, Any]] = []  # (step, fingerprints, abstract state)

  def save(self, step: int, state: Any) -> None:
    self.verify_pending()
    prints = fingerprints(state)  # before the next step can donate `state`
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    self._manager.save(step, args=self._ocp.args.StandardSave(state), force=True)
    self._pending.append((step, prints, abstract))

  def verify_pending(self) -> None:
    """Waits for the writes in flight, reads each back and writes its manifest (process 0)."""
    if not self._pending:
      return
    self._manager.wait_until_finished()
    pending, self._pending = self._pending, []
    for step, expected, abstract in pending:
      step_dir = self.directory / str(step)
      if not step_dir.is_dir():  # already rotated out by max_to_keep
        continue
      try:  # every process reads (an Orbax restore is collective)
        with self._ocp.StandardCheckpointer() as ckptr:
          # Read into host arrays: only the bytes are compared, and placing every array on every device of the
          # mesh first took 15 s for a toy train state on 8 CPU devices, against 3 s.
          host = jax.tree.map(lambda a: np.empty(a.shape, a.dtype), abstract)
          got = fingerprints(ckptr.restore(step_dir / ITEM, host))
      except Exception as e:  # pylint: disable=broad-except
        got = {"<read>": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
      bad = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
      if bad:
        _quarantine(self.workdir, step_dir)
        raise CheckpointError(
          f"the checkpoint of step {step} read back differently from what was saved "
          f"({', '.join(map(str, bad[:3]))}: {got.get(bad[0], 'missing')}); it was moved into "
          f"{self.workdir / CORRUPT_DIR}; check the disk"
        )
      if jax.process_index() != 0:
        continue
      tmp = step_dir / f"{MANIFEST}.tmp"
      tmp.write_text(json.dumps({"step": step, "fingerprints": expected}, indent=0, sort_keys=True))
      os.replace(tmp, step_dir / MANIFEST)

  def close(self) -> None:
    """Finishes and verifies every save; safe to call twice."""
    try:
      self.verify_pending()
    finally:
      self._manager.wait_until_finished()
      self._manager.close()


class BestCheckpoints:
  """The original's checkpoint policy at evaluations (`trainer.py`, `Trainer.test`), beside the latest checkpoints.

  After each evaluation: the train state is saved into `best/identity/<step>` when identity preservation,
  |mean cos(E_id(I_id), E_id(output))| on the validation pairs (`similarity/id_to_out`), is higher than at every
  earlier evaluation, and into `best/landmarks/<step>` when the landmark error (`landmarks/mse`) is lower. The
  early-stop count follows the original to the letter: a new landmark best resets it to 0, then it is reset again
  by a new identity best or else incremented (so a landmark-only improvement leaves it at 1); `update` returns True
  once it exceeds `patience` (the original's `--not_improved_exit`; 0 here means never). The best values and the
  count survive a restart (`best/state.json`). Each directory keeps its `keep` newest bests (Orbax's `max_to_keep`;
  the latest checkpoints' rotation never touches them).
  """

  METRICS = {"identity": "similarity/id_to_out", "landmarks": "landmarks/mse"}

  def __init__(self, workdir: str | os.PathLike, keep: int, patience: int = 0):
    self.workdir, self.keep, self.patience = pathlib.Path(workdir), int(keep), int(patience)
    self.path = self.workdir / BEST_DIR / BEST_STATE
    self.state = {"identity": None, "landmarks": None, "not_improved": 0, "steps": {}}
    if self.path.is_file():
      try:
        self.state.update(json.loads(self.path.read_text()))
      except (OSError, ValueError) as e:
        raise CheckpointError(
          f"{self.path}: unreadable ({e}); delete it to start the best-checkpoint records again"
        ) from None
    self._savers: dict[str, Saver] = {}

  def _saver(self, metric: str) -> Saver:
    if metric not in self._savers:
      self._savers[metric] = Saver(self.workdir, self.keep, best_dir(self.workdir, metric))
    return self._savers[metric]

  def update(self, step: int, scores: dict[str, float], state: Any) -> bool:
    """Saves `state` where `scores` (one evaluation's means) set a new best; True when training should stop."""
    if self.keep <= 0:
      return False
    identity = abs(float(scores[self.METRICS["identity"]]))
    landmarks = float(scores[self.METRICS["landmarks"]])
    best = self.state
    if best["landmarks"] is None or landmarks < best["landmarks"]:
      best["not_improved"], best["landmarks"] = 0, landmarks
      best["steps"]["landmarks"] = step
      self._saver("landmarks").save(step, state)
    if best["identity"] is None or identity > best["identity"]:
      best["not_improved"], best["identity"] = 0, identity
      best["steps"]["identity"] = step
      self._saver("identity").save(step, state)
    else:
      best["not_improved"] += 1
    if jax.process_index() == 0:
      self.path.parent.mkdir(parents=True, exist_ok=True)
      tmp = self.path.with_suffix(".tmp")
      tmp.write_text(json.dumps(best, indent=1, sort_keys=True))
      os.replace(tmp, self.path)
    return self.patience > 0 and best["not_improved"] > self.patience

  def close(self) -> None:
    for saver in self._savers.values():
      saver.close()
