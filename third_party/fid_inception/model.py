"""The FID Inception: the project's one InceptionV3 (`disentangle_jax.nets.inception`) at the conventions of the
TF graph `pt_inception-2015-12-05` was ported from, with a compiled `features` method (pool3).

pytorch-fid builds this network as torchvision's InceptionV3 with patched blocks; every patch is a Config field of
the shared module: the blocks' 3x3 average pools ignore the zero padding (`pool_count_include_pad=False`), Mixed_7c
max-pools in its pool branch (`last_block_pool="max"`), the classifier has 1008 outputs, and the first convolution
sees [-1, 1] pixels (`input_norm="minus_one_one"`). Images of any other size are resized to 299 first, bilinearly
with half-pixel centres and no antialiasing (pytorch-fid's `resize_input=True`, `align_corners=False`).
"""

from __future__ import annotations

import jax

from disentangle_jax.nets import inception

Config = inception.Config

FID = Config(num_classes=1008, input_norm="minus_one_one", pool_count_include_pad=False, last_block_pool="max")


@jax.jit
def features(network: inception.Inception, images: jax.Array) -> jax.Array:
  """pool3 features [B, 2048] of images (float NHWC in [-1, 1], any size), compiled once per input shape."""
  return network(images)


class FIDInception(inception.Inception):
  """InceptionV3 for FID. `network.features(images)` is the compiled pool3 map; `network(images)` the same, traced."""

  def features(self, images: jax.Array) -> jax.Array:
    """pool3 [B, 2048] of float NHWC images in [-1, 1], resized to 299 as pytorch-fid resizes.

    pytorch-fid resizes [0, 1] images and then maps them to [-1, 1]; bilinear resizing is linear, so resizing the
    [-1, 1] image gives the same input (to float32 rounding). Runs `features` (one compiled program per shape), so
    metric code calls it eagerly at full speed; inside a caller's `jax.jit` it is inlined like any jitted function.
    """
    return features(self, images)
