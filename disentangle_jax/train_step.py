"""The train step: losses, gradients and the three Adam updates in one jitted, sharded function.

The original (`trainer.py`) computes every gradient from one forward pass at the current parameters and applies:
  1. Adam(lr)        to E_attr + M on identity + landmarks (+ reconstruction on same-image batches);
  2. Adam(0.1 lr)    to E_attr + M on the non-saturating adversarial loss through D_W      } every
  3. Adam(0.4 lr)    to D_W on its logistic loss + R1 on real w                              } other step
Everything after `w` depends on E_attr + M only through `w`, so the step differentiates the heavy part (G, E_id and
the landmark net on G's output) once with respect to `w`, and pulls each `w`-cotangent back through E_attr + M with
the same `jax.vjp` (the adversarial update costs one extra backward pass through E_attr + M only).

`step` composes named parts, in this order: `identity_targets` (the fixed targets, no gradient), `encode` under
`jax.vjp` (w and its pull-back), `main_loss` (the non-adversarial loss as a function of w) and the main Adam update,
then `adversarial_update` or `skip_adversarial`, then `apply_updates` (the next `TrainState`).

The adversarial half runs under `jax.lax.cond` on `step % adversarial_every == 0`: one compiled program (the heavy
non-adversarial part is compiled once, not twice as with two step variants, which matters for the CPU smoke run),
and only the taken branch executes. Skipped steps leave D_W, both adversarial Adam states and their step counts
untouched, exactly as the original, which only calls those optimisers on adversarial steps.

The train state is a `flax.struct` dataclass (a pytree keyed by field name), so jit shardings, donation and Orbax
see the same tree, and the same checkpoint paths (`params/...`, `constants/...`, `opt/main/...`), as a dict with
those keys: `checkpoints.restore_inference` reads `params` and `constants` out of a checkpoint by name.

Sharding: a 1-D mesh with axis `data`; the batch is split along it, the parameters, optimiser states and frozen
networks are replicated. Under `jax.jit` with these shardings the losses are means over the *global* batch, so one
device, eight devices and several hosts compute the same step. The train state is donated.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from disentangle_jax import losses
from disentangle_jax import model as model_lib

ENCODER = ("attr_encoder", "mapper")
ADVERSARIAL_METRICS = (
  "loss/generator_adversarial",
  "loss/discriminator",
  "loss/r1",
  "d/real_logit",
  "d/fake_logit",
  "grad_norm/adversarial",
  "grad_norm/discriminator",
)
Batch = dict[str, jax.Array]
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class OptStates:
  """The three Adam states (field names are checkpoint paths: `opt/main/...`)."""

  main: Any  # E_attr + M, non-adversarial loss
  adversarial: Any  # E_attr + M, adversarial loss
  discriminator: Any  # D_W


@flax.struct.dataclass
class TrainState:
  """Step, trainable parameters, their constant non-parameter state, three optimiser states.

  The field names are the checkpoint's top-level keys; renaming one changes the on-disk layout.
  """

  step: jax.Array  # int32 scalar: the number of steps taken
  params: dict[str, Any]  # {"attr_encoder", "mapper", "discriminator": nnx.State of nnx.Param}
  constants: dict[str, Any]  # the same modules' other state (E_attr's BatchNorm statistics): never updated
  opt: OptStates


@dataclasses.dataclass(frozen=True)
class LossWeights:
  """`config.loss` as floats (read once, outside the traced step)."""

  identity: float
  landmarks: float
  reconstruction: float
  adversarial: float
  r1_gamma: float
  ms_ssim: float  # MS-SSIM's share of the reconstruction loss
  l1: float  # masked L1's share of the reconstruction loss
  mask_sigma: float  # the inverse-Gaussian L1 mask's width, in pixels at 256 px
  l1_scale: float = 1.0  # the per-image L1 mean times this: the per-device batch size for a sum (`l1_reduction`)

  @classmethod
  def from_config(cls, loss_cfg: ml_collections.ConfigDict, per_device_batch_size: int = 1) -> LossWeights:
    """`loss.l1_reduction` "mean" (default) averages the masked L1 over the batch like every other term; "sum" is
    the original's Keras `MeanAbsoluteError(Reduction.SUM)`: a sum over each device's batch (the original's whole
    batch of 6 on its one GPU), averaged over devices, i.e. `per_device_batch_size` x the mean."""
    reduction = str(loss_cfg.get("l1_reduction", "mean"))
    if reduction not in ("mean", "sum"):
      raise ValueError(f"config.loss.l1_reduction must be 'mean' or 'sum', got {reduction!r}")
    return cls(
      identity=float(loss_cfg.identity),
      landmarks=float(loss_cfg.landmarks),
      reconstruction=float(loss_cfg.reconstruction),
      adversarial=float(loss_cfg.adversarial),
      r1_gamma=float(loss_cfg.r1_gamma),
      ms_ssim=float(loss_cfg.ms_ssim_weight),
      l1=float(loss_cfg.l1_weight),
      mask_sigma=float(loss_cfg.mask_sigma),
      l1_scale=float(per_device_batch_size) if reduction == "sum" else 1.0,
    )


@dataclasses.dataclass(frozen=True)
class Optimizers:
  main: optax.GradientTransformation
  adversarial: optax.GradientTransformation
  discriminator: optax.GradientTransformation
  learning_rates: dict[str, float]


def keras_adam(
  learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-7
) -> optax.GradientTransformation:
  """Adam as Keras computes it (tf.keras `Adam`, TF 2.0's `ResourceApplyAdam` and tf_keras 2.21 alike):

      m += (g - m) (1 - b1);  v += (g^2 - v) (1 - b2)
      update = -lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

  i.e. `m_hat / (sqrt(v_hat) + eps / sqrt(1 - b2^t))`: Keras adds eps to the *uncorrected* sqrt(v), so its
  effective epsilon starts sqrt(1000) ~ 32x larger than optax's (`optax.adam` adds eps to sqrt(v_hat); its
  `eps_root` sits under the root and cannot express this). It matters where gradients are near eps (the first
  steps, small loss terms). The state is optax's `ScaleByAdamState` (count, mu, nu).
  """

  def init(params):
    zeros = lambda p: jnp.zeros_like(p)  # noqa: E731
    return optax.ScaleByAdamState(
      count=jnp.zeros([], jnp.int32), mu=jax.tree.map(zeros, params), nu=jax.tree.map(zeros, params)
    )

  def update(grads, state, params=None):
    del params
    mu = jax.tree.map(lambda m, g: m + (g - m) * (1.0 - b1), state.mu, grads)
    nu = jax.tree.map(lambda v, g: v + (jnp.square(g) - v) * (1.0 - b2), state.nu, grads)
    count = optax.safe_increment(state.count)
    t = count.astype(jnp.float32)
    alpha = learning_rate * jnp.sqrt(1.0 - jnp.power(jnp.float32(b2), t)) / (1.0 - jnp.power(jnp.float32(b1), t))
    updates = jax.tree.map(lambda m, v: -(m * alpha.astype(m.dtype)) / (jnp.sqrt(v) + eps), mu, nu)
    return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init, update)


def scale_subtree(tx: optax.GradientTransformation, name: str, scale: float) -> optax.GradientTransformation:
  """`tx` with the updates of `params[name]` multiplied by `scale` (its state unchanged: the same checkpoint layout).

  For Adam this is the learning rate of that subtree times `scale`, the moment estimates being per parameter.
  """
  if scale == 1.0:
    return tx

  def update(grads, state, params=None):
    updates, state = tx.update(grads, state, params)
    return {**updates, name: jax.tree.map(lambda u: u * scale, updates[name])}, state

  return optax.GradientTransformation(tx.init, update)


def make_optimizers(optim: ml_collections.ConfigDict) -> Optimizers:
  """The original's three Adam groups (`optim.eps` 1e-7: Keras' default, which the original used).

  `optim.adam` picks the update rule: "keras" (the original's, `keras_adam`) or "optax" (`optax.adam`, default).
  `optim.attr_encoder_lr_scale` (default 1, the original's single rate) scales E_attr's rate in both of its updates
  (main and adversarial) against M's: a start point worth keeping (ImageNet, the toy world's) changes more slowly
  than the freshly initialised M that reads it.
  """
  eps = float(optim.eps)
  attr_scale = float(optim.get("attr_encoder_lr_scale", 1.0))
  lrs = {
    "main": float(optim.lr),
    "adversarial": float(optim.lr) * float(optim.adversarial_lr_scale),
    "discriminator": float(optim.lr) * float(optim.discriminator_lr_scale),
  }
  kind = str(optim.get("adam", "optax"))
  if kind not in ("keras", "optax"):
    raise ValueError(f"config.optim.adam must be 'keras' or 'optax', got {kind!r}")
  rule = keras_adam if kind == "keras" else optax.adam
  adam = lambda lr: rule(lr, b1=float(optim.b1), b2=float(optim.b2), eps=eps)  # noqa: E731
  encoder = lambda lr: scale_subtree(adam(lr), "attr_encoder", attr_scale)  # noqa: E731
  return Optimizers(encoder(lrs["main"]), encoder(lrs["adversarial"]), adam(lrs["discriminator"]), lrs)


@dataclasses.dataclass(frozen=True)
class Graphs:
  """The static halves of the split modules (hashable, closed over by the jitted step)."""

  frozen: Any
  trainable: dict[str, Any]


def split_model(model: model_lib.Model) -> tuple[Graphs, Any, dict[str, Any], dict[str, Any]]:
  """-> (graphs, frozen state, trainable params {name: State}, trainable non-parameter state {name: State})."""
  frozen_graph, frozen_state = nnx.split(model.frozen)
  graphs, params, rest = {}, {}, {}
  for name in ("attr_encoder", "mapper", "discriminator"):
    graphs[name], params[name], rest[name] = nnx.split(getattr(model.trainable, name), nnx.Param, ...)
  return Graphs(frozen_graph, graphs), frozen_state, params, rest


def init_state(params: dict[str, Any], rest: dict[str, Any], optimizers: Optimizers) -> TrainState:
  """The state before the first step: step 0, the initial parameters and constants, fresh Adam states."""
  encoder = {k: params[k] for k in ENCODER}
  return TrainState(
    step=jnp.zeros((), jnp.int32),
    params=params,
    constants=rest,
    opt=OptStates(
      main=optimizers.main.init(encoder),
      adversarial=optimizers.adversarial.init(encoder),
      discriminator=optimizers.discriminator.init(params["discriminator"]),
    ),
  )


# ----------------------------------------------------------------------------------------------------------------
# The step's parts, in the order `step` runs them


def _module(graphs: Graphs, name: str, params: Any, constants: dict[str, Any]) -> nnx.Module:
  """The trainable module `name` rebuilt from its graph, `params` and its constants."""
  return nnx.merge(graphs.trainable[name], params, constants[name])


def identity_targets(frozen: model_lib.Frozen, spec: model_lib.Spec, batch: Batch) -> tuple[jax.Array, jax.Array]:
  """(E_id(I_id), landmarks of I_attr): what G(w) is compared with; constants of the step (no gradient)."""
  id_embedding = jax.lax.stop_gradient(model_lib.embed_identity(frozen, spec, batch["id"]))
  target_landmarks = jax.lax.stop_gradient(model_lib.detect_landmarks(frozen, spec, batch["attr"]))
  return id_embedding, target_landmarks


def encode(
  graphs: Graphs,
  constants: dict[str, Any],
  encoder_params: dict[str, Any],
  id_embedding: jax.Array,
  attr_images: jax.Array,
) -> jax.Array:
  """w = M(E_id(I_id), E_attr(I_attr)) as a function of E_attr + M's parameters: the step keeps its `jax.vjp` so
  that every w-cotangent (non-adversarial and adversarial) reaches those parameters."""
  trainable = model_lib.Trainable(
    _module(graphs, "attr_encoder", encoder_params["attr_encoder"], constants),
    _module(graphs, "mapper", encoder_params["mapper"], constants),
    None,
  )
  return model_lib.encode(trainable, id_embedding, attr_images)


def main_loss(
  w: jax.Array,
  *,
  frozen: model_lib.Frozen,
  spec: model_lib.Spec,
  weights: LossWeights,
  mask: jax.Array,
  id_embedding: jax.Array,
  target_landmarks: jax.Array,
  attr_images: jax.Array,
  same: jax.Array,
) -> tuple[jax.Array, Metrics]:
  """(total, terms) of the non-adversarial loss of G(w): differentiated with respect to w, not the parameters.

  Identity against `id_embedding`, landmarks against `target_landmarks` (the jaw left out), and reconstruction of
  `attr_images`, which counts only when `same` is 1 (a same-image batch, I_id = I_attr).
  """
  out = model_lib.render(frozen, spec, w)
  id_loss = losses.identity_loss(id_embedding, model_lib.embed_identity(frozen, spec, out))
  lnd_loss = losses.landmark_loss(target_landmarks, model_lib.detect_landmarks(frozen, spec, out), spec.landmark_keep)
  rec, sim = losses.reconstruction_loss(
    attr_images, out, mask, ms_ssim_weight=weights.ms_ssim, l1_weight=weights.l1 * weights.l1_scale
  )
  rec_loss = jnp.mean(rec) * same
  total = weights.identity * id_loss + weights.landmarks * lnd_loss + weights.reconstruction * rec_loss
  terms = {
    "loss/identity": id_loss,
    "loss/landmarks": lnd_loss,
    "loss/reconstruction": rec_loss,
    "loss/ms_ssim": jnp.mean(sim),
    "loss/l1": jnp.mean(losses.masked_l1(attr_images, out, mask)) * weights.l1_scale,  # as reduced in the loss
    "loss/total": total,
  }
  return total, terms


class AdversarialUpdate(NamedTuple):
  """What the adversarial half of a step produces (the same structure whether it ran or was skipped)."""

  encoder_updates: Any  # Adam(0.1 lr)'s updates of E_attr + M (zeros on skipped steps)
  adversarial_opt: Any  # that Adam's next state
  discriminator: Any  # D_W's next parameters
  discriminator_opt: Any  # D_W's Adam's next state
  metrics: Metrics  # ADVERSARIAL_METRICS (zeros on skipped steps)


def discriminate(graphs: Graphs, constants: dict[str, Any], d_params: Any, w: jax.Array) -> jax.Array:
  """D_W's logits of `w` with parameters `d_params`."""
  return _module(graphs, "discriminator", d_params, constants)(w)


def discriminator_loss(
  d_params: Any, graphs: Graphs, constants: dict[str, Any], weights: LossWeights, real_w: jax.Array, fake_w: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, ...]]:
  """(logistic loss + R1 on real w, (logistic loss, R1, mean real logit, mean fake logit)) as a function of D_W.

  `fake_w` is the encoder's w, held constant: D_W's update does not reach E_attr + M.
  """
  real = discriminate(graphs, constants, d_params, real_w)
  fake = discriminate(graphs, constants, d_params, jax.lax.stop_gradient(fake_w))
  d_loss = weights.adversarial * losses.discriminator_loss(real, fake)
  r1 = losses.r1_penalty(lambda x: discriminate(graphs, constants, d_params, x), real_w, weights.r1_gamma)
  return d_loss + r1, (d_loss, r1, jnp.mean(real), jnp.mean(fake))


