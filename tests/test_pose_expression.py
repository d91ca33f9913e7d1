"""Head pose and expression error (`metrics/pose.py`, `expression.py`, `templates.py`) on synthetic landmark sets."""

from __future__ import annotations

import numpy as np
import pytest

from disentangle_jax.metrics import expression
from disentangle_jax.metrics import pose
from disentangle_jax.metrics import templates
from disentangle_jax.third_party.fan import KEEP_INDICES as FAN_KEEP
from disentangle_jax.third_party.mediapipe_facemesh import mesh_indices

POSES = [(0.0, 0.0, 0.0), (30.0, -10.0, 5.0), (-45.0, 20.0, -15.0), (10.0, 35.0, 40.0), (-70.0, -5.0, 80.0)]
MESH_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)


def _place(template: np.ndarray, angles, scale=1.7, shift=(96.0, 100.0, 3.0)) -> np.ndarray:
  return scale * template @ pose.rotation_from_angles(*angles).T + np.asarray(shift)


@pytest.mark.parametrize("angles", POSES)
def test_the_mesh_pose_of_a_rotated_template_is_recovered(angles):
  t = templates.mesh_template()
  rng = np.random.RandomState(0)
  points = _place(t, angles) + rng.normal(0, 0.2, t.shape)  # a little landmark noise
  np.testing.assert_allclose(pose.head_pose(points[None], t)[0], angles, atol=1.0)


@pytest.mark.parametrize("angles", POSES)
def test_the_fan_pose_of_a_projected_template_is_recovered_by_weak_perspective(angles):
  t = templates.fan_template()
  points2d = _place(t, angles, scale=2.3)[:, :2]  # scaled orthographic projection: x, y only
  np.testing.assert_allclose(pose.head_pose(points2d[None], t)[0], angles, atol=1.0)


def test_angle_signs_follow_the_documented_convention():
  t = templates.mesh_template()
  nose = 4
  yawed = _place(t, (20.0, 0.0, 0.0), scale=1.0, shift=(0, 0, 0))
  assert yawed[nose, 0] < t[nose, 0] - 1  # positive yaw: the nose toward the image's left
  pitched = _place(t, (0.0, 20.0, 0.0), scale=1.0, shift=(0, 0, 0))
  assert pitched[nose, 1] > t[nose, 1] + 1  # positive pitch: the nose down
  eyes = (list(mesh_indices.RIGHT_EYE_INDICES), list(mesh_indices.LEFT_EYE_INDICES))
  rolled = _place(t, (0.0, 0.0, 20.0), scale=1.0, shift=(0, 0, 0))
  assert rolled[eyes[1]].mean(0)[1] > rolled[eyes[0]].mean(0)[1]  # clockwise: the image-right eye goes down
  np.testing.assert_allclose(pose.pose_error(np.array([[179.0, 0, 0]]), np.array([[-179.0, 0, 0]])), [[2, 0, 0]])


def test_templates_are_frontal_and_laid_out_like_the_68_point_scheme():
  for t, eyes, mouth in (
    (templates.mesh_template(), mesh_indices.RIGHT_EYE_INDICES + mesh_indices.LEFT_EYE_INDICES, (61, 291)),
    (templates.fan_template(), tuple(range(36, 48)), (48, 54)),
  ):
    assert abs(t[list(eyes[: len(eyes) // 2])].mean(0)[1] - t[list(eyes[len(eyes) // 2 :])].mean(0)[1]) < 1e-9
    np.testing.assert_allclose(pose.head_pose(t[None], t)[0], 0.0, atol=1e-6)
    assert t[mouth[0], 0] < 0 < t[mouth[1], 0]
  f = templates.fan_template()
  assert f[0, 0] < f[8, 0] < f[16, 0] and f[8, 1] == f[:17, 1].max()  # jaw: image left, chin lowest, image right
  assert f[30, 2] == f[:, 2].min()  # the nose tip is the point nearest the camera
  assert f[36, 0] < f[39, 0] < f[42, 0] < f[45, 0] and f[51, 1] < f[57, 1]


@pytest.mark.parametrize(
  "kind,keep,mouth",
  [
    ("mediapipe_facemesh", mesh_indices.KEEP_INDICES, MESH_LIPS),
    ("fan", FAN_KEEP, tuple(range(48, 68))),
  ],
)
def test_expression_error_is_zero_for_the_same_face_invariant_to_pose_and_positive_for_a_mouth_change(
  kind, keep, mouth
):
  t = templates.template(kind)
  dims = 3 if kind == "mediapipe_facemesh" else 2
  a = _place(t, (5.0, -3.0, 2.0))[:, :dims]
  assert expression.expression_error(a[None], a[None], keep, frame=192)[0] == pytest.approx(0.0, abs=1e-9)
  # The same face moved rigidly (3-D pose for the mesh, in-plane for FAN's 2-D points), scaled and shifted.
  moved_angles = (25.0, 15.0, -20.0) if dims == 3 else (5.0, -3.0, -30.0)
  b = _place(t, moved_angles, scale=0.8, shift=(60.0, 70.0, -4.0))[:, :dims]
  assert expression.expression_error(a[None], b[None], keep, frame=192)[0] == pytest.approx(0.0, abs=1e-6)
  opened = t.copy()
  lower = [i for i in mouth if t[i, 1] > t[list(mouth), 1].mean()]
  opened[lower, 1] += 6.0  # the jaw drops: the lower lip moves down
  c = _place(opened, (5.0, -3.0, 2.0))[:, :dims]
  err = expression.expression_error(np.stack([a, a]), np.stack([c, a]), keep, frame=192)
  assert err[0] > 0.2 and err[1] == pytest.approx(0.0, abs=1e-9)  # a few of the mesh's 432 points moved
  # Pixels of a 256 px face: the same landmarks measured in a 64 px frame count four times as many pixels.
  err64 = expression.expression_error(a[None], c[None], keep, frame=64)[0]
  assert err64 == pytest.approx(err[0] * 3.0)


def test_bad_landmark_shapes_are_refused():
  t = templates.mesh_template()
  with pytest.raises(ValueError, match="468"):
    pose.head_pose(np.zeros((1, 68, 2)), t)
  with pytest.raises(ValueError, match="must match"):
    expression.expression_error(np.zeros((1, 5, 2)), np.zeros((1, 6, 2)), [0], 256)
  with pytest.raises(ValueError, match="no pose template"):
    templates.template("toy")
