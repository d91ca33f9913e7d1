"""`export`: the inference parameters of a trained model as a small, self-describing Orbax checkpoint.

A training checkpoint carries D_W, three Adam states and the step counter: three to four times what inference
needs, and its layout is the training code's business. An export holds only E_attr (parameters and BatchNorm
statistics) and M, plus the config whose `generator` / `id_encoder` sections reference the frozen networks'
converted weights (relative paths made absolute, so the export loads from any working directory). Random-init
frozen networks (the smoke config) have no file to reference: their arrays are stored in the export (they are
tiny), so it does not depend on the init code staying the same. Frozen networks whose weights a training run wrote
into its own workdir (the toy world's prepared E_id) are copied into the export's `frozen/` and referenced relative
to it, so an export moved or kept without its workdir still loads.

    DST/inference.json   {"format": "disentangle_jax.inference", "version": 1, "config": {...},
                          "attr_encoder_config": {...}, "spec": {...}, "source": "...", "step": N}
    DST/params/          Orbax StandardCheckpointer tree {"attr_encoder": {...}, "mapper": {...}} of float32 arrays
                         (+ "frozen_generator" / "frozen_id_encoder" for random-init frozen networks)
    DST/frozen/<section>/  converted weights copied from the source workdir (config weights "frozen/<section>")
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil

import ml_collections

from disentangle_jax import inference
from disentangle_jax import trees

FROZEN_SECTIONS = ("generator", "id_encoder", "attr_encoder", "landmarks")


def _absolute_weights(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict(config.to_dict())
  for section in FROZEN_SECTIONS:
    if section in config and config[section].get("weights"):
      p = pathlib.Path(config[section].weights)
      if not p.is_absolute() and p.exists():
        config[section].weights = str(p.absolute())
  return config


def export_model(
  model: inference.InferenceModel,
  dst: str | os.PathLike,
  step: int | None = None,
  carry_from: str | os.PathLike | None = None,
) -> pathlib.Path:
  """Writes `model`'s E_attr and M with its config into `dst` (which must not exist or be empty).

  The frozen G and E_id weights that lie under `carry_from` (the training workdir or export the model came from)
  are copied into `dst/frozen/`; others stay referenced by their absolute path.
  """
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  dst = pathlib.Path(dst).absolute()
  if dst.exists() and any(dst.iterdir()):
    raise FileExistsError(f"{dst} exists and is not empty; choose a new export directory")
  trainable, frozen = model.trainable, model.frozen
  config = _absolute_weights(model.config)
  params = {name: trees.params_of(getattr(trainable, name)) for name in ("attr_encoder", "mapper")}
  carried = {}
  for name in inference.INFERENCE_FROZEN:
    weights = config[name].get("weights")
    if not weights:  # random init: no file to reference, so the export carries it
      params[f"frozen_{name}"] = trees.params_of(getattr(frozen, name))
    elif carry_from is not None and pathlib.Path(weights).is_relative_to(pathlib.Path(carry_from).absolute()):
      carried[name] = pathlib.Path(weights)
      config[name].weights = f"{inference.EXPORT_CARRIED}/{name}"
  dst.mkdir(parents=True, exist_ok=True)
  if carried:
    (dst / inference.EXPORT_CARRIED).mkdir()
  for name, weights in carried.items():
    copy = shutil.copytree if weights.is_dir() else shutil.copy2
    copy(weights, dst / inference.EXPORT_CARRIED / name)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(dst / inference.EXPORT_PARAMS, params)
    ckptr.wait_until_finished()
  spec = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(model.spec).items()}
  meta = {
    "format": inference.EXPORT_FORMAT,
    "version": inference.EXPORT_VERSION,
    "config": json.loads(config.to_json_best_effort()),
    "attr_encoder_config": trainable.attr_encoder.config.to_dict(),
    "spec": spec,
    "source": model.source,
    "step": step,
  }
  # Written last: a directory without it is an unfinished export and `load` says so.
  (dst / inference.EXPORT_META).write_text(json.dumps(meta, indent=2))
  return dst


def export(src: str | os.PathLike, dst: str | os.PathLike) -> pathlib.Path:
  """Exports a training workdir's latest checkpoint (or re-exports an export) into `dst`."""
  model = inference.load(src)
  return export_model(model, dst, model.step, carry_from=src)
