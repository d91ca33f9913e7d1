"""VGGFace2 input preprocessing, as a differentiable JAX function of generator images.

VGGFace2 was trained on face-detector boxes expanded by 30%, resized so the short side is 256 and centre-cropped
to 224 (cydonia999 `datasets/vgg_face2.py`; the Caffe models' `mean_bgr`). StyleGAN images show the whole head
instead of a detector box, so the paper's TensorFlow code (`model/id_encoder.py`) takes a loose central crop:
pixels [int(0.1 r), int(0.9 r)) of an r x r image (the central 80%), resized to 256x256 (bilinear,
half-pixel centres, no antialiasing: `tf.image.resize`'s default), centre-cropped to 224, RGB -> BGR, minus the
BGR mean. No division by a standard deviation. For a network built for a smaller `input_size` the resize target
and the crop are scaled by `input_size / 224`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

MEAN_BGR = (91.4953, 103.8827, 131.0912)
NATIVE_SIZE = 224
RESIZE = 256


def resize_size(input_size: int) -> int:
  """Side the central crop is resized to before the centre crop: 256 for 224, scaled proportionally otherwise."""
  return int(round(RESIZE * input_size / NATIVE_SIZE))


def caffe_normalize(rgb: jax.Array) -> jax.Array:
  """RGB in [0, 255] (NHWC) -> the network input: BGR minus the VGGFace2 mean (float32, or float64 if given)."""
  rgb = jnp.asarray(rgb)
  dtype = rgb.dtype if jnp.issubdtype(rgb.dtype, jnp.floating) else jnp.float32
  bgr = rgb.astype(dtype)[..., ::-1]
  return bgr - jnp.asarray(MEAN_BGR, dtype)


def preprocess(images: jax.Array, input_size: int = NATIVE_SIZE) -> jax.Array:
  """Generator images (float NHWC in [-1, 1], any size) -> network input [B, input_size, input_size, 3]."""
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"expected NHWC RGB images, got shape {images.shape}")
  _, h, w, _ = images.shape
  x = (images.astype(jnp.promote_types(images.dtype, jnp.float32)) + 1.0) * 127.5
  x = x[:, int(0.1 * h) : int(0.9 * h), int(0.1 * w) : int(0.9 * w), :]
  size = resize_size(input_size)
  x = jax.image.resize(x, (x.shape[0], size, size, 3), method="bilinear", antialias=False)
  start = (size - input_size) // 2
  x = x[:, start : start + input_size, start : start + input_size, :]
  return caffe_normalize(x)


def reference_preprocess(images: np.ndarray, input_size: int = NATIVE_SIZE) -> np.ndarray:
  """The same pipeline in float64 numpy with an explicit separable bilinear resize (for tests and checks)."""
  images = np.asarray(images, np.float64)
  _, h, w, _ = images.shape
  x = (images + 1.0) * 127.5
  x = x[:, int(0.1 * h) : int(0.9 * h), int(0.1 * w) : int(0.9 * w), :]
  size = resize_size(input_size)
  x = np.einsum("oh,bhwc->bowc", _bilinear_matrix(x.shape[1], size), x)
  x = np.einsum("ow,bhwc->bhoc", _bilinear_matrix(x.shape[2], size), x)
  start = (size - input_size) // 2
  x = x[:, start : start + input_size, start : start + input_size, ::-1]
  return x - np.asarray(MEAN_BGR)


def _bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] weights of 1-D linear interpolation with half-pixel centres and edge clamping (no antialias)."""
  centres = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
  lo = np.floor(centres)
  frac = centres - lo
  m = np.zeros((n_out, n_in))
  for o in range(n_out):
    for idx, wt in ((lo[o], 1.0 - frac[o]), (lo[o] + 1, frac[o])):
      m[o, int(np.clip(idx, 0, n_in - 1))] += wt
  return m
