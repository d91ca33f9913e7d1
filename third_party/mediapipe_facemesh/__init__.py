"""MediaPipe's face mesh (468 landmarks) and BlazeFace short-range detector, ported to Flax NNX from the `.tflite`
models of the mediapipe wheel (mediapipe==0.10.21 ships both).

    mesh = mediapipe_facemesh.load("mediapipe-0.10.21-cp311-...whl")   # or face_landmark.tflite, or converted dir
    points = mediapipe_facemesh.landmarks(mesh, images)  # [B, H, W, 3] in [-1, 1] -> [B, 468, 3], 192-px input
    detector = mediapipe_facemesh.load_blazeface(wheel)
    faces = detector.detect(uint8_image)     # [Detection(box, keypoints, score)] in image pixels

The jitted functions (`landmarks`, `score`, `landmarks_and_score`, `raw`, and the `Detector`'s methods) keep the
XLA option of `xla_options.py` (CPU YNNPACK fusion off), set on their first call: the `DepthwiseConv` rewrite
removed the miscompilation it once worked around, so it is only a precaution, which costs nothing measurable.
"""

from __future__ import annotations

import os

from flax import nnx

from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import BlazeFace
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import BlazeFaceConfig
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import Detector
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import convert_blazeface
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import convert_to_blazeface
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import init_blazeface
from disentangle_jax.third_party.mediapipe_facemesh.blazeface import load_blazeface
from disentangle_jax.third_party.mediapipe_facemesh.convert import NETWORK
from disentangle_jax.third_party.mediapipe_facemesh.convert import convert
from disentangle_jax.third_party.mediapipe_facemesh.detection import Detection
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import FACE_OVAL_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import KEEP_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import LEFT_EYE_CORNERS
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import LEFT_EYE_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import MOUTH_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import NUM_LANDMARKS
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import RIGHT_EYE_CORNERS
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import RIGHT_EYE_INDICES
from disentangle_jax.third_party.mediapipe_facemesh.mesh_indices import eye_mouth_points
from disentangle_jax.third_party.mediapipe_facemesh.model import Config
from disentangle_jax.third_party.mediapipe_facemesh.model import FaceMesh
from disentangle_jax.third_party.mediapipe_facemesh.model import HeadConfig
from disentangle_jax.third_party.mediapipe_facemesh.tflite import TFLiteFormatError
from disentangle_jax.third_party.mediapipe_facemesh.xla_options import jit as _jit

Module = FaceMesh

__all__ = [
  "BlazeFace",
  "BlazeFaceConfig",
  "Config",
  "Detection",
  "Detector",
  "FACE_OVAL_INDICES",
  "FaceMesh",
  "HeadConfig",
  "KEEP_INDICES",
  "LEFT_EYE_CORNERS",
  "LEFT_EYE_INDICES",
  "MOUTH_INDICES",
  "Module",
  "NETWORK",
  "NUM_LANDMARKS",
  "RIGHT_EYE_CORNERS",
  "RIGHT_EYE_INDICES",
  "TFLiteFormatError",
  "convert",
  "convert_blazeface",
  "convert_to",
  "convert_to_blazeface",
  "eye_mouth_points",
  "init",
  "init_blazeface",
  "landmarks",
  "landmarks_and_score",
  "load",
  "load_blazeface",
  "raw",
  "score",
]


def init(config: Config, seed: int) -> FaceMesh:
  """Randomly initialised face mesh (for tests and shapes), weights drawn from `seed`."""
  return FaceMesh(config, rngs=nnx.Rngs(seed))


def load(path: str | os.PathLike) -> FaceMesh:
  """The face mesh from a mediapipe wheel, a face_landmark.tflite or a converted directory."""
  config, params = converted.read(path, NETWORK, Config, convert)
  return converted.build(FaceMesh, config, params, str(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert mediapipe_facemesh SRC DST`: writes the converted-weights layout."""
  config, params = convert(src)
  converted.write(dst, NETWORK, converted.build(FaceMesh, config, params, str(src)), src)


# `FaceMesh`'s public methods, jitted for eager callers (one compilation per input shape; no static arguments).
landmarks = _jit(FaceMesh.landmarks)
score = _jit(FaceMesh.score)
landmarks_and_score = _jit(FaceMesh.landmarks_and_score)
raw = _jit(FaceMesh.raw)
