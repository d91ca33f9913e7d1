"""Reading and writing face images, with errors that say which file is wrong and why.

User photos arrive in every format: palette PNGs, 16-bit TIFFs, grayscale scans, RGBA screenshots, truncated
downloads. The model wants float32 RGB in [-1, 1] at its own resolution, so everything passes through `read_image`,
which either converts explicitly (when asked) or refuses with a message naming the file and its mode, instead of
silently feeding an alpha channel or a gray face to the networks.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
from PIL import Image
from PIL import UnidentifiedImageError

from disentangle_jax import errors


class ImageReadError(errors.UserError, ValueError):
  """An input image cannot be used; the message names the file and the reason."""


def read_rgb_uint8(path: str | os.PathLike, *, convert: bool = False) -> np.ndarray:
  """Reads an image file as uint8 RGB [H, W, 3].

  Args:
    path: the image file.
    convert: if False, grayscale and images with a (non-opaque) alpha channel are refused with an `ImageReadError`;
      if True, grayscale is replicated to three channels and transparency is composited over white.

  Returns:
    uint8 array [H, W, 3].
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise ImageReadError(f"{path}: no such image file")
  try:
    with Image.open(path) as img:
      img.load()
      img = img.copy()
  except (UnidentifiedImageError, OSError, SyntaxError) as e:
    raise ImageReadError(f"{path}: not a readable image ({e})") from e
  return to_rgb(img, name=str(path), convert=convert)


def to_rgb(img: Image.Image | np.ndarray, *, name: str = "image", convert: bool = False) -> np.ndarray:
  """Converts a PIL image or an array to uint8 RGB [H, W, 3], refusing gray / transparent input unless `convert`."""
  if isinstance(img, np.ndarray):
    arr = img
    if arr.dtype != np.uint8:
      if np.issubdtype(arr.dtype, np.floating) and arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
        arr = np.round(arr * 255.0)
      arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
      arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (2, 3, 4))):
      raise ImageReadError(f"{name}: expected an image array [H, W] or [H, W, 1|2|3|4], got shape {arr.shape}")
    img = Image.fromarray(np.ascontiguousarray(arr))  # mode from the shape: L, LA, RGB or RGBA
  mode = img.mode
  if mode == "P":  # palette images may carry transparency in their info
    img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    mode = img.mode
  if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
    alpha = np.asarray(img.getchannel("A"))
    if alpha.min() < 255:
      if not convert:
        raise ImageReadError(
          f"{name}: has an alpha channel with transparent pixels (mode {mode}); faces must be opaque RGB. "
          "Flatten it first, or pass convert=True (--convert) to composite it over white"
        )
      background = Image.new("RGBA", img.size, (255, 255, 255, 255))
      img = Image.alpha_composite(background, img.convert("RGBA"))
    mode = "L" if mode in ("LA", "La") else "RGB"
    img = img.convert(mode)
  if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
    if not convert:
      raise ImageReadError(
        f"{name}: is grayscale (mode {mode}); the networks expect colour faces. "
        "Pass convert=True (--convert) to replicate the gray channel into RGB"
      )
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
      arr = np.asarray(img, np.float64)
      peak = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
      arr = np.clip(np.round(arr / peak * 255.0), 0, 255).astype(np.uint8)
      img = Image.fromarray(arr, "L")
    img = img.convert("RGB")
  elif mode != "RGB":
    try:
      img = img.convert("RGB")
    except ValueError as e:
      raise ImageReadError(f"{name}: cannot convert mode {mode} to RGB ({e})") from e
  return np.asarray(img, np.uint8).copy()


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
  """Resizes uint8 RGB [H, W, 3] to `size` (an int for square, or (height, width)) with Lanczos filtering."""
  h, w = (size, size) if isinstance(size, int) else size
  if image.shape[:2] == (h, w):
    return image
  return np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.LANCZOS), np.uint8)


def to_model(images: np.ndarray) -> np.ndarray:
  """uint8 [..., H, W, 3] -> float32 in [-1, 1] (the range every public API uses)."""
  return images.astype(np.float32) / 127.5 - 1.0


def to_uint8(images: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255], clipping what the generator renders outside the range."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def load_images(paths: list[str | os.PathLike], size: int, *, convert: bool = False) -> np.ndarray:
  """Reads several images, resized to `size` x `size`, as one float32 batch [N, size, size, 3] in [-1, 1]."""
  if not paths:
    raise ImageReadError("no image files given")
  return to_model(np.stack([resize(read_rgb_uint8(p, convert=convert), size) for p in paths]))


def write_image(path: str | os.PathLike, image: np.ndarray) -> pathlib.Path:
  """Writes uint8 (or float [-1, 1]) RGB [H, W, 3] to `path` (format from the suffix); creates parent folders."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  if image.dtype != np.uint8:
    image = to_uint8(image)
  Image.fromarray(image).save(path)
  return path
