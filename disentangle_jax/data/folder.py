"""Batches of real photos from a plain folder of images (png/jpg), for evaluation and inference.

Images are centre-cropped to a square and resized (area-averaging when shrinking) to `size` x `size`, returned as
float32 NHWC in [-1, 1] like everything else. Photos should be face-aligned first (FFHQ-style), as the generator's
faces are. tf.data reads and decodes in parallel; an unreadable file raises an error naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
import tensorflow as tf
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from disentangle_jax.data import tfds_format

tfds_format.hide_accelerators_from_tensorflow()

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def list_images(directory: str) -> list[str]:
  """The image files of `directory` (not recursive), sorted by name."""
  if not tf.io.gfile.isdir(directory):
    raise FileNotFoundError(f"{directory}: not a folder")
  paths = sorted(
    os.path.join(directory, f) for f in tf.io.gfile.listdir(directory) if f.lower().endswith(IMAGE_EXTENSIONS)
  )
  if not paths:
    raise FileNotFoundError(f"{directory}: no {'/'.join(IMAGE_EXTENSIONS)} images")
  return paths


def _decode(data: tf.Tensor, size: int) -> tf.Tensor:
  image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  side = tf.minimum(h, w)
  image = tf.image.crop_to_bounding_box(image, (h - side) // 2, (w - side) // 2, side, side)
  image = tf.image.resize(tf.cast(image, tf.float32), (size, size), method="area", antialias=True)
  image = tf.ensure_shape(image, [size, size, 3])
  return tf.clip_by_value(image / 127.5 - 1.0, -1.0, 1.0)


def load_image(path: str, size: int) -> np.ndarray:
  """One image as float32 [size, size, 3] in [-1, 1]; errors name the file."""
  try:
    return _decode(tf.io.read_file(path), size).numpy()
  except (tf.errors.OpError, ValueError) as e:
    raise OSError(f"{path}: cannot read as an image ({type(e).__name__}: {getattr(e, 'message', e)})") from e


class FolderPipeline:
  """Yields {"image": [B, size, size, 3] float32 in [-1, 1], "path": list[str], "valid": bool [B]} per batch.

  Every batch has `batch_size` rows (the last is padded by repeating its final image, `valid` False there), so a
  jitted consumer compiles once. With a mesh, "image" and "valid" are global `jax.Array`s sharded as P("data"),
  built from this process's rows: on several processes, give each its own `paths`.
  """

  def __init__(self, paths: str | Sequence[str], size: int, batch_size: int, mesh: Mesh | None = None):
    self.paths = list_images(paths) if isinstance(paths, str) else list(paths)
    if not self.paths:
      raise ValueError("FolderPipeline: no image paths")
    self.size, self.batch_size = size, batch_size
    self._sharding = None if mesh is None else NamedSharding(mesh, P("data"))

  def dataset(self) -> tf.data.Dataset:
    size = self.size
    ds = tf.data.Dataset.from_tensor_slices(self.paths)
    ds = ds.map(
      lambda p: (p, _decode(tf.io.read_file(p), size)), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return ds.batch(self.batch_size).prefetch(2)

  def __len__(self) -> int:
    return -(-len(self.paths) // self.batch_size)

  def __iter__(self) -> Iterator[dict[str, Any]]:
    it = iter(self.dataset().as_numpy_iterator())
    for b in range(len(self)):
      try:
        paths, images = next(it)
      except tf.errors.OpError as e:
        batch = self.paths[b * self.batch_size : (b + 1) * self.batch_size]
        for p in batch:  # name the culprit
          load_image(p, self.size)
        raise OSError(f"cannot read the batch of {batch}: {e}") from e
      n = len(paths)
      valid = np.arange(self.batch_size) < n
      if n < self.batch_size:
        images = np.concatenate([images, np.repeat(images[-1:], self.batch_size - n, axis=0)])
      if self._sharding is not None:
        images = jax.make_array_from_process_local_data(self._sharding, images)
        valid = jax.make_array_from_process_local_data(self._sharding, valid)
      yield {"image": images, "path": [p.decode() for p in paths], "valid": valid}
