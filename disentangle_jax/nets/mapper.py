"""M: the mapping network from the concatenated (identity, attribute) code to one StyleGAN `w`.

Facts from the original TF2 implementation (YotamNitzan/ID-disentanglement, `model/latent_mapping.py`): four dense
layers (2560 -> 2048 -> 1024 -> 512 -> 512 at the paper's sizes), LeakyReLU(0.2) *between* layers and none after the
last, so `w` is unbounded like StyleGAN's own mapping output. Its initialisation is mixed: the first layers keep
Keras' default (Glorot uniform), the last two use He-style variance scaling with the LeakyReLU gain,
`VarianceScaling(scale=2 / (1 + 0.2**2))` (fan-in, truncated normal); biases start at zero. The mapper returns one
`w` per image; the composed model broadcasts it to every style input of G.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def leaky_relu_init(negative_slope: float) -> nnx.Initializer:
  """He init with the LeakyReLU gain: N(0, 2 / ((1 + slope^2) fan_in)), truncated like Keras' VarianceScaling."""
  return jax.nn.initializers.variance_scaling(2.0 / (1.0 + negative_slope**2), "fan_in", "truncated_normal")


class Mapper(nnx.Module):
  """concat(id, attr) [B, in_features] -> w [B, out_features]."""

  def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, *, negative_slope: float = 0.2,
               rngs: nnx.Rngs):
    sizes = [in_features, *hidden, out_features]
    he = leaky_relu_init(negative_slope)
    glorot = jax.nn.initializers.glorot_uniform()
    n = len(sizes) - 1
    # Only the last two layers get the LeakyReLU-gain init, as in the original (the others keep Keras' default).
    self.layers = nnx.List([
        nnx.Linear(sizes[i], sizes[i + 1], kernel_init=he if i >= n - 2 else glorot, rngs=rngs) for i in range(n)
    ])
    self.negative_slope = negative_slope

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      if i:
        x = jax.nn.leaky_relu(x, self.negative_slope)
      x = layer(x)
    return x


def concat_codes(id_code: jax.Array, attr_code: jax.Array) -> jax.Array:
  """The mapper's input: identity code first, then attributes (the original's `concat([id, attr], -1)`)."""
  return jnp.concatenate([id_code, attr_code], axis=-1)
