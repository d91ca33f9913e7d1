"""The small CNN both toy frozen networks share: 3x3 conv + ReLU + 2x2 max-pool stages, then one hidden dense layer.

The input is resized (bilinear, differentiable) to `input_size` when it differs, so a net trained on one generator
resolution reads images of another; NHWC float32 (or bfloat16) in [-1, 1], computed in the weights' dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import layers


def check_sizes(name: str, input_size: int, widths: Sequence[int], hidden: int) -> None:
  """Raises ValueError naming the field when a size cannot build a network."""
  if int(input_size) < 2 ** len(widths):
    raise ValueError(
      f"{name}.input_size must be >= {2 ** len(widths)} for {len(widths)} pooling stages, got {input_size}"
    )
  if not widths or any(int(w) < 1 for w in widths):
    raise ValueError(f"{name}.widths must be a non-empty sequence of positive channel counts, got {widths}")
  if int(hidden) < 1:
    raise ValueError(f"{name}.hidden must be positive, got {hidden}")


class Backbone(nnx.Module):
  """images [B, H, W, 3] -> features [B, hidden] (after ReLU)."""

  def __init__(self, input_size: int, widths: Sequence[int], hidden: int, *, rngs: nnx.Rngs):
    self.input_size = int(input_size)
    channels = [3, *(int(w) for w in widths)]
    init = layers.scaled_normal(1.0)  # LeCun normal, quick to draw eagerly (`layers.scaled_normal`)
    self.convs = nnx.List(
      [nnx.Conv(channels[i], channels[i + 1], (3, 3), kernel_init=init, rngs=rngs) for i in range(len(widths))]
    )
    side = self.input_size // 2 ** len(widths)
    self.dense = nnx.Linear(side * side * channels[-1], int(hidden), kernel_init=init, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"expected images [B, H, W, 3], got shape {images.shape}")
    x = images.astype(self.dense.kernel[...].dtype)
    if x.shape[1:3] != (self.input_size, self.input_size):
      x = jax.image.resize(x, (x.shape[0], self.input_size, self.input_size, 3), "bilinear")
    for conv in self.convs:
      x = nnx.max_pool(jax.nn.relu(conv(x)), (2, 2), strides=(2, 2))
    return jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))


def num_params(module: nnx.Module) -> int:
  """How many numbers the module's parameters hold."""
  return sum(int(jnp.size(p)) for p in jax.tree.leaves(nnx.state(module, nnx.Param)))
