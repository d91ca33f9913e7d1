"""Head pose (yaw, pitch, roll) from landmarks, by a rigid fit of a fixed frontal 3-D template.

Conventions (camera axes as in the image: x to the right, y down, z away from the camera; right-handed):
  - A template is a face in that frame at zero pose (`templates.py` defines "zero": the eye line parallel to the
    image's x axis and the plane through the two eye centres and the mouth centre parallel to the image plane).
  - The fit finds a scale s, rotation R and shift t with points ~ s R template + t, and R = Rz(roll) Ry(yaw) Rx(pitch)
    with right-handed rotations about the camera axes, angles in degrees:
      yaw   about y (turning the head left/right): positive moves the nose toward the image's left;
      pitch about x (nodding): positive moves the nose down in the image;
      roll  about z (in-plane tilt): positive turns the face clockwise on screen.
  - 3-D points (the face mesh's x, y, depth): a similarity (Umeyama / Kabsch with scale) on all points.
  - 2-D points (FAN): weak perspective (scaled orthographic projection): the least-squares 2x3 linear map from the
    centred template to the centred points, made the nearest scaled pair of orthonormal rows by an SVD; the third row
    is their cross product. Noise-free projections are recovered exactly.
"""

from __future__ import annotations

import numpy as np

ANGLES = ("yaw", "pitch", "roll")


def similarity_fit(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
  """(s, R, t) minimising ||target - (s R source + t)||^2 over points [N, D] (Umeyama 1991; D = 2 or 3).

  R is a proper rotation (det +1): a reflection would fit a mirrored face, which no head pose produces.
  """
  source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
  if source.shape != target.shape or source.ndim != 2:
    raise ValueError(f"similarity_fit: point sets must both be [N, D], got {source.shape} and {target.shape}")
  mu_s, mu_t = source.mean(0), target.mean(0)
  a, b = source - mu_s, target - mu_t
  u, sig, vt = np.linalg.svd(b.T @ a / len(a))
  d = np.ones(len(sig))
  d[-1] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
  rot = u @ np.diag(d) @ vt
  var = np.sum(a * a) / len(a)
  scale = float(np.sum(sig * d) / var) if var > 0 else 1.0
  return scale, rot, mu_t - scale * rot @ mu_s


def weak_perspective_rotation(points2d: np.ndarray, template: np.ndarray) -> np.ndarray:
  """The 3x3 rotation of a scaled orthographic projection of `template` [N, 3] that best gives `points2d` [N, 2]."""
  p = np.asarray(points2d, np.float64)[:, :2]
  t = np.asarray(template, np.float64)
  pc, tc = p - p.mean(0), t - t.mean(0)
  m = np.linalg.lstsq(tc, pc, rcond=None)[0].T  # [2, 3]: pc ~ tc @ m.T
  u, _, vt = np.linalg.svd(m, full_matrices=False)
  rows = u @ vt  # nearest pair of orthonormal rows
  return np.stack([rows[0], rows[1], np.cross(rows[0], rows[1])])


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
  """R = Rz(roll) Ry(yaw) Rx(pitch), angles in degrees (the module's convention)."""
  y, p, r = np.deg2rad([yaw, pitch, roll])
  rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
  ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
  rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
  return rz @ ry @ rx


def angles_from_rotation(rot: np.ndarray) -> np.ndarray:
  """(yaw, pitch, roll) in degrees of R = Rz(roll) Ry(yaw) Rx(pitch); yaw in [-90, 90]."""
  yaw = np.arcsin(np.clip(-rot[2, 0], -1.0, 1.0))
  pitch = np.arctan2(rot[2, 1], rot[2, 2])
  roll = np.arctan2(rot[1, 0], rot[0, 0])
  return np.rad2deg([yaw, pitch, roll])


def head_pose(points: np.ndarray, template: np.ndarray) -> np.ndarray:
  """(yaw, pitch, roll) in degrees [B, 3] of landmarks [B, N, 2] (weak perspective) or [B, N, 3] (rigid 3-D fit)."""
  points = np.asarray(points, np.float64)
  if points.ndim != 3 or points.shape[1] != len(template) or points.shape[2] not in (2, 3):
    raise ValueError(f"head_pose: landmarks must be [B, {len(template)}, 2 or 3], got {points.shape}")
  out = []
  for p in points:
    rot = weak_perspective_rotation(p, template) if p.shape[1] == 2 else similarity_fit(template, p)[1]
    out.append(angles_from_rotation(rot))
  return np.asarray(out).reshape(len(points), 3)


def pose_error(pose_a: np.ndarray, pose_b: np.ndarray) -> np.ndarray:
  """Absolute angle differences [B, 3] (yaw, pitch, roll) in degrees, wrapped into [0, 180]."""
  d = np.abs(np.asarray(pose_a) - np.asarray(pose_b)) % 360.0
  return np.minimum(d, 360.0 - d)
