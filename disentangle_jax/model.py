"""The composed model: frozen E_id, G and landmark net around the trainable E_attr, M and D_W.

    out = G(broadcast(M(concat(E_id(I_id), E_attr(I_attr)))))

Two NNX containers keep the split the optimiser relies on: `Frozen` (G, E_id, the landmark net; never in an
optimiser, optionally cast to bfloat16) and `Trainable` (E_attr, M, D_W). The functions below are pure and take the
modules as arguments, so the jitted train step, the evaluation and the applications share one definition of the
forward pass. `build(config)` creates everything from a config, each network from its own explicit seed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from disentangle_jax import frozen as frozen_lib
from disentangle_jax import trees
from disentangle_jax.nets import discriminator as discriminator_lib
from disentangle_jax.nets import inception
from disentangle_jax.nets import mapper as mapper_lib

# Offsets added to `config.seed` for the networks initialised at random. G uses `config.seed` itself: the dataset
# generator renders with the same G, and a random G must be the same network in both places.
SEED_OFFSETS = {"generator": 0, "id_encoder": 1, "landmarks": 2, "attr_encoder": 3, "mapper": 4, "discriminator": 5}


@dataclasses.dataclass(frozen=True)
class Spec:
  """Static facts the pure functions need (hashable: they are compile-time constants)."""

  resolution: int
  w_dim: int
  num_ws: int
  id_dim: int
  attr_dim: int
  id_head: str
  landmark_keep: tuple[int, ...]
  noise_mode: str = "const"
  frozen_dtype: str = "float32"
  remat_generator: bool = False
  landmark_scale: float = 1.0  # landmark net pixels -> the loss's units (`config.landmarks.units_px`)


class Frozen(nnx.Module):
  """G, E_id and the landmark net: evaluated, differentiated through, never updated."""

  def __init__(self, generator: nnx.Module, id_encoder: nnx.Module, landmarks: nnx.Module):
    self.generator = generator
    self.id_encoder = id_encoder
    self.landmarks = landmarks


class Trainable(nnx.Module):
  """E_attr, M and D_W: the only parameters any optimiser sees."""

  def __init__(self, attr_encoder: nnx.Module, mapper: nnx.Module, discriminator: nnx.Module):
    self.attr_encoder = attr_encoder
    self.mapper = mapper
    self.discriminator = discriminator


@dataclasses.dataclass
class Model:
  spec: Spec
  frozen: Frozen
  trainable: Trainable


# ----------------------------------------------------------------------------------------------------------------
# The forward pass


def _frozen_in(spec: Spec, x: jax.Array) -> jax.Array:
  return x.astype(jnp.bfloat16 if spec.frozen_dtype == "bfloat16" else jnp.float32)


def embed_identity(frozen: Frozen, spec: Spec, images: jax.Array) -> jax.Array:
  """E_id(images) -> L2-normalised [B, id_dim] float32."""
  emb = frozen.id_encoder.embed(_frozen_in(spec, images), head=spec.id_head).astype(jnp.float32)
  if spec.frozen_dtype != "float32":  # re-normalise what bfloat16 rounding left slightly off the unit sphere
    emb = emb / jnp.linalg.norm(emb, axis=-1, keepdims=True)
  return emb


def detect_landmarks(frozen: Frozen, spec: Spec, images: jax.Array) -> jax.Array:
  """The landmark net's points [B, P, 2 or 3], float32, in its input pixels times `spec.landmark_scale` (the
  units the landmark loss and the evaluation work in; see `landmark_scale`)."""
  points = frozen.landmarks.landmarks(_frozen_in(spec, images)).astype(jnp.float32)
  return points if spec.landmark_scale == 1.0 else points * spec.landmark_scale


def landmark_scale(cfg: ml_collections.ConfigDict, net: nnx.Module | None, resolution: int) -> float:
  """`config.landmarks.units_px` / the net's input side: coordinates in a `units_px`-wide frame of the image.

  The original's landmark regressor reports (x, y) in its 160 px input (`model/landmarks.py`: images resized to 160,
  outputs x 160), and its loss weight 0.001 is in those units. FAN reports pixels of its 256 px input, so the same
  squared error is (256 / 160)^2 = 2.56x larger; with `units_px = 160` every coordinate is scaled by 160 / 256
  before the loss (and the evaluation), which keeps the original's weight. 0 or absent: the net's own pixels.
  """
  units = float(cfg.get("units_px", 0) or 0)
  if not units or net is None:
    return 1.0
  native = getattr(getattr(net, "config", None), "input_size", None) or resolution
  return units / float(native)


def render(frozen: Frozen, spec: Spec, w: jax.Array) -> jax.Array:
  """G(w broadcast to every style input) -> [B, H, W, 3] float32 in ~[-1, 1].

  With `spec.remat_generator`, G's activations are recomputed in the backward pass instead of stored: the largest
  activations of the step are G's, and the identity and landmark losses back-propagate through all of them.
  """

  def synthesize(generator: nnx.Module, w: jax.Array) -> jax.Array:
    ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], spec.num_ws, w.shape[-1]))
    return generator.synthesis(_frozen_in(spec, ws), noise_mode=spec.noise_mode).astype(jnp.float32)

  if spec.remat_generator:
    synthesize = jax.checkpoint(synthesize)
  return synthesize(frozen.generator, w)


def encode(trainable: Trainable, id_embedding: jax.Array, attr_images: jax.Array) -> jax.Array:
  """M(concat(id, E_attr(attr))) -> w [B, w_dim]."""
  attr = trainable.attr_encoder(attr_images.astype(jnp.float32))
  return trainable.mapper(mapper_lib.concat_codes(id_embedding, attr))


def swap(
  frozen: Frozen, trainable: Trainable, spec: Spec, id_images: jax.Array, attr_images: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The method itself: the identity of `id_images` with the attributes of `attr_images` -> (images, w)."""
  w = encode(trainable, embed_identity(frozen, spec, id_images), attr_images)
  return render(frozen, spec, w), w


