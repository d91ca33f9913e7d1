r"""`disentangle-jax evaluate`: the paper's table for a model, on the validation split and/or a folder of real photos.

  disentangle-jax evaluate --model=runs/toy --out=runs/toy/eval.json
  disentangle-jax evaluate --model=exports/paper --data_dir=data/ffhq256 --photos=test_real_attr/ \
      --arcface=weights/model_ir_se50.pth --fid_inception=weights/pt_inception-2015-12-05.pth \
      --fid_reference=ffhq_real/ --pose_landmarks=weights/mediapipe_facemesh --num_pairs=1000 --out=eval.json

Writes <out>.json and <out>.md (the table; see `apps/report.py`) and TensorBoard scalars (--tensorboard, default
<out dir>/eval), and prints the table. Metrics (see `apps/paper_eval.py`): ArcFace similarity id->out and
attr->out, FID of the swaps against --fid_reference and against the generator's own samples, pose and expression
error measured by the landmark net training did not use, reconstruction PSNR / MS-SSIM, and the E_id metrics
training logs (`disentangle_jax/evaluate.py`). Each metric whose weights are missing is skipped, with a line
saying which and why. Weights come from the flags, else from the model config's `eval` section. The real faces'
FID statistics are computed once per folder and FID weights and cached (`fid.folder_statistics`, --fid_cache).
"""

from __future__ import annotations

import math
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
flags.DEFINE_integer("num_pairs", None, "at most this many pairs per split (default: all photos, --eval_batches)")
flags.DEFINE_string("arcface", None, "ArcFace IR-SE50 weights (default: config.eval.arcface_weights)")
flags.DEFINE_string("fid_inception", None, "FID InceptionV3 weights (default: config.eval.fid_weights)")
flags.DEFINE_string("fid_reference", None, "a folder of real faces for FID (default: config.eval.fid_reference)")
flags.DEFINE_string(
  "fid_cache",
  None,
  "where the real faces' FID statistics are cached, per folder and weights (default: $XDG_CACHE_HOME/"
  "disentangle_jax/fid or ~/.cache/...; '' for no cache)",
)
flags.DEFINE_string(
  "pose_landmarks",
  None,
  "weights of the landmark net that measures pose and expression: the face mesh when the model trained with FAN, "
  "FAN when it trained with the mesh (default: config.eval.pose_landmarks_weights; for the mesh, --detector's)",
)
flags.register_validator("num_pairs", lambda v: v is None or v > 0, "--num_pairs must be positive")


def _data_dir(model) -> str:
  if FLAGS.data_dir:
    return FLAGS.data_dir
  if model.config.data.get("dir"):
    return model.config.data.dir
  return os.path.join(FLAGS.model, "data")


def _eval_field(model, name: str) -> str | None:
  section = model.config.get("eval")
  return section.get(name) if section is not None else None


def _metric_nets(model):
  """The metric networks from the flags or the model config, the skip reasons printed."""
  from disentangle_jax.metrics import nets as nets_lib  # pylint: disable=import-outside-toplevel

  kind = nets_lib.evaluation_landmarks(model.config.landmarks.kind)
  landmarks = FLAGS.pose_landmarks or _eval_field(model, "pose_landmarks_weights")
  if not landmarks and kind == "mediapipe_facemesh" and os.path.exists(_common.detector_path()):
    landmarks = _common.detector_path()
  hints = {
    nets_lib.ARCFACE: "pass --arcface=<model_ir_se50.pth or converted dir>, or set config.eval.arcface_weights",
    nets_lib.FID: "pass --fid_inception=<pt_inception-2015-12-05 weights>, or set config.eval.fid_weights",
    nets_lib.POSE: f"pass --pose_landmarks=<{kind} weights>, or set config.eval.pose_landmarks_weights; the model "
    f"trained with {model.config.landmarks.kind}, so {kind} measures",
  }
  nets = nets_lib.build(
    arcface=FLAGS.arcface or _eval_field(model, "arcface_weights"),
    fid_inception=FLAGS.fid_inception or _eval_field(model, "fid_weights"),
    landmarks_kind=kind,
    landmarks=landmarks,
    hints=hints,
  )
  described = {
    "arcface": FLAGS.arcface or _eval_field(model, "arcface_weights"),
    "fid inception": FLAGS.fid_inception or _eval_field(model, "fid_weights"),
    "pose and expression": f"{kind} ({landmarks})",
  }
  return nets, {k: v for k, v in described.items() if v}


