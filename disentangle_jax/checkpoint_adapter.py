"""Reads the inference parameters out of a training workdir, without the optimiser state.

`train.py` saves `workdir/config.json` and, through an Orbax `CheckpointManager` in `workdir/checkpoints`, the train
state of `train_step.init_state`: {"step", "params": {net: Param state}, "constants": {net: other state},
"opt": {...}}. Inference needs E_attr and M only, so this restores just `params` and `constants` of those two
(Orbax partial restore: the Adam moments, three to four times the parameters, are never read) and returns them as
the pure dicts `inference.build` assigns. Kept apart from `train.py` so the training code owns its format and this
adapter is the one place that knows it.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import ml_collections
import numpy as np

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"  # train.CHECKPOINT_DIR (not imported: loading a model must not import training)
NETS = ("attr_encoder", "mapper")


def is_workdir(path: str | os.PathLike) -> bool:
  """True if `path` looks like a training workdir (a checkpoints folder or a saved config)."""
  path = pathlib.Path(path)
  return (path / CHECKPOINT_DIR).is_dir() or (path / CONFIG_FILE).is_file()


def checkpoint_steps(path: str | os.PathLike) -> list[int]:
  """Steps with a finished checkpoint in the workdir, ascending."""
  directory = pathlib.Path(path) / CHECKPOINT_DIR
  if not directory.is_dir():
    return []
  steps = []
  for child in directory.iterdir():
    if child.is_dir() and child.name.isdigit() and not any(p.name.endswith(".orbax-checkpoint-tmp")
                                                          for p in [child]):
      steps.append(int(child.name))
  return sorted(steps)


def restore_inference(path: str | os.PathLike, step: int | None = None
                      ) -> tuple[ml_collections.ConfigDict, dict[str, Any], int]:
  """(config, {"attr_encoder": pure dict, "mapper": pure dict}, step) of a workdir's latest (or given) checkpoint."""
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(path).absolute()
  config_file = path / CONFIG_FILE
  if not config_file.is_file():
    raise inference.ModelLoadError(f"{path}: a training workdir without {CONFIG_FILE}; cannot tell which networks "
                                   "the checkpoint belongs to")
  try:
    config = ml_collections.ConfigDict(json.loads(config_file.read_text()))
  except json.JSONDecodeError as e:
    raise inference.ModelLoadError(f"{config_file}: not valid JSON ({e})") from e
  steps = checkpoint_steps(path)
  if not steps:
    raise inference.ModelLoadError(f"{path / CHECKPOINT_DIR}: no checkpoint yet (train first, or wait for the "
                                   f"first save at step {config.get('checkpoint_every', '?')})")
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise inference.ModelLoadError(f"{path}: no checkpoint of step {step}; have {steps}")
  item = path / CHECKPOINT_DIR / str(step) / "default"  # CheckpointManager's directory of its single item
  if not item.is_dir():
    raise inference.ModelLoadError(f"{item}: missing; the checkpoint of step {step} is incomplete")
  with ocp.PyTreeCheckpointer() as ckptr:
    tree = ckptr.metadata(item)
    tree = getattr(tree, "item_metadata", tree)
    tree = getattr(tree, "tree", tree)
    try:
      wanted = {group: {net: tree[group][net] for net in NETS} for group in ("params", "constants")}
    except (KeyError, TypeError) as e:
      raise inference.ModelLoadError(f"{item}: not a train state with params/constants of {NETS} "
                                     f"({type(e).__name__}: {e})") from e
    restore_args = _map_leaves(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted)
    restored = ckptr.restore(item, args=ocp.args.PyTreeRestore(item=_map_leaves(lambda _: 0, wanted),
                                                               restore_args=restore_args, partial_restore=True))
  trained = {net: _merge(_pure(restored["params"][net]), _pure(restored["constants"][net])) for net in NETS}
  return config, trained, int(step)


def _map_leaves(fn, tree: Any) -> Any:
  if isinstance(tree, dict):
    return {k: _map_leaves(fn, v) for k, v in tree.items()}
  return fn(tree)


def _pure(tree: Any) -> Any:
  """Orbax's restored nested dicts; NNX `State` leaves are saved as {"value": array} in some flax versions."""
  if isinstance(tree, dict):
    if set(tree) == {"value"} and not isinstance(tree["value"], dict):
      return np.asarray(tree["value"])
    return {str(k): _pure(v) for k, v in tree.items()}
  return np.asarray(tree)


def _merge(a: Any, b: Any) -> Any:
  """Union of two nested dicts (parameters and BatchNorm statistics of one module)."""
  if not isinstance(a, dict) or not isinstance(b, dict):
    return a if b is None or (isinstance(b, dict) and not b) else b
  out = dict(a)
  for k, v in b.items():
    out[k] = _merge(out[k], v) if k in out else v
  return out
