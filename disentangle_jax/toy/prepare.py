"""Trains the toy world's frozen networks (E_id and the landmark net) once, against the renderer's ground truth.

    config.generator.kind = "toy"; config.id_encoder.kind = "toy"; config.landmarks.kind = "toy"
    config = prepare(config, "cache/toy_nets")     # trains what is missing, then points `weights` at it

No pretrained face network exists offline, so in the toy world both are small CNNs (`identity_net`,
`landmark_net`) trained on samples of the configured toy G: z ~ N(0, I), the generator's mapping and factor
read-out, then `render.render` / `render.keypoints` at G's resolution, every batch made on the fly inside the jitted
training step.

- The identity encoder sees each identity twice, under two independent attribute samples (pose, expression,
  light), and learns (1) a linear head (training only) regressing the identity factors, rescaled to [-1, 1], from
  the normalised embedding of both views, (2) the squared distance between the two views' embeddings and (3) an
  InfoNCE loss matching the two views of each identity against the others in the batch. (1) ties the embedding's
  geometry to every identity factor, (2) and (3) make it invariant to the attributes.
- The landmark net regresses all `render.keypoints` (mean squared error in [-1, 1] image units).

Each trained net is cached as a converted directory `cache_dir/<name>-<hash>/`, the hash covering G's config
section and seed, the net's config and seed and the training settings (and `VERSION`, bumped when the training
code changes meaning), so a second call trains nothing. A directory is written under a temporary name and renamed
when complete, so a half-written one is never used.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pathlib
import shutil
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from disentangle_jax import errors
from disentangle_jax import frozen
from disentangle_jax import model
from disentangle_jax.nets import inception
from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.toy import identity_net
from disentangle_jax.toy import landmark_net
from disentangle_jax.toy import render

# 2: identity and attributes independent; 3: a tighter camera, 11 factors legible at 32 px; 4: E_id's invariance
# term, a wider mouth opening and a higher, thicker, darker brow; 5: G's W centred.
VERSION = 5
TRAINING_LOG = "training.json"


@dataclasses.dataclass(frozen=True)
class Training(config_lib.ConfigBase):
  """How one net is trained (all of it enters the cache key).

  Attributes:
    steps: Adam steps.
    batch_size: images per step (the identity encoder renders two views of each, so twice as many).
    learning_rate: Adam's step size.
    temperature: InfoNCE temperature (identity encoder only).
  """

  steps: int = 400
  batch_size: int = 64
  learning_rate: float = 2e-3
  temperature: float = 0.1

  def __post_init__(self):
    for name in ("steps", "batch_size"):
      if int(getattr(self, name)) < 1:
        raise errors.ConfigError(f"toy prepare Training.{name} must be a positive integer, got {getattr(self, name)}")
    for name in ("learning_rate", "temperature"):
      if not float(getattr(self, name)) > 0:
        raise errors.ConfigError(f"toy prepare Training.{name} must be > 0, got {getattr(self, name)}")


ID_TRAINING = Training(steps=300, batch_size=32, learning_rate=2e-3)
LANDMARK_TRAINING = Training(steps=600, batch_size=32, learning_rate=2e-3)
# E_attr's start: held-out linear probes of its features read mouth opening and brow raise at R^2 0.60 and 0.25 after
# 200 steps, 0.80 and 0.55 after 400 (0.70 and 0.36 after 200 steps at batch 64; 300 steps at a rate of 3e-3 fell
# back to 0.21 and 0.12). Those two are the attributes M learns last.
ATTR_TRAINING = Training(steps=400, batch_size=32, learning_rate=2e-3)


# ----------------------------------------------------------------------------------------------------------------
# Samples of the toy G


def sample_factors(g: nnx.Module, key: jax.Array, batch: int) -> dict[str, jax.Array]:
  """Factors of `batch` samples of G: z ~ N(0, I) -> w -> {"identity", "attribute"}."""
  z = jax.random.normal(key, (batch, int(g.config.z_dim)), jnp.float32)
  return g.factors(g.mapping(z)[:, 0])


def _fit(
  network: nnx.Module,
  extra: dict[str, jax.Array],
  loss_fn: Callable[[nnx.Module, dict[str, jax.Array], jax.Array], jax.Array],
  training: Training,
  seed: int,
) -> tuple[nnx.Module, list[float]]:
  """Adam on (network params, extra arrays) for `training.steps` steps; loss_fn(network, extra, key) -> scalar."""
  graphdef, params, rest = nnx.split(network, nnx.Param, ...)
  tx = optax.adam(float(training.learning_rate))
  variables = {"net": params, "extra": extra}
  opt_state = tx.init(variables)
  # The loop carries flat lists of arrays: rebuilding the NNX variables of the parameters and both Adam moments at
  # every call's boundary cost more Python time than InceptionV3's step itself on a 2-core CPU.
  leaves, treedef = jax.tree.flatten((variables, opt_state))

  @jax.jit
  def step(leaves, key):
    variables, opt_state = jax.tree.unflatten(treedef, leaves)

    def loss(v):
      return loss_fn(nnx.merge(graphdef, v["net"], rest), v["extra"], key)

    value, grads = jax.value_and_grad(loss)(variables)
    updates, opt_state = tx.update(grads, opt_state, variables)
    return jax.tree.leaves((optax.apply_updates(variables, updates), opt_state)), value

  key = jax.random.key(seed)
  losses = []
  for _ in range(int(training.steps)):
    key, sub = jax.random.split(key)
    leaves, value = step(leaves, sub)
    losses.append(value)
  variables, _ = jax.tree.unflatten(treedef, leaves)
  losses = [float(v) for v in jax.device_get(losses)]
  if not np.isfinite(losses[-1]):
    raise FloatingPointError(f"toy net training diverged: final loss {losses[-1]}")
  return nnx.merge(graphdef, variables["net"], rest), losses


def train_identity_encoder(
  g: nnx.Module, net_config: identity_net.Config, training: Training, seed: int
) -> tuple[identity_net.IdentityEncoder, list[float]]:
  """The identity encoder of `seed`, trained on G's samples: a linear head on the embedding regresses the identity
  factors, the squared distance between the embeddings of two views of one identity (attributes drawn twice) keeps
  it invariant to the attributes, and 0.1 x InfoNCE over those views keeps different identities apart.

  Regression leads because the identity loss compares embeddings: each identity factor then moves the embedding in
  proportion to its range, the small ones (eye colour) included, where InfoNCE alone lets the large ones dominate.
  InfoNCE alone left pose and light readable in the embedding (linear probes: yaw R^2 0.34, light 0.51), so the
  identity loss pulled M's output towards I_id's pose; with the invariance term they are 0.08 and 0.05.
  """
  network = identity_net.init(net_config, seed)
  rng = np.random.default_rng(seed)
  head = {
    "w": jnp.asarray(rng.normal(0.0, 1.0, (net_config.embed_dim, len(render.IDENTITY))), jnp.float32),
    "b": jnp.zeros((len(render.IDENTITY),), jnp.float32),
  }
  batch, resolution, temperature = int(training.batch_size), int(g.config.resolution), float(training.temperature)

  def loss_fn(net, head, key):
    k1, k2 = jax.random.split(key)
    f1, f2 = sample_factors(g, k1, batch), sample_factors(g, k2, batch)
    identity = f1["identity"]
    views = render.render(
      jnp.concatenate([identity, identity]), jnp.concatenate([f1["attribute"], f2["attribute"]]), resolution
    )
    e = net.embed(views)
    target = 2.0 * render.normalised(identity, render.IDENTITY) - 1.0
    regression = jnp.mean(jnp.square(e @ head["w"] + head["b"] - jnp.concatenate([target, target])))
    logits = e[:batch] @ e[batch:].T / temperature
    labels = jnp.arange(batch)
    nce = 0.5 * (
      optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      + optax.softmax_cross_entropy_with_integer_labels(logits.T, labels).mean()
    )
    invariance = jnp.mean(jnp.sum(jnp.square(e[:batch] - e[batch:]), axis=-1))
    return regression + invariance + 0.1 * nce

  return _fit(network, head, loss_fn, training, seed)


def train_attr_encoder(
  g: nnx.Module, net_config: inception.Config, training: Training, seed: int
) -> tuple[inception.Inception, list[float]]:
  """E_attr's start point in the toy world, the analog of the paper's ImageNet start: InceptionV3 with a linear
  head (training only) regressing every factor of G's samples, identity and attributes alike.

  Like ImageNet features, the result describes the whole image and says nothing of which factors are attributes:
  the method still has to learn to take identity from E_id and the rest from E_attr.
  """
  network = inception.init(net_config, seed)
  rng = np.random.default_rng(seed)
  count = len(render.IDENTITY) + len(render.ATTRIBUTE)
  dim = jax.eval_shape(network, jax.ShapeDtypeStruct((1, 8, 8, 3), jnp.float32)).shape[-1]
  head = {
    "w": jnp.asarray(rng.normal(0.0, 1.0 / np.sqrt(dim), (dim, count)), jnp.float32),
    "b": jnp.zeros((count,), jnp.float32),
  }
  batch, resolution = int(training.batch_size), int(g.config.resolution)

  def loss_fn(net, head, key):
    f = sample_factors(g, key, batch)
    images = render.render(f["identity"], f["attribute"], resolution)
    factors = [render.normalised(f["identity"], render.IDENTITY), render.normalised(f["attribute"], render.ATTRIBUTE)]
    target = 2.0 * jnp.concatenate(factors, axis=-1) - 1.0
    return jnp.mean(jnp.square(net(images) @ head["w"] + head["b"] - target))

  return _fit(network, head, loss_fn, training, seed)


def train_landmark_net(
  g: nnx.Module, net_config: landmark_net.Config, training: Training, seed: int
) -> tuple[landmark_net.LandmarkNet, list[float]]:
  """The landmark net of `seed`, trained to regress `render.keypoints` of G's samples."""
  network = landmark_net.init(net_config, seed)
  batch, resolution = int(training.batch_size), int(g.config.resolution)

  def loss_fn(net, extra, key):
    del extra
    f = sample_factors(g, key, batch)
    images = render.render(f["identity"], f["attribute"], resolution)
    target = render.keypoints(f["identity"], f["attribute"], resolution)
    return jnp.mean(jnp.square((net.landmarks(images) - target) * (2.0 / resolution)))

  return _fit(network, {}, loss_fn, training, seed)