def _reference(model, nets):
  """(mu, sigma) of the real faces for FID (from the statistics cache when the folder and weights are unchanged),
  or None with the reason recorded."""
  from disentangle_jax import fid  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import paper_eval  # pylint: disable=import-outside-toplevel
  from disentangle_jax.data import folder  # pylint: disable=import-outside-toplevel
  from disentangle_jax.metrics import nets as nets_lib  # pylint: disable=import-outside-toplevel

  if nets.inception is None:
    return None
  where = FLAGS.fid_reference or _eval_field(model, "fid_reference")
  if not where:
    nets.skipped[f"{nets_lib.FID} vs real faces"] = (
      "no folder of real faces (pass --fid_reference=<folder>, or set config.eval.fid_reference)"
    )
    return None
  try:
    count = len(folder.list_images(where))
  except FileNotFoundError as e:
    raise app.UsageError(f"--fid_reference: {e}") from e
  bar = paper_eval.Progress(count, "FID reference", unit="images")
  stats = fid.folder_statistics(
    nets.inception,
    where,
    model.resolution,
    FLAGS.batch_size,
    cache_dir=FLAGS.fid_cache,
    progress=lambda done: bar.update(done - bar.done),
  )
  bar.close()
  return stats


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
  for flag in ("arcface", "fid_inception", "pose_landmarks"):
    if FLAGS[flag].value:
      _paths.check_input_path(FLAGS[flag].value, f"--{flag} weights")
  if FLAGS.fid_reference:
    _paths.check_input_dir(FLAGS.fid_reference, "--fid_reference folder")
  _common.check_model_path()
  from disentangle_jax.apps import evaluation  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import paper_eval  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import report  # pylint: disable=import-outside-toplevel

  model = _common.load_model()
  evaluator = evaluation.Evaluator(model)
  nets, described = _metric_nets(model)
  reference = _reference(model, nets)
  generator = None
  if nets.inception is not None:
    seed = int(model.config.seed) + paper_eval.GENERATOR_SEED_OFFSET
    generator = paper_eval.GeneratorReference(model, nets.pool3, FLAGS.batch_size, seed)
  splits = {}
  if FLAGS.validation:
    data_dir = _data_dir(model)
    if not os.path.exists(os.path.join(data_dir, "dataset_info.json")):
      raise app.UsageError(
        f"{data_dir}: no generated dataset (dataset_info.json); pass --data_dir, or --novalidation with --photos"
      )
    batches = FLAGS.eval_batches or int(model.config.get("eval_batches", 10))
    if FLAGS.num_pairs:
      batches = math.ceil(FLAGS.num_pairs / FLAGS.batch_size)
    pairs = evaluation.validation_pairs(data_dir, FLAGS.batch_size, batches, int(model.config.data.seed) + 1)
    splits["validation"] = (pairs, min(batches * FLAGS.batch_size, FLAGS.num_pairs or math.inf))
  if FLAGS.photos:
    from disentangle_jax.data import folder  # pylint: disable=import-outside-toplevel

    try:
      paths = folder.list_images(FLAGS.photos)
    except FileNotFoundError as e:
      raise app.UsageError(str(e)) from e
    photos, _ = _common.read_or_usage(paths, model.resolution)
    splits["photos"] = (evaluation.photo_pairs(photos, FLAGS.batch_size), min(len(photos), FLAGS.num_pairs or math.inf))
  for group, why in nets.skipped.items():
    print(f"skipping {group}: {why}")
  results = {}
  for name, (pairs, total) in splits.items():
    results[name] = paper_eval.evaluate_split(
      evaluator.outputs,
      paper_eval.limit(pairs, FLAGS.num_pairs),
      nets,
      total=int(total),
      label=name,
      generator_features=generator,
      real_reference=reference,
    )
  results["skipped"], results["nets"] = dict(nets.skipped), described
  json_path, md_path = report.write(FLAGS.out, results, title=f"Evaluation of {FLAGS.model}")
  from clu import metric_writers  # pylint: disable=import-outside-toplevel

  tb = FLAGS.tensorboard or str(pathlib.Path(json_path).parent / "eval")
  writer = metric_writers.create_default_writer(tb, asynchronous=False)
  for split in report.splits(results):
    writer.write_scalars(0, {f"{split}/{k}": v for k, v in results[split].items()})
  writer.flush()
  writer.close()
  print(report.markdown(results, title=f"Evaluation of {FLAGS.model}"))
  print(f"wrote {json_path}, {md_path} and TensorBoard scalars in {tb}")