def adversarial_update(
  state: TrainState,
  encoder_params: dict[str, Any],
  w: jax.Array,
  pull_back: Callable[..., Any],
  real_w: jax.Array,
  *,
  graphs: Graphs,
  optimizers: Optimizers,
  weights: LossWeights,
) -> AdversarialUpdate:
  """The mapper's adversarial update and D_W's update, both from the step's current parameters.

  The non-saturating loss of D_W(w) is differentiated with respect to w and pulled back through E_attr + M with the
  step's `pull_back` (one backward pass through E_attr + M; G is not involved). D_W steps on `discriminator_loss`.
  """
  d_params = state.params["discriminator"]
  g_loss, g_cotangent = jax.value_and_grad(
    lambda w: (
      weights.adversarial * losses.generator_adversarial_loss(discriminate(graphs, state.constants, d_params, w))
    )
  )(w)
  (adv_grads,) = pull_back(g_cotangent)
  adv_updates, adv_opt = optimizers.adversarial.update(adv_grads, state.opt.adversarial, encoder_params)

  (_, (d_loss, r1, real, fake)), d_grads = jax.value_and_grad(discriminator_loss, has_aux=True)(
    d_params, graphs, state.constants, weights, real_w, w
  )
  d_updates, d_opt = optimizers.discriminator.update(d_grads, state.opt.discriminator, d_params)
  new_d = optax.apply_updates(d_params, d_updates)
  metrics = {
    "loss/generator_adversarial": g_loss,
    "loss/discriminator": d_loss,
    "loss/r1": r1,
    "d/real_logit": real,
    "d/fake_logit": fake,
    "grad_norm/adversarial": optax.tree.norm(adv_grads),
    "grad_norm/discriminator": optax.tree.norm(d_grads),
  }
  return AdversarialUpdate(adv_updates, adv_opt, new_d, d_opt, metrics)