# ----------------------------------------------------------------------------------------------------------------
# Building


def _arch(cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.get("arch", {}).items()}


def _set_inference(module: nnx.Module | None) -> nnx.Module | None:
  """BatchNorm on running statistics and no dropout, as in the original (Keras models called outside `fit`)."""
  if module is not None:
    module.eval()
  return module


def attr_encoder(cfg: ml_collections.ConfigDict, seed: int) -> nnx.Module:
  """E_attr (InceptionV3) from `config.attr_encoder`; `weights` optionally an ImageNet checkpoint to start from."""
  if cfg.kind != "inception_v3":
    raise ValueError(f"config.attr_encoder.kind: unknown {cfg.kind!r}; choose 'inception_v3'")
  arch = _arch(cfg)
  if cfg.weights:
    if not os.path.exists(cfg.weights):
      raise FileNotFoundError(
        f"config.attr_encoder.weights: {cfg.weights!r} does not exist; convert the ImageNet "
        "weights (`disentangle-jax convert inception_v3`) or set it to '' for a random init"
      )
    module = inception.load(cfg.weights, input_size=int(arch.get("input_size", 299)), num_classes=0)
  else:
    module = inception.init(inception.Config(**arch), seed)
  return _set_inference(module)


def _trained_attr_encoder(cfg: ml_collections.ConfigDict, arch: dict[str, Any] | None) -> nnx.Module:
  """E_attr at the architecture its trained parameters have, built abstractly (they overwrite every variable).

  `arch` is what an export records; without it the architecture follows the config: the ImageNet start point's
  classifier is dropped as `attr_encoder` drops it, and its conventions (input range, BatchNorm scale, pooling) are
  those of its weights (`inception.conventions`); its arrays are not read (the file may not be on this machine).
  """
  if arch is None:
    arch = {**_arch(cfg), **({"num_classes": 0, **inception.conventions(cfg.weights)} if cfg.weights else {})}
  return nnx.eval_shape(lambda: inception.init(inception.Config.from_dict(dict(arch)), 0))


def _output_dim(fn: Any, resolution: int) -> int:
  out = jax.eval_shape(fn, jax.ShapeDtypeStruct((1, resolution, resolution, 3), jnp.float32))
  return int(out.shape[-1])