# ----------------------------------------------------------------------------------------------------------------
# Measurements


@functools.partial(jax.jit, static_argnames=("batch",))
def _sample(g: nnx.Module, key: jax.Array, batch: int) -> dict[str, jax.Array]:
  """`sample_factors`, compiled (for the measurements, called from eager code)."""
  return sample_factors(g, key, batch)


_render = jax.jit(render.render, static_argnums=2)
_keypoints = jax.jit(render.keypoints, static_argnums=2)


def identity_similarity(g: nnx.Module, network: nnx.Module, seed: int, pairs: int = 256) -> dict[str, float]:
  """Mean cosine similarity of embeddings: "same" identity under other attributes, "different" identities under the
  same attributes (the strict case: an encoder that reads attributes would score high there)."""
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  f1, f2, f3 = (_sample(g, k, pairs) for k in (k1, k2, k3))
  res = int(g.config.resolution)
  base = identity_net.embed(network, _render(f1["identity"], f1["attribute"], res))
  same = identity_net.embed(network, _render(f1["identity"], f2["attribute"], res))
  different = identity_net.embed(network, _render(f3["identity"], f1["attribute"], res))
  return {
    "same": float(jnp.mean(jnp.sum(base * same, -1))),
    "different": float(jnp.mean(jnp.sum(base * different, -1))),
  }


