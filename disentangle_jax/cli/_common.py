"""What the application commands share: loading the model and the input faces (optionally aligned).

The model and detector checks here, like the path checks of `_paths`, run before any model loads.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from absl import app
from absl import logging

from disentangle_jax.apps import images as images_lib
from disentangle_jax.cli import _flags
from disentangle_jax.cli import _paths

FLAGS = _flags.FLAGS


def check_model_path() -> None:
  """--model names an existing directory (an export or a training workdir); checked before JAX loads."""
  _flags.require("model")
  _paths.check_input_dir(FLAGS.model, "model directory", " (pass an exported model or a training workdir)")


def detector_path() -> str:
  """The MediaPipe weights --align uses: --detector, else $DISENTANGLE_JAX_MEDIAPIPE, else the default folder."""
  return FLAGS.detector or os.environ.get("DISENTANGLE_JAX_MEDIAPIPE") or "weights/mediapipe_facemesh"


def check_detector() -> None:
  """With --align, the detector weights exist (before the model loads)."""
  if FLAGS.align and not _paths.is_remote(detector_path()) and not os.path.exists(detector_path()):
    raise app.UsageError(
      f"{detector_path()}: no MediaPipe weights for --align; pass --detector=<the "
      "mediapipe-0.10.21 wheel> or a directory with converted blazeface/ and mediapipe_facemesh/"
    )


def load_model():
  """The model named by --model, with load errors turned into one clear line."""
  check_model_path()
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  try:
    model = inference.load(FLAGS.model)
  except (FileNotFoundError, inference.ModelLoadError) as e:
    raise app.UsageError(str(e)) from e
  logging.info("loaded %s", model)
  return model


def locator():
  """The face locator for --align (BlazeFace + face mesh), built once."""
  from disentangle_jax.apps import faces  # pylint: disable=import-outside-toplevel

  return faces.MediaPipeLocator.from_path(detector_path())


def read_faces(
  paths: list[str], size: int, *, align: bool | None = None, all_faces: bool | None = None, loc=None
) -> tuple[np.ndarray, list[str]]:
  """Reads photos as a float batch [N, size, size, 3]; with --align each is detected and aligned first.

  Returns the batch and one label per image (the file name, with `#k` for the k-th face under --all_faces).
  """
  align = FLAGS.align if align is None else align
  all_faces = FLAGS.all_faces if all_faces is None else all_faces
  out, labels = [], []
  for p in paths:
    rgb = images_lib.read_rgb_uint8(p, convert=FLAGS.convert)
    if not align:
      out.append(images_lib.resize(rgb, size))
      labels.append(pathlib.Path(p).name)
      continue
    from disentangle_jax.apps import align as align_lib  # pylint: disable=import-outside-toplevel

    loc = loc or locator()
    found = align_lib.align_image(rgb, loc, size=max(size, 256), name=str(p), all_faces=all_faces)
    if all_faces:
      print(f"{p}: {len(found)} face(s)\n{align_lib.describe(found)}")
    for k, face in enumerate(found):
      out.append(images_lib.resize(face.image, size))
      labels.append(pathlib.Path(p).name + (f"#{k}" if all_faces else ""))
  return images_lib.to_model(np.stack(out)), labels


def read_or_usage(paths: list[str], size: int, **kwargs):
  """`read_faces` with bad images reported as a usage error (one line, no traceback)."""
  from disentangle_jax.apps import align as align_lib  # pylint: disable=import-outside-toplevel

  try:
    return read_faces(paths, size, **kwargs)
  except (images_lib.ImageReadError, align_lib.NoFaceError) as e:
    raise app.UsageError(str(e)) from e