def build(
  config: ml_collections.ConfigDict,
  *,
  for_inference: bool = False,
  trained: Mapping[str, Any] | None = None,
  attr_arch: dict[str, Any] | None = None,
  source: str = "",
) -> Model:
  """The composed model of `config`: the only place its networks are made.

  Frozen networks are loaded from their converted weights, or randomly initialised at `arch` sizes; every network
  has its own explicit seed (`config.seed` + `SEED_OFFSETS`).

  Args:
    config: the full config.
    for_inference: build only what inference needs: no landmark net and no D_W (both None).
    trained: parameters by network name (`attr_encoder`, `mapper`, `discriminator`; `frozen_generator` /
      `frozen_id_encoder` where an export carries random-init frozen networks). A trainable network named here is
      built abstractly (`nnx.eval_shape`: no random init, no ImageNet weights read) and filled from it; every
      entry's shape is checked.
    attr_arch: E_attr's architecture as an export records it (default: as the config derives it).
    source: names the parameters' origin in error messages.
  """
  trained = dict(trained or {})
  seed = int(config.seed)
  seeds = {name: seed + offset for name, offset in SEED_OFFSETS.items()}

  def fill(module: nnx.Module, name: str) -> nnx.Module:
    trees.assign(module, trained[name], f"{source}: {name}" if source else name)
    return module

  g = frozen_lib.generator(config.generator, seeds["generator"])
  e_id = frozen_lib.id_encoder(config.id_encoder, seeds["id_encoder"])
  lnd = None if for_inference else frozen_lib.landmark_net(config.landmarks, seeds["landmarks"])
  for name, module in (("frozen_generator", g), ("frozen_id_encoder", e_id)):
    if name in trained:
      fill(module, name)
  frozen = Frozen(_set_inference(g), _set_inference(e_id), _set_inference(lnd))
  g_cfg = g.config
  res, w_dim, num_ws = int(g_cfg.resolution), int(g_cfg.w_dim), int(g_cfg.num_ws)
  head = str(config.id_encoder.head)
  id_dim = _output_dim(lambda x: frozen.id_encoder.embed(x, head=head), res)

  if "attr_encoder" in trained:
    e_attr = _set_inference(fill(_trained_attr_encoder(config.attr_encoder, attr_arch), "attr_encoder"))
  else:
    e_attr = attr_encoder(config.attr_encoder, seeds["attr_encoder"])
  attr_dim = _output_dim(e_attr, res)

  def trainable(name: str, make: Callable[[nnx.Rngs], nnx.Module]) -> nnx.Module:
    if name in trained:
      return fill(nnx.eval_shape(lambda: make(nnx.Rngs(0))), name)
    return make(nnx.Rngs(seeds[name]))

  m = trainable(
    "mapper",
    lambda rngs: mapper_lib.Mapper(
      id_dim + attr_dim,
      tuple(config.mapper.hidden),
      w_dim,
      negative_slope=float(config.mapper.negative_slope),
      rngs=rngs,
    ),
  )
  d = (
    None
    if for_inference
    else trainable(
      "discriminator",
      lambda rngs: discriminator_lib.LatentDiscriminator(
        w_dim, tuple(config.discriminator.hidden), negative_slope=float(config.discriminator.negative_slope), rngs=rngs
      ),
    )
  )
  compute = config.compute
  if compute.frozen_dtype not in ("float32", "bfloat16"):
    raise ValueError(f"config.compute.frozen_dtype: {compute.frozen_dtype!r}; choose 'float32' or 'bfloat16'")
  keep = () if for_inference else frozen_lib.landmark_keep_indices(config.landmarks.kind)
  spec = Spec(
    resolution=res,
    w_dim=w_dim,
    num_ws=num_ws,
    id_dim=id_dim,
    attr_dim=attr_dim,
    id_head=head,
    landmark_keep=tuple(int(i) for i in keep),
    noise_mode=str(config.generator.get("noise_mode", "const")),
    frozen_dtype=str(compute.frozen_dtype),
    remat_generator=bool(compute.remat_generator),
    landmark_scale=landmark_scale(config.landmarks, lnd, res),
  )
  return Model(spec, frozen, Trainable(e_attr, m, d))


def cast_frozen_state(state: Any, dtype: str) -> Any:
  """The frozen networks' state in `dtype` (floating leaves only): halves their memory and runs them in bf16."""
  if dtype == "float32":
    return state
  target = jnp.dtype(dtype)
  return jax.tree.map(lambda x: x.astype(target) if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
