"""Frame strips, animated GIFs and MP4s: the containers interpolations and driven videos are written in.

GIF is written by Pillow and MP4 (H.264, yuv420p so every player opens it) by imageio's ffmpeg plugin, whose binary
comes from the `imageio-ffmpeg` wheel; nothing here needs a system ffmpeg.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator
from collections.abc import Sequence

import numpy as np
from PIL import Image

from disentangle_jax.apps import images as images_lib

ANIMATION_SUFFIXES = (".gif", ".mp4")


def tile(frames: Sequence[np.ndarray], columns: int | None = None, pad: int = 2, background: int = 255) -> np.ndarray:
  """Tiles equally sized uint8 frames [H, W, 3] row-major into one image with `pad` pixels between them."""
  if not len(frames):
    raise ValueError("no frames to tile")
  frames = [_uint8(f) for f in frames]
  h, w = frames[0].shape[:2]
  for i, f in enumerate(frames):
    if f.shape != (h, w, 3):
      raise ValueError(f"frame {i} has shape {f.shape}, expected {(h, w, 3)}")
  columns = len(frames) if columns is None else columns
  rows = -(-len(frames) // columns)
  out = np.full((rows * h + (rows - 1) * pad, columns * w + (columns - 1) * pad, 3), background, np.uint8)
  for i, f in enumerate(frames):
    r, c = divmod(i, columns)
    out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = f
  return out


def strip(frames: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
  """One row of frames: the printable form of an interpolation."""
  return tile(frames, columns=len(frames), pad=pad)


def write_animation(
  path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float = 10.0, loop_back: bool = False
) -> pathlib.Path:
  """Writes frames as an animated GIF or an MP4, chosen by the suffix of `path`.

  Identical consecutive frames: an MP4 keeps each one. A GIF stores a run of identical frames as one frame shown
  for the run's summed duration (Pillow's encoder always merges them), so the animation plays exactly as long and
  looks the same, but a reader decodes fewer frames than were written: `count_frames` counts the stored ones.

  Args:
    path: `.gif` or `.mp4`.
    frames: uint8 (or float [-1, 1]) RGB frames [H, W, 3], all the same size.
    fps: frames per second.
    loop_back: append the frames in reverse (without repeating the ends) so a loop plays forth and back.
  """
  path = pathlib.Path(path)
  suffix = path.suffix.lower()
  if suffix not in ANIMATION_SUFFIXES:
    raise ValueError(
      f"{path}: animations are written as {' or '.join(ANIMATION_SUFFIXES)}, not {suffix or 'no suffix'!r}"
    )
  frames = [_uint8(f) for f in frames]
  if not frames:
    raise ValueError(f"{path}: no frames to write")
  if loop_back and len(frames) > 2:
    frames = frames + frames[-2:0:-1]
  path.parent.mkdir(parents=True, exist_ok=True)
  if suffix == ".gif":
    pil = [Image.fromarray(f) for f in frames]
    pil[0].save(
      path, save_all=True, append_images=pil[1:], duration=max(1, round(1000.0 / fps)), loop=0, optimize=False
    )
  else:
    import imageio.v2 as imageio  # pylint: disable=import-outside-toplevel

    with imageio.get_writer(
      path,
      format="FFMPEG",
      mode="I",
      fps=fps,
      codec="libx264",
      quality=8,
      pixelformat="yuv420p",
      macro_block_size=_macro_block(frames[0]),
    ) as writer:
      for f in frames:
        writer.append_data(f)
  return path


def _macro_block(frame: np.ndarray) -> int:
  """yuv420p needs even sizes; 16 (ffmpeg's preference) would resize odd-sized faces, so use 2 when needed."""
  h, w = frame.shape[:2]
  return 16 if h % 16 == 0 and w % 16 == 0 else 2 if h % 2 == 0 and w % 2 == 0 else 1


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> tuple[list[np.ndarray], float]:
  """Reads a video (anything ffmpeg reads, or an animated GIF) -> (uint8 RGB frames, frames per second)."""
  frames, fps = [], 0.0
  for frame, fps in iter_video(path):  # noqa: B007  (the rate is returned after the loop)
    frames.append(frame)
    if max_frames is not None and len(frames) >= max_frames:
      break
  if not frames:
    raise ValueError(f"{path}: the video has no frames")
  return frames, fps


def iter_video(path: str | os.PathLike) -> Iterator[tuple[np.ndarray, float]]:
  """Yields (uint8 RGB frame, fps) one at a time, so a long clip never sits in memory whole."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"{path}: no such video file")
  if path.suffix.lower() == ".gif":
    with Image.open(path) as img:
      fps = 1000.0 / max(1, img.info.get("duration", 100))
      for i in range(getattr(img, "n_frames", 1)):
        img.seek(i)
        yield images_lib.to_rgb(img.convert("RGB"), name=f"{path} frame {i}"), fps
    return
  import imageio.v2 as imageio  # pylint: disable=import-outside-toplevel

  try:
    reader = imageio.get_reader(path, format="FFMPEG")
  except Exception as e:  # imageio raises several types for an unreadable container
    raise ValueError(f"{path}: not a readable video ({e})") from e
  with reader:
    fps = float(reader.get_meta_data().get("fps", 25.0))
    for frame in reader:
      yield np.asarray(frame[..., :3], np.uint8), fps


def count_frames(path: str | os.PathLike) -> int:
  """Number of frames in a GIF or video file (decoded, so exact)."""
  return sum(1 for _ in iter_video(path))


def _uint8(frame: np.ndarray) -> np.ndarray:
  frame = np.asarray(frame)
  return frame if frame.dtype == np.uint8 else images_lib.to_uint8(frame)