def skip_adversarial(state: TrainState, encoder_params: dict[str, Any]) -> AdversarialUpdate:
  """A step without the adversarial half: no encoder update, D_W and both adversarial Adam states unchanged."""
  zero = jnp.zeros((), jnp.float32)
  return AdversarialUpdate(
    jax.tree.map(jnp.zeros_like, encoder_params),
    state.opt.adversarial,
    state.params["discriminator"],
    state.opt.discriminator,
    {k: zero for k in ADVERSARIAL_METRICS},
  )


def apply_updates(
  state: TrainState, encoder_params: dict[str, Any], main_updates: Any, main_opt: Any, adversarial: AdversarialUpdate
) -> TrainState:
  """The next state: the non-adversarial update applied first, then the adversarial one (both computed at the
  current parameters, as the original does)."""
  new_encoder = optax.apply_updates(optax.apply_updates(encoder_params, main_updates), adversarial.encoder_updates)
  return TrainState(
    step=state.step + 1,
    params={**new_encoder, "discriminator": adversarial.discriminator},
    constants=state.constants,
    opt=OptStates(main=main_opt, adversarial=adversarial.adversarial_opt, discriminator=adversarial.discriminator_opt),
  )


def step(
  state: TrainState,
  frozen_state: Any,
  batch: Batch,
  *,
  graphs: Graphs,
  spec: model_lib.Spec,
  optimizers: Optimizers,
  weights: LossWeights,
  mask: jax.Array,
  adversarial_every: int,
) -> tuple[TrainState, Metrics]:
  """One training step `(state, frozen_state, batch) -> (state, metrics)` (the keywords are fixed per run)."""
  frozen = nnx.merge(graphs.frozen, frozen_state)
  attr_images = batch["attr"]
  real_w = batch["w_real"].astype(jnp.float32)
  same = batch["same"].astype(jnp.float32)  # scalar: 1 on same-image steps (reconstruction on), 0 on cross ones
  id_embedding, target_landmarks = identity_targets(frozen, spec, batch)

  encoder_params = {k: state.params[k] for k in ENCODER}
  w, pull_back = jax.vjp(lambda p: encode(graphs, state.constants, p, id_embedding, attr_images), encoder_params)

  loss_of_w = functools.partial(
    main_loss,
    frozen=frozen,
    spec=spec,
    weights=weights,
    mask=mask,
    id_embedding=id_embedding,
    target_landmarks=target_landmarks,
    attr_images=attr_images,
    same=same,
  )
  (_, metrics), w_cotangent = jax.value_and_grad(loss_of_w, has_aux=True)(w)
  (main_grads,) = pull_back(w_cotangent)
  main_updates, main_opt = optimizers.main.update(main_grads, state.opt.main, encoder_params)
  metrics["grad_norm/main"] = optax.tree.norm(main_grads)

  adversarial = jax.lax.cond(
    state.step % adversarial_every == 0,
    lambda _: adversarial_update(
      state, encoder_params, w, pull_back, real_w, graphs=graphs, optimizers=optimizers, weights=weights
    ),
    lambda _: skip_adversarial(state, encoder_params),
    None,
  )
  metrics.update(adversarial.metrics)
  return apply_updates(state, encoder_params, main_updates, main_opt, adversarial), metrics


