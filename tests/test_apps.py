"""Applications: image IO errors, frame writers, and every command on a briefly trained smoke model."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from disentangle_jax.apps import images, media

# ---------------------------------------------------------------------------------------------------------------
# Image IO.
# ---------------------------------------------------------------------------------------------------------------


def _rgb(h=20, w=24, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_read_rgb_roundtrip_and_resize(tmp_path):
  arr = _rgb()
  images.write_image(tmp_path / "a.png", arr)
  np.testing.assert_array_equal(images.read_rgb_uint8(tmp_path / "a.png"), arr)
  batch = images.load_images([tmp_path / "a.png", tmp_path / "a.png"], 16)
  assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.float32
  assert -1.0 <= batch.min() and batch.max() <= 1.0


def test_unreadable_and_missing_images_name_the_file(tmp_path):
  (tmp_path / "bad.png").write_bytes(b"this is not a png")
  with pytest.raises(images.ImageReadError, match="bad.png: not a readable image"):
    images.read_rgb_uint8(tmp_path / "bad.png")
  with pytest.raises(images.ImageReadError, match="nope.jpg: no such image file"):
    images.read_rgb_uint8(tmp_path / "nope.jpg")
  good = tmp_path / "trunc.png"
  images.write_image(good, _rgb(64, 64))
  good.write_bytes(good.read_bytes()[:200])
  with pytest.raises(images.ImageReadError, match="trunc.png: not a readable image"):
    images.read_rgb_uint8(good)


def test_grayscale_is_refused_unless_converted(tmp_path):
  Image.fromarray(_rgb()[..., 0]).save(tmp_path / "gray.png")
  with pytest.raises(images.ImageReadError, match=r"gray.png: is grayscale \(mode L\)"):
    images.read_rgb_uint8(tmp_path / "gray.png")
  out = images.read_rgb_uint8(tmp_path / "gray.png", convert=True)
  assert out.shape == (20, 24, 3)
  np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_rgba_transparent_is_refused_unless_converted_opaque_is_fine(tmp_path):
  rgba = np.concatenate([_rgb(), np.full((20, 24, 1), 255, np.uint8)], -1)
  Image.fromarray(rgba).save(tmp_path / "opaque.png")
  np.testing.assert_array_equal(images.read_rgb_uint8(tmp_path / "opaque.png"), rgba[..., :3])
  rgba[:5, :5, 3] = 0
  Image.fromarray(rgba).save(tmp_path / "holes.png")
  with pytest.raises(images.ImageReadError, match=r"holes.png: has an alpha channel.*mode RGBA"):
    images.read_rgb_uint8(tmp_path / "holes.png")
  out = images.read_rgb_uint8(tmp_path / "holes.png", convert=True)
  assert (out[:5, :5] == 255).all()  # composited over white


# ---------------------------------------------------------------------------------------------------------------
# Frame writers.
# ---------------------------------------------------------------------------------------------------------------


def test_tile_and_strip_place_frames():
  frames = [np.full((4, 6, 3), 10 * i, np.uint8) for i in range(5)]
  grid = media.tile(frames, columns=2, pad=1)
  assert grid.shape == (3 * 4 + 2, 2 * 6 + 1, 3)
  assert (grid[5:9, 7:13] == 30).all() and (grid[10:14, 0:6] == 40).all() and (grid[10:14, 7:] == 255).all()
  assert media.strip(frames, pad=0).shape == (4, 30, 3)
  with pytest.raises(ValueError, match="frame 1 has shape"):
    media.tile([frames[0], np.zeros((5, 6, 3), np.uint8)])


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_animation_frame_counts(tmp_path, suffix):
  frames = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(7)]
  path = media.write_animation(tmp_path / f"a{suffix}", frames, fps=5)
  decoded, fps = media.read_video(path)
  assert len(decoded) == 7 and decoded[0].shape == (32, 32, 3) and fps == pytest.approx(5, rel=0.05)
  # Frames keep their order (mean brightness rises), within compression error.
  assert np.all(np.diff([f.mean() for f in decoded]) > 10)
  back = media.write_animation(tmp_path / f"b{suffix}", frames, fps=5, loop_back=True)
  assert media.count_frames(back) == 12


def test_animation_rejects_unknown_suffix(tmp_path):
  with pytest.raises(ValueError, match=r"a.avi: animations are written as .gif or .mp4"):
    media.write_animation(tmp_path / "a.avi", [np.zeros((8, 8, 3), np.uint8)])
