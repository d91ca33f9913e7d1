r"""`disentangle-jax video`: a fixed identity driven by the frames of a video, plus its temporal identity metric.

  disentangle-jax video --model=runs/toy --id face.png --attr clip.mp4 --out out.mp4

Every frame's attributes (pose, expression, lighting) are applied to the identity of --id. With --align each frame
is detected and aligned first (slow; for talking-head clips that are already framed, leave it off). The metric, the
cosine similarity by E_id between the identity image and each output frame (mean, spread, min) and between
consecutive output frames, is printed and written next to the video as JSON (--metrics).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np
from absl import app
from absl import flags

from disentangle_jax.cli import _common
from disentangle_jax.cli import _flags
from disentangle_jax.cli import _paths

FLAGS = _flags.FLAGS
flags.DEFINE_integer("max_frames", None, "use at most this many frames of the clip")
flags.DEFINE_string("metrics", None, "where to write the temporal identity metric (default: <out>.json)")


def main(argv: Sequence[str]) -> None:
  _flags.no_positional(_flags.finish(argv))
  _flags.require("model", "id", "attr", "out")
  if len(FLAGS.id) != 1 or len(FLAGS.attr) != 1:
    raise app.UsageError(f"video takes one --id image and one --attr video, got {len(FLAGS.id)} and {len(FLAGS.attr)}")
  _paths.check_output_path(FLAGS.out, suffixes=(".mp4", ".gif"))
  metrics_path = pathlib.Path(FLAGS.metrics or str(pathlib.Path(FLAGS.out).with_suffix(".json")))
  _paths.check_output_path(metrics_path, "--metrics")
  _paths.check_input_files(FLAGS.id, "image")
  _paths.check_input_files(FLAGS.attr, "video")
  _common.check_detector()
  _common.check_model_path()
  from disentangle_jax.apps import align  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import media  # pylint: disable=import-outside-toplevel
  from disentangle_jax.apps import video  # pylint: disable=import-outside-toplevel

  model = _common.load_model()
  loc = _common.locator() if FLAGS.align else None
  id_image, _ = _common.read_or_usage(FLAGS.id, model.resolution, loc=loc, all_faces=False)
  clip = FLAGS.attr[0]
  try:
    fps = next(media.iter_video(clip))[1]
  except (FileNotFoundError, ValueError) as e:
    raise app.UsageError(str(e)) from e
  except StopIteration:
    raise app.UsageError(f"{clip}: the video has no frames") from None

  def frames():
    for i, (frame, _) in enumerate(media.iter_video(clip)):
      if FLAGS.max_frames is not None and i >= FLAGS.max_frames:
        return
      yield frame

  prepare = None
  if loc is not None:
    prepare = lambda f: align.align_image(f, loc, size=max(256, model.resolution), name=clip)[0].image
  outputs, sims, codes = [], [], []
  for frame, sim, code in video.drive(model, id_image[0], frames(), batch_size=FLAGS.batch_size, prepare=prepare):
    outputs.append(frame)
    sims.append(sim)
    codes.append(code)
  media.write_animation(FLAGS.out, outputs, fps=fps)
  summary = video.temporal_identity(sims, np.stack(codes))
  metrics_path.write_text(json.dumps(summary, indent=2))
  print(
    f"wrote {FLAGS.out} ({len(outputs)} frames at {fps:g} fps) and {metrics_path}: identity similarity "
    f"{summary['id_similarity_mean']:.3f} +- {summary['id_similarity_std']:.3f}"
  )
