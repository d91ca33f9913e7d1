"""FFHQ-style alignment: the crop geometry, invariance to how the photo was rotated/scaled, and face selection."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from disentangle_jax.apps import align


def _texture(h: int, w: int) -> np.ndarray:
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
  return np.stack(
    [
      128 + 60 * np.sin(xx / 17) * np.cos(yy / 23),
      128 + 60 * np.sin((xx + yy) / 31),
      128 + 60 * np.cos(xx / 11 - yy / 29),
    ],
    -1,
  ).astype(np.uint8)


def _similarity(image: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]):
  """Rotates/scales/shifts an image about its centre; returns the new image and the point map."""
  h, w = image.shape[:2]
  th = np.deg2rad(angle_deg)
  m = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
  c = np.array([w / 2, h / 2])
  t = c + np.asarray(shift) - m @ c  # p' = m p + t
  inv = np.linalg.inv(m)
  coeffs = np.concatenate([inv, (-inv @ t)[:, None]], 1).flatten()  # PIL maps output -> input
  out = Image.fromarray(image).transform((w, h), Image.Transform.AFFINE, tuple(coeffs), Image.Resampling.BICUBIC)
  return np.asarray(out), lambda p: m @ np.asarray(p) + t


EYE_L, EYE_R, MOUTH = np.array([160.0, 180.0]), np.array([240.0, 180.0]), np.array([200.0, 260.0])


def test_quad_matches_ffhq_construction_for_an_upright_face():
  quad = align.ffhq_quad(EYE_L, EYE_R, MOUTH)
  # eye distance 80, eye-to-mouth 80: half-size max(2 * 80, 1.8 * 80) = 160, centre 8px below the eye midpoint.
  np.testing.assert_allclose(quad, [[40, 28], [40, 348], [360, 348], [360, 28]], atol=1e-9)
  pts = align.to_aligned(np.stack([EYE_L, EYE_R, MOUTH]), quad, 256)
  np.testing.assert_allclose(pts, [[96, 121.6], [160, 121.6], [128, 185.6]], atol=1e-9)


@pytest.mark.parametrize(
  "angle,scale,shift", [(25.0, 1.0, (0.0, 0.0)), (-40.0, 0.7, (15.0, -10.0)), (10.0, 1.3, (-20.0, 5.0))]
)
def test_alignment_undoes_rotation_scale_and_shift(angle, scale, shift):
  image = _texture(400, 400)
  ref = align.align_face(image, align.FaceLandmarks(EYE_L, EYE_R, MOUTH), size=64).image
  moved, f = _similarity(image, angle, scale, shift)
  out = align.align_face(moved, align.FaceLandmarks(f(EYE_L), f(EYE_R), f(MOUTH)), size=64).image
  assert out.shape == (64, 64, 3) and out.dtype == np.uint8
  diff = np.abs(out.astype(float) - ref)[8:-8, 8:-8].mean()
  spread = np.abs(ref.astype(float) - ref.mean((0, 1))).mean()
  assert diff < 0.1 * spread, (diff, spread)


def test_the_aligned_eyes_are_level_whatever_the_roll():
  for angle in (-60.0, 0.0, 35.0, 90.0):
    _, f = _similarity(np.zeros((4, 4, 3), np.uint8), angle, 1.0, (0.0, 0.0))
    quad = align.ffhq_quad(f(EYE_L), f(EYE_R), f(MOUTH))
    eyes = align.to_aligned(np.stack([f(EYE_L), f(EYE_R)]), quad, 256)
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6 and eyes[0, 0] < eyes[1, 0]
    np.testing.assert_allclose(eyes.mean(0), [128, 121.6], atol=1e-6)


def test_a_face_at_the_photo_edge_is_padded_by_reflection():
  image = _texture(120, 120)
  face = align.FaceLandmarks(np.array([5.0, 40.0]), np.array([45.0, 40.0]), np.array([25.0, 80.0]))
  out = align.align_face(image, face, size=32).image
  assert out.shape == (32, 32, 3)
  assert out.std() > 5  # textured everywhere: no flat black border where the quad left the photo


def test_degenerate_landmarks_are_refused():
  with pytest.raises(ValueError, match="degenerate"):
    align.ffhq_quad(EYE_L, EYE_L, EYE_L)


def _box(x0, y0, x1, y1, score=0.9):
  w = x1 - x0
  return align.FaceLandmarks(
    np.array([x0 + 0.3 * w, y0 + 0.4 * w]),
    np.array([x0 + 0.7 * w, y0 + 0.4 * w]),
    np.array([x0 + 0.5 * w, y0 + 0.75 * w]),
    np.array([x0, y0, x1, y1], float),
    score,
  )


def test_no_face_is_a_clear_error_naming_the_photo():
  with pytest.raises(align.NoFaceError, match="empty.png: no face found"):
    align.align_image(_texture(50, 60), lambda image: [], name="empty.png")


def test_several_faces_largest_first_or_all():
  faces = [_box(10, 10, 40, 40), _box(60, 20, 150, 110), _box(200, 200, 260, 260)]
  image = _texture(300, 300)
  one = align.align_image(image, lambda _: faces, size=32)
  assert len(one) == 1 and one[0].landmarks is faces[1]
  every = align.align_image(image, lambda _: faces, size=32, all_faces=True)
  assert [f.landmarks for f in every] == [faces[1], faces[2], faces[0]]
  text = align.describe(every)
  assert text.splitlines()[0].startswith("face 0: box (60, 20)-(150, 110) 90x90px")
  assert len(text.splitlines()) == 3


# ---------------------------------------------------------------------------------------------------------------
# Real photos with the ported MediaPipe networks (real weights from the mediapipe wheel).
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def locator(wheel):
  """BlazeFace + face mesh with the real weights of the mediapipe wheel (conftest's `wheel` fixture)."""
  from disentangle_jax.apps import faces  # pylint: disable=import-outside-toplevel

  return faces.MediaPipeLocator.from_path(wheel)


@pytest.fixture(scope="module")
def astronaut():
  import skimage.data  # pylint: disable=import-outside-toplevel

  return skimage.data.astronaut()


def test_astronaut_is_found_and_aligned_ffhq_style(locator, astronaut):
  (face,) = align.align_image(astronaut, locator, name="astronaut")
  lm = face.landmarks
  x0, y0, x1, y1 = lm.box
  assert 150 < x0 < x1 < 300 and 60 < y0 < y1 < 200  # Eileen Collins' face, top centre of the 512x512 photo
  for p in (lm.eye_left, lm.eye_right, lm.mouth):
    assert x0 <= p[0] <= x1 and y0 <= p[1] <= y1
  assert lm.eye_left[0] < lm.mouth[0] < lm.eye_right[0] and lm.mouth[1] > max(lm.eye_left[1], lm.eye_right[1])
  # The face mesh refines the detector's key points by a few pixels, not more.
  det = locator.detector.detect(astronaut)[0]
  np.testing.assert_allclose(lm.eye_left, det.keypoints[0], atol=6)
  np.testing.assert_allclose(lm.eye_right, det.keypoints[1], atol=6)
  np.testing.assert_allclose(lm.mouth, det.keypoints[3], atol=8)
  assert face.image.shape == (256, 256, 3) and face.image.dtype == np.uint8
  # In the crop, the eyes are level and where the FFHQ construction puts them (exactly so only for a perfectly
  # symmetric face: the crop's axis also follows the eye-to-mouth direction).
  eyes = align.to_aligned(np.stack([lm.eye_left, lm.eye_right]), face.quad, 256)
  assert abs(eyes[0, 1] - eyes[1, 1]) < 2
  np.testing.assert_allclose(eyes.mean(0)[0], 128, atol=3)
  assert 100 < eyes[0, 1] < 130 and 40 < eyes[1, 0] - eyes[0, 0] < 80
  # The aligned face is found again, centred and upright.
  again = locator(face.image)
  assert len(again) == 1
  c = again[0]
  assert abs((c.eye_left[0] + c.eye_right[0]) / 2 - 128) < 8 and abs(c.eye_left[1] - c.eye_right[1]) < 5


def test_photo_without_a_face_gets_a_clear_message(locator):
  import skimage.data  # pylint: disable=import-outside-toplevel

  with pytest.raises(align.NoFaceError, match="coffee.png: no face found"):
    align.align_image(skimage.data.coffee(), locator, name="coffee.png")


def test_several_faces_largest_first_or_each(locator, astronaut):
  head = astronaut[20:300, 90:370]  # 280x280 around the face
  small = np.asarray(Image.fromarray(head).resize((224, 224), Image.Resampling.LANCZOS))
  canvas = np.full((280, 524, 3), 200, np.uint8)
  canvas[:, :280] = head
  canvas[28:252, 300:] = small
  every = align.align_image(canvas, locator, name="pair.png", all_faces=True)
  assert len(every) == 2
  assert every[0].landmarks.box[2] < 280 < every[1].landmarks.box[0]  # the larger face first
  assert every[0].landmarks.area > 1.2 * every[1].landmarks.area
  (largest,) = align.align_image(canvas, locator, name="pair.png")
  np.testing.assert_array_equal(largest.image, every[0].image)
  assert align.describe(every).count("\n") == 1


def test_command_input_reader_lists_every_face(locator, astronaut, tmp_path, capsys):
  """What `swap --align --all-faces` does with a photo of two faces: both used, each listed."""
  from disentangle_jax.cli import _common  # pylint: disable=import-outside-toplevel
  from disentangle_jax.cli import _flags  # pylint: disable=import-outside-toplevel

  head = astronaut[20:300, 90:370]
  canvas = np.full((280, 524, 3), 200, np.uint8)
  canvas[:, :280] = head
  canvas[28:252, 300:] = np.asarray(Image.fromarray(head).resize((224, 224), Image.Resampling.LANCZOS))
  Image.fromarray(canvas).save(tmp_path / "pair.png")
  _flags.reset()
  _flags.FLAGS(["prog"])
  batch, labels = _common.read_faces([str(tmp_path / "pair.png")], 32, align=True, all_faces=True, loc=locator)
  assert batch.shape == (2, 32, 32, 3) and labels == ["pair.png#0", "pair.png#1"]
  assert "pair.png: 2 face(s)" in capsys.readouterr().out
  batch, labels = _common.read_faces([str(tmp_path / "pair.png")], 32, align=True, all_faces=False, loc=locator)
  assert batch.shape == (1, 32, 32, 3) and labels == ["pair.png"]
  _flags.reset()