def landmark_error(g: nnx.Module, network: nnx.Module, seed: int, samples: int = 256) -> dict[str, float]:
  """Mean pixel distance over `landmark_net.KEEP_INDICES`: the net's, and the constant mean-keypoint predictor's
  (the mean taken over another sample of the same size)."""
  k_fit, k_test = jax.random.split(jax.random.key(seed))
  res = int(g.config.resolution)
  fit = _sample(g, k_fit, samples)
  mean = jnp.mean(_keypoints(fit["identity"], fit["attribute"], res), axis=0)
  f = _sample(g, k_test, samples)
  truth = _keypoints(f["identity"], f["attribute"], res)
  predicted = landmark_net.landmarks(network, _render(f["identity"], f["attribute"], res))
  keep = jnp.asarray(landmark_net.KEEP_INDICES)

  def error(points):
    return float(jnp.mean(jnp.linalg.norm((points - truth)[:, keep], axis=-1)))

  return {"net": error(predicted), "mean_predictor": error(jnp.broadcast_to(mean, truth.shape))}


# ----------------------------------------------------------------------------------------------------------------
# The cache


def _net_config(config: ml_collections.ConfigDict, name: str, config_cls: Any, resolution: int | None) -> Any:
  """The net's Config from `config[name].arch` (its fields; `input_size` defaults to `resolution` if given)."""
  arch = dict(config[name].get("arch", {}))
  try:
    return config_cls.from_dict({**({"input_size": resolution} if resolution else {}), **arch})
  except (TypeError, ValueError) as e:
    raise errors.ConfigError(f"config.{name}.arch={arch!r}: {e}") from e


