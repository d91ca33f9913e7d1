"""Writes disentangle_jax/metrics/face_mesh_template.json: the ported face mesh's points on a real frontal face.

    python tests/make_pose_template.py mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl

The face is `skimage.data.astronaut`, found by BlazeFace and aligned FFHQ-style by our own `apps/align.py`, at
256 px; the mesh (real weights from the wheel) sees it at its 192 px input. `metrics/templates.py` puts the points
into the zero pose, so the photographed head's own small pose does not matter.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import skimage.data

from disentangle_jax.apps import align
from disentangle_jax.apps import faces
from disentangle_jax.apps import images
from disentangle_jax.metrics import templates
from disentangle_jax.third_party import mediapipe_facemesh as mp


def main(wheel: str) -> None:
  locator = faces.MediaPipeLocator.from_path(wheel)
  face = align.align_image(skimage.data.astronaut(), locator, size=256, name="astronaut")[0].image
  points = np.asarray(mp.landmarks(locator.mesh, images.to_model(face[None])))[0]
  record = {
    "source": "mediapipe_facemesh (mediapipe==0.10.21 face_landmark.tflite) on skimage.data.astronaut, "
    "aligned FFHQ-style at 256 px; x, y, depth in the mesh's 192 px input frame",
    "points": np.round(points.astype(np.float64), 3).tolist(),
  }
  templates.MESH_TEMPLATE_FILE.write_text(json.dumps(record, separators=(",", ":")) + "\n")
  print(f"wrote {templates.MESH_TEMPLATE_FILE}")


if __name__ == "__main__":
  main(sys.argv[1])