def make_step_fn(
  graphs: Graphs,
  spec: model_lib.Spec,
  loss_cfg: ml_collections.ConfigDict,
  optimizers: Optimizers,
  adversarial_every: int,
  per_device_batch_size: int = 1,
) -> Callable[..., tuple[TrainState, Metrics]]:
  """The un-jitted step `(state, frozen_state, batch) -> (state, metrics)`: `step` with this run's fixed parts bound
  (see `make_train_step`; `per_device_batch_size` matters only to `loss.l1_reduction="sum"`)."""
  weights = LossWeights.from_config(loss_cfg, per_device_batch_size)
  mask = jnp.asarray(losses.inverse_gaussian_mask(spec.resolution, weights.mask_sigma))
  every = int(adversarial_every)
  if every < 1:
    raise ValueError(f"config.optim.adversarial_every must be >= 1, got {every}")
  return functools.partial(
    step, graphs=graphs, spec=spec, optimizers=optimizers, weights=weights, mask=mask, adversarial_every=every
  )


# ----------------------------------------------------------------------------------------------------------------
# Mesh and sharding


def make_mesh(devices: Any = None) -> Mesh:
  """A 1-D mesh over every device of every process (or `devices`), axis `data`."""
  devices = jax.devices() if devices is None else list(devices)
  # Auto axes: the compiler propagates the batch sharding through the step from the input and output shardings.
  return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Places identical host values on every device of `mesh` (works with several processes: no transfer between them)."""
  sharding = NamedSharding(mesh, P())

  def put(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(put, tree)


def batch_shardings(mesh: Mesh) -> dict[str, NamedSharding]:
  """The step's batch: images and real w split over `data`; the same-image flag a replicated scalar."""
  split = NamedSharding(mesh, P("data"))
  return {"id": split, "attr": split, "w_real": split, "same": NamedSharding(mesh, P())}


def step_batch(batch: dict[str, Any], mesh: Mesh) -> dict[str, Any]:
  """The pipeline's batch (`disentangle_jax.data.pipeline`) as the step takes it (its Python flag made an array)."""
  return {
    "id": batch["id"],
    "attr": batch["attr"],
    "w_real": batch["w_real"],
    "same": replicate(np.float32(bool(batch["same"])), mesh),
  }


def make_train_step(
  graphs: Graphs, spec: model_lib.Spec, config: ml_collections.ConfigDict, optimizers: Optimizers, mesh: Mesh
) -> Callable[..., tuple[TrainState, Metrics]]:
  """`train_step(state, frozen_state, batch) -> (state, metrics)`, jitted over `mesh` with the state donated."""
  step_fn = make_step_fn(
    graphs, spec, config.loss, optimizers, config.optim.adversarial_every, int(config.per_device_batch_size)
  )
  replicated = NamedSharding(mesh, P())
  return jax.jit(
    step_fn,
    in_shardings=(replicated, replicated, batch_shardings(mesh)),
    out_shardings=(replicated, replicated),
    donate_argnums=(0,),
  )
