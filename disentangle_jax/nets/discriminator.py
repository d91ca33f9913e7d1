"""D_W: the latent discriminator telling the mapper's `w` from StyleGAN's own `w` (from its mapping network).

Facts from the original (`model/discriminator.py`, class `W_D`): an MLP 512 -> 256 -> 128 -> 64 -> 1 with
LeakyReLU(0.2) between the layers and a raw logit out; every layer initialised with the LeakyReLU-gain He scheme
(`VarianceScaling(2 / (1 + 0.2**2))`), biases zero. Keeping `w` on StyleGAN's learned manifold is what lets the
frozen generator render the mapped codes as faces.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

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
