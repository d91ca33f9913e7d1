"""Tiny stand-ins for the frozen networks and E_attr, for tests of the training machinery.

The real networks compile slowly on a CPU (InceptionV3, ResNet-50, FAN and StyleGAN have hundreds of layers even at
tiny widths), and what the loop tests check (sharding equality, resuming, SIGTERM, NaN handling, two processes) does
not depend on which convolutions sit inside. These modules honour the same contracts (`synthesis`, `mapping`,
`embed`, `landmarks`, `__call__` of E_attr) at 16x16 with a handful of layers; `install()` routes the config kinds
to them. One test (`test_train.py::test_smoke_config_trains`) runs the real smoke config end to end.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from disentangle_jax import frozen as frozen_lib
from disentangle_jax import model as model_lib

RESOLUTION = 16
NUM_POINTS = 6
JAW = (0, 1)


@dataclasses.dataclass(frozen=True)
class GConfig:
  resolution: int = RESOLUTION
  z_dim: int = 8
  w_dim: int = 8
  num_ws: int = 4


class TinyGenerator(nnx.Module):
  """mapping: z -> ws (truncated toward zero); synthesis: mean w -> 4x4 -> two upsampling convs -> tanh."""

  def __init__(self, config: GConfig, *, rngs: nnx.Rngs):
    self.config = config
    self.map = nnx.Linear(config.z_dim, config.w_dim, rngs=rngs)
    self.fc = nnx.Linear(config.w_dim, 4 * 4 * 8, rngs=rngs)
    self.conv1 = nnx.Conv(8, 8, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(8, 3, (3, 3), rngs=rngs)

  def mapping(self, z, truncation_psi=1.0, truncation_cutoff=None):
    z = z * jax.lax.rsqrt(jnp.mean(z * z, axis=-1, keepdims=True) + 1e-8)
    w = jax.nn.leaky_relu(self.map(z), 0.2) * truncation_psi
    return jnp.broadcast_to(w[:, None], (w.shape[0], self.config.num_ws, self.config.w_dim))

  def synthesis(self, ws, noise_mode="const"):
    del noise_mode
    x = self.fc(jnp.mean(ws, axis=1)).reshape(-1, 4, 4, 8)
    x = jax.nn.leaky_relu(self.conv1(jnp.repeat(jnp.repeat(x, 2, 1), 2, 2)), 0.2)
    return jnp.tanh(self.conv2(jnp.repeat(jnp.repeat(x, 2, 1), 2, 2)))


class TinyIdEncoder(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(3, 8, (3, 3), strides=2, rngs=rngs)
    self.pool = nnx.Linear(8, 12, rngs=rngs)
    self.proj = nnx.Linear(12, 6, rngs=rngs)

  def embed(self, images, head="pool"):
    x = jnp.mean(jax.nn.relu(self.conv(images)), axis=(1, 2))
    x = self.pool(x)
    if head == "proj":
      x = self.proj(x)
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


class TinyLandmarks(nnx.Module):
  """Soft-argmax of NUM_POINTS heatmaps: differentiable pixel coordinates [B, P, 2]."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(3, NUM_POINTS, (3, 3), rngs=rngs)

  def landmarks(self, images):
    h = self.conv(images)  # [B, H, W, P]
    b, hh, ww, p = h.shape
    prob = jax.nn.softmax(4.0 * h.reshape(b, hh * ww, p), axis=1).reshape(b, hh, ww, p)
    ys, xs = jnp.arange(hh, dtype=jnp.float32), jnp.arange(ww, dtype=jnp.float32)
    return jnp.stack([jnp.einsum("bhwp,w->bp", prob, xs), jnp.einsum("bhwp,h->bp", prob, ys)], axis=-1)


class TinyAttr(nnx.Module):
  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(3, 8, (3, 3), strides=2, rngs=rngs)
    self.conv2 = nnx.Conv(8, 10, (3, 3), strides=2, rngs=rngs)

  def __call__(self, images):
    x = jax.nn.relu(self.conv1(images))
    return jnp.mean(jax.nn.relu(self.conv2(x)), axis=(1, 2))


def _generator(cfg, seed):
  return TinyGenerator(GConfig(**cfg.arch.to_dict()), rngs=nnx.Rngs(seed))


def _id_encoder(cfg, seed):
  del cfg
  return TinyIdEncoder(rngs=nnx.Rngs(seed))


def _landmark_net(cfg, seed):
  del cfg
  return TinyLandmarks(rngs=nnx.Rngs(seed))


def _attr_encoder(cfg, seed):
  del cfg
  return TinyAttr(rngs=nnx.Rngs(seed))


def _trained_attr_encoder(cfg, arch):
  """E_attr's abstract shape for loading trained parameters (inference.load of a stand-in run)."""
  del cfg, arch
  return nnx.eval_shape(lambda: TinyAttr(rngs=nnx.Rngs(0)))


def install(monkeypatch=None) -> None:
  """Routes every network of a config to the stand-ins (through pytest's monkeypatch when given)."""
  patches = [
    (model_lib, "_trained_attr_encoder", _trained_attr_encoder),
    (frozen_lib, "generator", _generator),
    (frozen_lib, "id_encoder", _id_encoder),
    (frozen_lib, "landmark_net", _landmark_net),
    (frozen_lib, "landmark_keep_indices", lambda kind: tuple(i for i in range(NUM_POINTS) if i not in JAW)),
    (model_lib, "attr_encoder", _attr_encoder),
  ]
  for module, name, value in patches:
    if monkeypatch is None:
      setattr(module, name, value)
    else:
      monkeypatch.setattr(module, name, value)


def random_batches(spec, n: int, batch: int = 8) -> list[dict]:
  """`n` fixed global batches (numpy) following the paper's schedule: steps 0, 1 same-image, step 2 cross."""
  rng = np.random.RandomState(0)
  out = []
  for step in range(n):
    ids = rng.uniform(-1, 1, (batch, spec.resolution, spec.resolution, 3)).astype(np.float32)
    attrs = ids if step % 3 != 2 else rng.uniform(-1, 1, ids.shape).astype(np.float32)
    out.append(
      {"id": ids, "attr": attrs, "w_real": rng.randn(batch, spec.w_dim).astype(np.float32), "same": step % 3 != 2}
    )
  return out


def tiny_config(**overrides) -> ml_collections.ConfigDict:
  """The smoke config at stand-in sizes: 16 px, 64 training images, every interval short."""
  from disentangle_jax.configs import smoke  # pylint: disable=import-outside-toplevel

  c = smoke.get_config()
  c.generator.arch = ml_collections.ConfigDict(dataclasses.asdict(GConfig()))
  c.mapper.hidden = (16, 16, 8)
  c.discriminator.hidden = (8, 8, 4)
  c.data.num_train = 64
  c.data.num_validation = 16
  c.data.examples_per_shard = 32
  c.data.generate_batch_size = 16
  c.per_device_batch_size = 1
  c.num_steps = 4
  c.log_every = 1
  c.image_every = 2
  c.eval_every = 4
  c.eval_batches = 1
  c.checkpoint_every = 2
  c.keep_checkpoints = 5
  for key, value in overrides.items():
    target = c
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return c
