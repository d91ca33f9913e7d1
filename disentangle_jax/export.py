"""`export`: the inference parameters of a trained model as a small, self-describing Orbax checkpoint.

A training checkpoint carries D_W, three Adam states and the step counter: three to four times what inference
needs, and its layout is the training code's business. An export holds only E_attr (parameters and BatchNorm
statistics) and M, plus the config whose `generator` / `id_encoder` sections reference the frozen networks'
converted weights (relative paths made absolute, so the export loads from any working directory). Random-init
frozen networks (the smoke config) have no file to reference: their arrays are stored in the export (they are
tiny), so it does not depend on the init code staying the same.

    DST/inference.json   {"format": "disentangle_jax.inference", "version": 1, "config": {...},
                          "attr_encoder_config": {...}, "spec": {...}, "source": "...", "step": N}
    DST/params/          Orbax StandardCheckpointer tree {"attr_encoder": {...}, "mapper": {...}} of float32 arrays
                         (+ "frozen_generator" / "frozen_id_encoder" for random-init frozen networks)
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib

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


def export_model(model: inference.InferenceModel, dst: str | os.PathLike, step: int | None = None) -> pathlib.Path:
  """Writes `model`'s E_attr and M with its config into `dst` (which must not exist or be empty)."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  dst = pathlib.Path(dst).absolute()
  if dst.exists() and any(dst.iterdir()):
    raise FileExistsError(f"{dst} exists and is not empty; choose a new export directory")
  trainable, frozen = model.trainable, model.frozen
  params = {name: trees.params_of(getattr(trainable, name)) for name in ("attr_encoder", "mapper")}
  for name in ("generator", "id_encoder"):
    if not model.config[name].get("weights"):  # random init: no file to reference, so the export carries it
      params[f"frozen_{name}"] = trees.params_of(getattr(frozen, name))
  dst.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(dst / inference.EXPORT_PARAMS, params)
    ckptr.wait_until_finished()
  spec = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(model.spec).items()}
  meta = {
    "format": inference.EXPORT_FORMAT,
    "version": inference.EXPORT_VERSION,
    "config": json.loads(_absolute_weights(model.config).to_json_best_effort()),
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
  return export_model(model, dst, model.step)
