r"""`disentangle-jax evaluate`: the paper's metrics on the validation split and/or a folder of real photos.

  disentangle-jax evaluate --model=runs/smoke --out=runs/smoke/eval.json
  disentangle-jax evaluate --model=exports/paper --data_dir=data/ffhq256 --photos=aligned_photos/ --out=eval.json

Metrics (see `disentangle_jax/evaluate.py`): similarity/id_to_out, attr_to_out, id_to_attr, score (the
disentanglement score), landmarks/distance and mse, reconstruction/mse, psnr, ms_ssim, id_similarity. Written as
JSON ({"validation": {...}, "photos": {...}}) and as TensorBoard scalars (--tensorboard, default <out dir>/eval).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

from absl import app
from absl import flags

from disentangle_jax.cli import _common
from disentangle_jax.cli import _flags
from disentangle_jax.cli import _paths

FLAGS = _flags.FLAGS
flags.DEFINE_string("data_dir", None, "the generated dataset (default: the training config's, or <workdir>/data)")
flags.DEFINE_string("photos", None, "a folder of real (aligned) face photos to evaluate on as well")
flags.DEFINE_integer("eval_batches", None, "validation batches (default: the config's eval_batches)")
flags.DEFINE_bool("validation", True, "evaluate on the validation split")
flags.DEFINE_string("tensorboard", None, "TensorBoard log dir (default: <directory of --out>/eval)")


def _data_dir(model) -> str:
  if FLAGS.data_dir:
    return FLAGS.data_dir
  if model.config.data.get("dir"):
    return model.config.data.dir
  return os.path.join(FLAGS.model, "data")


def main(argv: Sequence[str]) -> None:
  _flags.no_positional(_flags.finish(argv))
  _flags.require("model", "out")
  if not FLAGS.validation and not FLAGS.photos:
    raise app.UsageError("nothing to evaluate: --novalidation and no --photos")
  _paths.check_output_path(FLAGS.out)
  _paths.check_output_dir(FLAGS.tensorboard or pathlib.Path(FLAGS.out).parent / "eval", empty=False)
  if FLAGS.photos:
    _paths.check_input_dir(FLAGS.photos, "photo folder")
  if FLAGS.validation and FLAGS.data_dir:
    _paths.check_input_dir(FLAGS.data_dir, "dataset folder")
  _common.check_model_path()
  from disentangle_jax.apps import evaluation  # pylint: disable=import-outside-toplevel

  model = _common.load_model()
  evaluator = evaluation.Evaluator(model)
  results = {}
  if FLAGS.validation:
    data_dir = _data_dir(model)
    if not os.path.exists(os.path.join(data_dir, "dataset_info.json")):
      raise app.UsageError(
        f"{data_dir}: no generated dataset (dataset_info.json); pass --data_dir, or --novalidation with --photos"
      )
    batches = FLAGS.eval_batches or int(model.config.get("eval_batches", 10))
    results["validation"] = evaluator.mean(
      evaluation.validation_pairs(data_dir, FLAGS.batch_size, batches, int(model.config.data.seed) + 1)
    )
  if FLAGS.photos:
    from disentangle_jax.data import folder  # pylint: disable=import-outside-toplevel

    try:
      paths = folder.list_images(FLAGS.photos)
    except FileNotFoundError as e:
      raise app.UsageError(str(e)) from e
    photos, _ = _common.read_or_usage(paths, model.resolution)
    results["photos"] = evaluator.mean(evaluation.photo_pairs(photos, FLAGS.batch_size))
  out = pathlib.Path(FLAGS.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(results, indent=2))
  from clu import metric_writers  # pylint: disable=import-outside-toplevel

  tb = FLAGS.tensorboard or str(out.parent / "eval")
  writer = metric_writers.create_default_writer(tb, asynchronous=False)
  for split, metrics in results.items():
    writer.write_scalars(0, {f"{split}/{k}": v for k, v in metrics.items()})
  writer.flush()
  writer.close()
  for split, metrics in results.items():
    print(f"{split}: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
  print(f"wrote {out} and TensorBoard scalars in {tb}")
