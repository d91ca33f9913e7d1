"""The frontal 3-D face templates `pose.head_pose` fits: 468 face-mesh points, and FAN's 68 points derived from them.

The face mesh template (`face_mesh_template.json`) is the ported MediaPipe face mesh's own output on a real frontal
face (`skimage.data.astronaut`, aligned by `apps/align.py`), written by `tests/make_pose_template.py` from the
mediapipe wheel's weights; x, y, depth in its 192 px input frame. `canonical` then puts any template into the zero
pose of `pose.py`'s convention: centred, the eye centres level (the subject's right eye on the image's left) and the
plane through the eye centres and the mouth centre parallel to the image plane. So zero pose means the same thing
for both nets, whatever the photographed face's own small pose was.

FAN's 68-point (iBUG 300-W) template takes each point from the mesh template: the named mesh contours (eyes,
brows, lips, nose, face oval: face_mesh_connections of mediapipe 0.10.21) walked in the 68-point layout's order,
each 68-point position placed at an even fraction of its contour's length.
"""

from __future__ import annotations

import functools
import json
import pathlib

import numpy as np

from disentangle_jax.third_party.mediapipe_facemesh import mesh_indices as mi

MESH_TEMPLATE_FILE = pathlib.Path(__file__).with_name("face_mesh_template.json")

# Mesh contours in the order FAN's 68 points walk them (image left to right; "right" is the subject's).
_OVAL = mi.FACE_OVAL_INDICES
_JAW = _OVAL[_OVAL.index(234) : _OVAL.index(152) - 1 : -1] + _OVAL[_OVAL.index(152) - 1 : _OVAL.index(454) - 1 : -1]
_RIGHT_BROW = ((70, 46), (63, 53), (105, 52), (66, 65), (107, 55))  # outer -> inner, (upper, lower) edge
_LEFT_BROW = ((336, 285), (296, 295), (334, 282), (293, 283), (300, 276))  # inner -> outer
_NOSE_BRIDGE = (168, 6, 197, 195, 5, 4)
_NOSE_BASE = (98, 97, 2, 326, 327)
_R_UPPER_LID = (33, 246, 161, 160, 159, 158, 157, 173, 133)  # outer -> inner
_R_LOWER_LID = (33, 7, 163, 144, 145, 153, 154, 155, 133)
_L_UPPER_LID = (362, 398, 384, 385, 386, 387, 388, 466, 263)  # inner -> outer
_L_LOWER_LID = (362, 382, 381, 380, 374, 373, 390, 249, 263)
_OUTER_UPPER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
_OUTER_LOWER_LIP = (291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61)
_INNER_UPPER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
_INNER_LOWER_LIP = (308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78)


def _along(points: np.ndarray, chain: tuple[int, ...], fractions: np.ndarray) -> np.ndarray:
  """Points at the given fractions [K] of the polyline through `points[chain]`, by arc length."""
  p = points[list(chain)]
  seg = np.linalg.norm(np.diff(p, axis=0), axis=-1)
  cum = np.concatenate([[0.0], np.cumsum(seg)]) / max(seg.sum(), 1e-12)
  return np.stack([np.interp(fractions, cum, p[:, d]) for d in range(p.shape[1])], -1)


def fan68_from_mesh(mesh: np.ndarray) -> np.ndarray:
  """FAN's 68 points [68, D] from mesh points [468, D] (the layout of `fan.JAW_INDICES` and the rest)."""
  mesh = np.asarray(mesh, np.float64)
  even = lambda k: np.linspace(0.0, 1.0, k)
  third = np.array([0.0, 1 / 3, 2 / 3, 1.0])
  parts = [
    _along(mesh, _JAW, even(17)),  # 0-16
    np.stack([(mesh[a] + mesh[b]) / 2 for a, b in _RIGHT_BROW]),  # 17-21
    np.stack([(mesh[a] + mesh[b]) / 2 for a, b in _LEFT_BROW]),  # 22-26
    _along(mesh, _NOSE_BRIDGE, even(4)),  # 27-30
    mesh[list(_NOSE_BASE)],  # 31-35
    _along(mesh, _R_UPPER_LID, third),  # 36 outer corner, 37, 38, 39 inner corner
    _along(mesh, _R_LOWER_LID, np.array([2 / 3, 1 / 3])),  # 40, 41
    _along(mesh, _L_UPPER_LID, third),  # 42 inner corner, 43, 44, 45 outer corner
    _along(mesh, _L_LOWER_LID, np.array([2 / 3, 1 / 3])),  # 46, 47
    _along(mesh, _OUTER_UPPER_LIP, even(7)),  # 48 corner - 54 corner
    _along(mesh, _OUTER_LOWER_LIP, even(7))[1:-1],  # 55-59
    _along(mesh, _INNER_UPPER_LIP, np.array([0.0, 0.25, 0.5, 0.75, 1.0])),  # 60 corner - 64 corner
    _along(mesh, _INNER_LOWER_LIP, np.array([0.25, 0.5, 0.75])),  # 65-67
  ]
  return np.concatenate(parts)


def canonical(template: np.ndarray, eyes: tuple[np.ndarray, np.ndarray], mouth: np.ndarray) -> np.ndarray:
  """`template` [N, 3] in the zero pose fixed by its eye centres (image left, image right) and mouth centre."""
  t = np.asarray(template, np.float64)
  left, right = (np.asarray(e, np.float64) for e in eyes)
  ex = right - left
  ex /= np.linalg.norm(ex)
  down = np.asarray(mouth, np.float64) - (left + right) / 2
  ey = down - (down @ ex) * ex
  ey /= np.linalg.norm(ey)
  basis = np.stack([ex, ey, np.cross(ex, ey)], 1)  # columns: the face's axes in the given frame
  return (t - t.mean(0)) @ basis


def _eyes_mouth_mesh(points: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
  eyes = (points[list(mi.RIGHT_EYE_INDICES)].mean(0), points[list(mi.LEFT_EYE_INDICES)].mean(0))
  return eyes, points[list(mi.MOUTH_INDICES)].mean(0)


@functools.cache
def mesh_template() -> np.ndarray:
  """The face mesh's frontal template [468, 3] in the zero pose."""
  try:
    raw = np.asarray(json.loads(MESH_TEMPLATE_FILE.read_text())["points"], np.float64)
  except (OSError, KeyError, ValueError) as e:
    raise RuntimeError(f"{MESH_TEMPLATE_FILE}: unreadable face-mesh template ({e}); reinstall disentangle_jax") from e
  if raw.shape != (mi.NUM_LANDMARKS, 3):
    raise RuntimeError(f"{MESH_TEMPLATE_FILE}: expected {mi.NUM_LANDMARKS} x 3 points, got {raw.shape}")
  return canonical(raw, *_eyes_mouth_mesh(raw))


@functools.cache
def fan_template() -> np.ndarray:
  """FAN's 68-point frontal template [68, 3] in the zero pose (from the mesh template)."""
  t = fan68_from_mesh(mesh_template())
  return canonical(t, (t[36:42].mean(0), t[42:48].mean(0)), t[[48, 54]].mean(0))


def template(kind: str) -> np.ndarray:
  """The template of a landmark net kind: "mediapipe_facemesh" (or "facemesh") or "fan"."""
  if kind in ("mediapipe_facemesh", "facemesh"):
    return mesh_template()
  if kind == "fan":
    return fan_template()
  raise ValueError(f"no pose template for landmark net {kind!r}; pose is measured with mediapipe_facemesh or fan")
