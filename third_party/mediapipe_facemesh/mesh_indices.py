"""Named subsets of the 468-point MediaPipe face mesh.

Source: the edge lists of mediapipe 0.10.21's `mediapipe/python/solutions/face_mesh_connections.py`
(FACEMESH_FACE_OVAL, FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE, FACEMESH_LIPS), each closed contour written out here in
walking order. "Left" and "right" are the subject's, as in MediaPipe: on a frontal, unmirrored photo the right eye
(33 ... 133) is on the image's left. The mouth corners 61 (subject's right) and 291 are the ends of FACEMESH_LIPS.

The face oval plays the role of FAN's jaw points 0-16 in the landmark loss: it follows the face's silhouette, which
moves with pose and hair rather than with expression, so the loss drops it and keeps `KEEP_INDICES`.
"""

from __future__ import annotations

import jax.numpy as jnp

NUM_LANDMARKS = 468

FACE_OVAL_INDICES = (
  10,
  338,
  297,
  332,
  284,
  251,
  389,
  356,
  454,
  323,
  361,
  288,
  397,
  365,
  379,
  378,
  400,
  377,
  152,
  148,
  176,
  149,
  150,
  136,
  172,
  58,
  132,
  93,
  234,
  127,
  162,
  21,
  54,
  103,
  67,
  109,
)
KEEP_INDICES = tuple(i for i in range(NUM_LANDMARKS) if i not in set(FACE_OVAL_INDICES))

# Eye contours, lower lid from the outer corner to the inner one, then the upper lid back.
RIGHT_EYE_INDICES = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_INDICES = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE_CORNERS = (33, 133)  # outer, inner
LEFT_EYE_CORNERS = (263, 362)  # outer, inner
MOUTH_INDICES = (61, 291)  # mouth corners: subject's right, subject's left


def eye_mouth_points(landmarks: jnp.ndarray) -> jnp.ndarray:
  """[..., 468, >=2] -> [..., 4, 2]: what FFHQ alignment needs, in image order (left to right on the image).

  Rows: centre of the eye on the image's left (the subject's right eye contour mean), centre of the other eye,
  mouth corner on the image's left, mouth corner on the image's right. This matches FFHQ's `eye_left` (mean of
  68-point landmarks 36-41), `eye_right` (42-47), `mouth_left` (48) and `mouth_right` (54).
  """
  xy = landmarks[..., :2]
  return jnp.stack(
    [
      xy[..., RIGHT_EYE_INDICES, :].mean(-2),
      xy[..., LEFT_EYE_INDICES, :].mean(-2),
      xy[..., MOUTH_INDICES[0], :],
      xy[..., MOUTH_INDICES[1], :],
    ],
    axis=-2,
  )
