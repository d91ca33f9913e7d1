"""M: the mapping network from the concatenated (identity, attribute) code to one StyleGAN `w`.

Facts from the original TF2 implementation (YotamNitzan/ID-disentanglement, `model/latent_mapping.py`): four dense
layers (2560 -> 2048 -> 1024 -> 512 -> 512 at the paper's sizes), LeakyReLU(0.2) *between* layers and none after the
last, so `w` is unbounded like StyleGAN's own mapping output. Its initialisation is mixed: the first layers keep
Keras' default (Glorot uniform), the last two use He-style variance scaling with the LeakyReLU gain,
`VarianceScaling(scale=2 / (1 + 0.2**2))` (fan-in, truncated normal); biases start at zero. The mapper returns one
`w` per image; the composed model broadcasts it to every style input of G. `load` reads the original's trained
`LatentMappingNetwork*.h5` (Keras `save_weights`; kernels are `[in, out]` as in `nnx.Linear`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax import trees
from disentangle_jax.third_party.common import keras_h5
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError


def leaky_relu_init(negative_slope: float) -> nnx.Initializer:
  """He init with the LeakyReLU gain: N(0, 2 / ((1 + slope^2) fan_in)), truncated like Keras' VarianceScaling."""
  return jax.nn.initializers.variance_scaling(2.0 / (1.0 + negative_slope**2), "fan_in", "truncated_normal")


class Mapper(nnx.Module):
  """concat(id, attr) [B, in_features] -> w [B, out_features]."""

  def __init__(
    self, in_features: int, hidden: Sequence[int], out_features: int, *, negative_slope: float = 0.2, rngs: nnx.Rngs
  ):
    sizes = [in_features, *hidden, out_features]
    he = leaky_relu_init(negative_slope)
    glorot = jax.nn.initializers.glorot_uniform()
    n = len(sizes) - 1
    # Only the last two layers get the LeakyReLU-gain init, as in the original (the others keep Keras' default).
    self.layers = nnx.List(
      [nnx.Linear(sizes[i], sizes[i + 1], kernel_init=he if i >= n - 2 else glorot, rngs=rngs) for i in range(n)]
    )
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


def read_keras_dense(path: str | os.PathLike, count: int, network: str) -> list[tuple[np.ndarray, np.ndarray]]:
  """(kernel [in, out], bias) of each Dense layer of a Keras `save_weights` file, in file order.

  The original's models are subclassed Keras models whose Dense layers get process-dependent names (`dense_4` in
  one run, `dense` in another), so layers are taken by order; `count` is how many the network has, and each
  layer's input must be the previous one's output. Errors name the file, layer and weight.
  """
  path = os.fspath(path)
  found = keras_h5.read(path)
  if len(found) != count:
    raise CheckpointFormatError(
      f"{path}: {len(found)} layers with weights ({[l.name for l in found]}), but the "
      f"original's {network} has {count} Dense layers: not a {network}.h5"
    )
  out = []
  for i, layer in enumerate(found):
    if layer.leaves != ("kernel", "bias"):
      raise CheckpointFormatError(
        f"{path}: layer {layer.name!r} holds weights {list(layer.leaves)}, not a Dense "
        f"layer's (kernel, bias) ({network} layer {i})"
      )
    (kname, kernel), (bname, bias) = layer.weights
    if kernel.ndim != 2 or bias.shape != (kernel.shape[-1],):
      raise CheckpointFormatError(
        f"{path}: layer {layer.name!r}: weight {kname!r} {kernel.shape} and {bname!r} "
        f"{bias.shape} are not a Dense layer's [in, out] and [out]"
      )
    if out and kernel.shape[0] != out[-1][0].shape[1]:
      raise CheckpointFormatError(
        f"{path}: layer {layer.name!r}, weight {kname!r} takes {kernel.shape[0]} inputs "
        f"but the previous layer gives {out[-1][0].shape[1]}"
      )
    out.append((kernel, bias))
  return out


def _filled(
  make: Callable[[nnx.Rngs], nnx.Module], dense: list[tuple[np.ndarray, np.ndarray]], source: str
) -> nnx.Module:
  """`make` built abstractly and filled with the Dense layers' arrays (`trees.assign` checks every entry)."""
  module = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
  trees.assign(module, {"layers": {i: {"kernel": k, "bias": b} for i, (k, b) in enumerate(dense)}}, source)
  return module


def load(path: str | os.PathLike, negative_slope: float = 0.2) -> Mapper:
  """M from the original's `LatentMappingNetwork*.h5` (four Dense layers, 2560 -> 2048 -> 1024 -> 512 -> 512)."""
  dense = read_keras_dense(path, 4, "LatentMappingNetwork")
  sizes = [dense[0][0].shape[0]] + [k.shape[1] for k, _ in dense]
  return _filled(
    lambda rngs: Mapper(sizes[0], sizes[1:-1], sizes[-1], negative_slope=negative_slope, rngs=rngs),
    dense,
    os.fspath(path),
  )