def cache_key(payload: dict[str, Any]) -> str:
  """16 hex digits of the SHA-256 of `payload` as canonical JSON."""
  text = json.dumps(payload, sort_keys=True, default=str)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cached(
  cache_dir: pathlib.Path,
  name: str,
  payload: dict[str, Any],
  network_name: str,
  train: Callable[[], tuple[nnx.Module, list[float]]],
) -> pathlib.Path:
  """The converted directory for `payload`, trained and written (atomically) only when absent."""
  final = cache_dir / f"{name}-{cache_key(payload)}"
  if converted.is_converted(final):
    return final
  if final.exists():
    raise errors.UserError(f"{final} exists but holds no converted network; remove it and prepare again")
  start = time.perf_counter()
  network, losses = train()
  seconds = time.perf_counter() - start
  cache_dir.mkdir(parents=True, exist_ok=True)
  tmp = cache_dir / f".tmp-{final.name}-{uuid.uuid4().hex}"
  try:
    converted.write(tmp, network_name, network, f"toy.prepare {payload}")
    log = {"key": payload, "seconds": seconds, "first_loss": losses[0], "final_loss": losses[-1]}
    (tmp / TRAINING_LOG).write_text(json.dumps(log, indent=2, default=str))
    try:
      os.rename(tmp, final)
    except OSError:
      if not converted.is_converted(final):  # not another process that finished first: a real failure
        raise
  finally:
    if tmp.exists():
      shutil.rmtree(tmp)
  return final


def needs_preparing(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The config sections `prepare` trains: toy E_id / landmark net without weights, and E_attr with `toy_start`."""
  names = [
    name for name in ("id_encoder", "landmarks") if config[name].kind == "toy" and not config[name].get("weights")
  ]
  attr = config.get("attr_encoder") or {}
  if attr.get("toy_start") and not attr.get("weights"):
    names.append("attr_encoder")
  return tuple(names)


def prepare(
  config: ml_collections.ConfigDict,
  cache_dir: str | os.PathLike,
  *,
  id_training: Training = ID_TRAINING,
  landmark_training: Training = LANDMARK_TRAINING,
  attr_training: Training = ATTR_TRAINING,
) -> ml_collections.ConfigDict:
  """A copy of `config` whose toy-world networks point at trained weights (trained now, or cached).

  Trained, each on the config's toy generator (`frozen.generator(config.generator, config.seed +
  SEED_OFFSETS["generator"])`) from seed `config.seed + SEED_OFFSETS[section]`:
  - `config.id_encoder` and `config.landmarks` with `kind == "toy"` and empty `weights`, at the sizes in their
    `arch` (`identity_net.Config` / `landmark_net.Config` fields; empty: the defaults at G's resolution);
  - `config.attr_encoder` with `toy_start` set and empty `weights`: E_attr's start point (`train_attr_encoder`),
    at the InceptionV3 sizes in its `arch`.
  Each section's `weights` is set to the cached directory; other sections are left as they are.

  Raises:
    errors.ConfigError: a section to prepare with a generator that is not the toy one, or a bad `arch`.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  known = {
    "id_encoder": (identity_net.Config, id_training, train_identity_encoder, identity_net.NETWORK),
    "landmarks": (landmark_net.Config, landmark_training, train_landmark_net, landmark_net.NETWORK),
    "attr_encoder": (inception.Config, attr_training, train_attr_encoder, inception.NETWORK),
  }
  names = needs_preparing(config)
  if not names:
    return config
  if config.generator.kind != "toy":
    raise errors.ConfigError(
      f"config.generator.kind={config.generator.kind!r}: the toy-world {' and '.join(names)} "
      "learn from the toy generator's ground truth; set generator.kind='toy'"
    )
  g_seed = int(config.seed) + model.SEED_OFFSETS["generator"]
  g = frozen.generator(config.generator, g_seed)
  resolution = int(g.config.resolution)
  cache_dir = pathlib.Path(cache_dir)
  jobs = {}
  for name in names:
    cls, training, trainer, network_name = known[name]
    # The toy nets default to G's resolution; InceptionV3 has its own input size (at least 75).
    net_config = _net_config(config, name, cls, None if name == "attr_encoder" else resolution)
    seed = int(config.seed) + model.SEED_OFFSETS[name]
    payload = {
      "version": VERSION,
      "network": network_name,
      "generator": config.generator.to_dict(),
      "generator_seed": g_seed,
      "net_config": net_config.to_dict(),
      "net_seed": seed,
      "training": training.to_dict(),
    }

    def train(trainer=trainer, net_config=net_config, training=training, seed=seed):
      return trainer(g, net_config, training, seed)

    jobs[name] = functools.partial(_cached, cache_dir, name, payload, network_name, train)
  # The nets are independent and each alone leaves part of a small CPU idle (XLA compiles on one thread, and the
  # Python loop of one net waits on its step), so they train side by side; each result depends on its seed alone.
  with futures.ThreadPoolExecutor(len(jobs)) as pool:
    paths = {name: pool.submit(job) for name, job in jobs.items()}
  for name in names:
    config[name].weights = str(paths[name].result().absolute())
    if name != "attr_encoder":  # E_attr keeps its arch: `model.attr_encoder` loads at its input size
      config[name].arch = ml_collections.ConfigDict()
  return config
