"""D_W: the latent discriminator telling the mapper's `w` from StyleGAN's own `w` (from its mapping network).

Facts from the original (`model/discriminator.py`, class `W_D`): an MLP 512 -> 256 -> 128 -> 64 -> 1 with
LeakyReLU(0.2) between the layers and a raw logit out; every layer initialised with the LeakyReLU-gain He scheme
(`VarianceScaling(2 / (1 + 0.2**2))`), biases zero. Keeping `w` on StyleGAN's learned manifold is what lets the
frozen generator render the mapped codes as faces. `load` reads the original's `W_D*.h5`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import jax
from flax import nnx

from disentangle_jax.nets import mapper as mapper_lib
from disentangle_jax.nets.mapper import leaky_relu_init


class LatentDiscriminator(nnx.Module):
  """w [B, in_features] -> logit [B] (positive: looks like a real StyleGAN w)."""

  def __init__(self, in_features: int, hidden: Sequence[int], *, negative_slope: float = 0.2, rngs: nnx.Rngs):
    sizes = [in_features, *hidden, 1]
    init = leaky_relu_init(negative_slope)
    self.layers = nnx.List([nnx.Linear(a, b, kernel_init=init, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])
    self.negative_slope = negative_slope

  def __call__(self, w: jax.Array) -> jax.Array:
    x = w
    for i, layer in enumerate(self.layers):
      if i:
        x = jax.nn.leaky_relu(x, self.negative_slope)
      x = layer(x)
    return x[..., 0]


def load(path: str | os.PathLike, negative_slope: float = 0.2) -> LatentDiscriminator:
  """D_W from the original's `W_D*.h5` (four Dense layers, 512 -> 256 -> 128 -> 64 -> 1).

  The module returns the logit as [B] (the train step's convention); the Keras model's [B, 1] is `logit[:, None]`.
  """
  dense = mapper_lib.read_keras_dense(path, 4, "W_D")
  if dense[-1][0].shape[1] != 1:
    raise mapper_lib.CheckpointFormatError(
      f"{os.fspath(path)}: the last Dense layer has {dense[-1][0].shape[1]} outputs; W_D ends in one logit"
    )
  sizes = [dense[0][0].shape[0]] + [k.shape[1] for k, _ in dense[:-1]]
  return mapper_lib._filled(  # pylint: disable=protected-access
    lambda rngs: LatentDiscriminator(sizes[0], sizes[1:], negative_slope=negative_slope, rngs=rngs),
    dense,
    os.fspath(path),
  )
