"""E_id of the toy world: a small CNN trained (by `toy.prepare`) to embed a face's identity factors, not its pose.

    from disentangle_jax.toy import identity_net
    e_id = identity_net.load(path)                  # a converted directory `prepare` wrote
    emb = identity_net.embed(e_id, images)          # float32 NHWC in [-1, 1] -> [B, embed_dim], unit norm

It has the API of the VGGFace2 encoder (`embed(images, head=...)`), so `config.id_encoder.kind = "toy"` drops in.
There is one embedding: `head` "pool" and "proj" both give it (accepted so configs written for VGGFace2 run
unchanged). No pretrained weights exist: `init` draws random ones, `toy.prepare` trains them against the toy
renderer's ground truth and saves the converted layout, which `load` reads.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.toy import NotConvertibleError
from disentangle_jax.toy import cnn

NETWORK = "toy_identity_encoder"
HEADS = ("pool", "proj")

__all__ = ["Config", "HEADS", "IdentityEncoder", "Module", "NETWORK", "convert", "convert_to", "embed", "init", "load"]


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Sizes of the toy identity encoder.

  Attributes:
    input_size: side the images are resized to (the toy generator's resolution, so usually no resize).
    widths: channels of the conv stages (each halves the side).
    hidden: width of the dense layer after the convs.
    embed_dim: size of the embedding.
  """

  input_size: int = 32
  widths: tuple[int, ...] = (8, 16, 32)
  hidden: int = 128
  embed_dim: int = 32

  def __post_init__(self):
    cnn.check_sizes("toy identity_net Config", self.input_size, self.widths, self.hidden)
    if int(self.embed_dim) < 1:
      raise ValueError(f"toy identity_net Config.embed_dim must be positive, got {self.embed_dim}")


class IdentityEncoder(nnx.Module):
  """images -> L2-normalised identity embedding."""

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    self.backbone = cnn.Backbone(config.input_size, config.widths, config.hidden, rngs=rngs)
    self.out = nnx.Linear(int(config.hidden), int(config.embed_dim), rngs=rngs)

  def embed(self, images: jax.Array, head: str = "pool") -> jax.Array:
    """[B, H, W, 3] in [-1, 1] -> [B, embed_dim], unit norm; `head` "pool" or "proj" (the same embedding)."""
    if head not in HEADS:
      raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    e = self.out(self.backbone(images))
    return e * jax.lax.rsqrt(jnp.sum(jnp.square(e), axis=-1, keepdims=True) + 1e-12)

  def __call__(self, images: jax.Array) -> jax.Array:
    return self.embed(images)


Module = IdentityEncoder


def init(config: Config, seed: int) -> IdentityEncoder:
  """Random weights from an explicit seed (what `toy.prepare` starts training from)."""
  return IdentityEncoder(config, rngs=nnx.Rngs(seed))


def convert(src: str | os.PathLike, **_: Any) -> tuple[Config, dict[str, Any]]:
  """There is no upstream checkpoint: only directories written by `toy.prepare` / `convert_to` load."""
  raise NotConvertibleError(
    f"{src}: not a converted toy identity encoder directory (no network.json); train one with "
    "`disentangle_jax.toy.prepare.prepare(config, cache_dir)`"
  )


def load(path: str | os.PathLike) -> IdentityEncoder:
  """A converted directory (written by `toy.prepare` or `convert_to`)."""
  config, params = converted.read(path, NETWORK, Config, convert)
  return converted.build(IdentityEncoder, config, params, os.fspath(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> Config:
  """Copies a converted directory `src` to `dst` (the contract's converter; there is no other format)."""
  network = load(src)
  converted.write(dst, NETWORK, network, src)
  return network.config


@functools.partial(jax.jit, static_argnames=("head",))
def embed(network: IdentityEncoder, images: jax.Array, head: str = "pool") -> jax.Array:
  """`network.embed`, compiled once per head and input shape."""
  return network.embed(images, head=head)
