"""The train step: losses, gradients and the three Adam updates in one jitted, sharded function.

The original (`trainer.py`) computes every gradient from one forward pass at the current parameters and applies:
  1. Adam(lr)        to E_attr + M on identity + landmarks (+ reconstruction on same-image batches);
  2. Adam(0.1 lr)    to E_attr + M on the non-saturating adversarial loss through D_W      } every
  3. Adam(0.4 lr)    to D_W on its logistic loss + R1 on real w                              } other step
Everything after `w` depends on E_attr + M only through `w`, so the step differentiates the heavy part (G, E_id and
the landmark net on G's output) once with respect to `w`, and pulls each `w`-cotangent back through E_attr + M with
the same `jax.vjp` (the adversarial update costs one extra backward pass through E_attr + M only).

The adversarial half runs under `jax.lax.cond` on `step % adversarial_every == 0`: one compiled program (the heavy
non-adversarial part is compiled once, not twice as with two step variants, which matters for the CPU smoke run),
and only the taken branch executes. Skipped steps leave D_W, both adversarial Adam states and their step counts
untouched, exactly as the original, which only calls those optimisers on adversarial steps.

Sharding: a 1-D mesh with axis `data`; the batch is split along it, the parameters, optimiser states and frozen
networks are replicated. Under `jax.jit` with these shardings the losses are means over the *global* batch, so one
device, eight devices and several hosts compute the same step. The train state is donated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from disentangle_jax import losses
from disentangle_jax import model as model_lib

TrainState = dict[str, Any]
ENCODER = ("attr_encoder", "mapper")
ADVERSARIAL_METRICS = ("loss/generator_adversarial", "loss/discriminator", "loss/r1", "d/real_logit",
                       "d/fake_logit", "grad_norm/adversarial", "grad_norm/discriminator")


@dataclasses.dataclass(frozen=True)
class Optimizers:
  main: optax.GradientTransformation
  adversarial: optax.GradientTransformation
  discriminator: optax.GradientTransformation
  learning_rates: dict[str, float]


def make_optimizers(optim: ml_collections.ConfigDict) -> Optimizers:
  """The original's three Adam groups (`optim.eps` 1e-7: Keras' default, which the original used)."""
  eps = float(optim.eps)
  lrs = {"main": float(optim.lr), "adversarial": float(optim.lr) * float(optim.adversarial_lr_scale),
         "discriminator": float(optim.lr) * float(optim.discriminator_lr_scale)}
  adam = lambda lr: optax.adam(lr, b1=float(optim.b1), b2=float(optim.b2), eps=eps)
  return Optimizers(adam(lrs["main"]), adam(lrs["adversarial"]), adam(lrs["discriminator"]), lrs)


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
  """A plain dict: step, trainable parameters, their constant non-parameter state, three optimiser states."""
  encoder = {k: params[k] for k in ENCODER}
  return {
      "step": jnp.zeros((), jnp.int32),
      "params": params,
      "constants": rest,  # E_attr's BatchNorm statistics: used in inference mode, never updated
      "opt": {"main": optimizers.main.init(encoder), "adversarial": optimizers.adversarial.init(encoder),
              "discriminator": optimizers.discriminator.init(params["discriminator"])},
  }


def _zeros_like(tree: Any) -> Any:
  return jax.tree.map(jnp.zeros_like, tree)


def make_step_fn(graphs: Graphs, spec: model_lib.Spec, loss_cfg: ml_collections.ConfigDict,
                 optimizers: Optimizers, adversarial_every: int) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
  """The un-jitted step `(state, frozen_state, batch) -> (state, metrics)`; see `make_train_step`."""
  mask = jnp.asarray(losses.inverse_gaussian_mask(spec.resolution, float(loss_cfg.mask_sigma)))
  w_id, w_lnd, w_rec = float(loss_cfg.identity), float(loss_cfg.landmarks), float(loss_cfg.reconstruction)
  w_adv, gamma = float(loss_cfg.adversarial), float(loss_cfg.r1_gamma)
  ms_w, l1_w = float(loss_cfg.ms_ssim_weight), float(loss_cfg.l1_weight)
  keep = spec.landmark_keep
  every = int(adversarial_every)
  if every < 1:
    raise ValueError(f"config.optim.adversarial_every must be >= 1, got {every}")

  def merge(name: str, params: Any, constants: dict[str, Any]) -> nnx.Module:
    return nnx.merge(graphs.trainable[name], params, constants[name])

  def step_fn(state: TrainState, frozen_state: Any, batch: dict[str, jax.Array]):
    frozen = nnx.merge(graphs.frozen, frozen_state)
    params, constants = state["params"], state["constants"]
    id_images, attr_images = batch["id"], batch["attr"]
    real_w = batch["w_real"].astype(jnp.float32)
    same = batch["same"].astype(jnp.float32)  # scalar: 1 on same-image steps (reconstruction on), 0 on cross ones

    # ---- fixed targets: identity of I_id, landmarks of I_attr (no gradient)
    id_embedding = jax.lax.stop_gradient(model_lib.embed_identity(frozen, spec, id_images))
    target_landmarks = jax.lax.stop_gradient(model_lib.detect_landmarks(frozen, spec, attr_images))

    # ---- E_attr + M -> w, kept as a vjp so every w-cotangent reaches their parameters
    def encode(encoder_params):
      trainable = model_lib.Trainable(merge("attr_encoder", encoder_params["attr_encoder"], constants),
                                      merge("mapper", encoder_params["mapper"], constants), None)
      return model_lib.encode(trainable, id_embedding, attr_images)

    encoder_params = {k: params[k] for k in ENCODER}
    w, pull_back = jax.vjp(encode, encoder_params)

    # ---- the non-adversarial loss, differentiated with respect to w
    def main_loss(w):
      out = model_lib.render(frozen, spec, w)
      id_loss = losses.identity_loss(id_embedding, model_lib.embed_identity(frozen, spec, out))
      lnd_loss = losses.landmark_loss(target_landmarks, model_lib.detect_landmarks(frozen, spec, out), keep)
      rec, sim = losses.reconstruction_loss(attr_images, out, mask, ms_ssim_weight=ms_w, l1_weight=l1_w)
      rec_loss = jnp.mean(rec) * same
      total = w_id * id_loss + w_lnd * lnd_loss + w_rec * rec_loss
      terms = {"loss/identity": id_loss, "loss/landmarks": lnd_loss, "loss/reconstruction": rec_loss,
               "loss/ms_ssim": jnp.mean(sim), "loss/total": total}
      return total, terms

    (_, metrics), w_cotangent = jax.value_and_grad(main_loss, has_aux=True)(w)
    (main_grads,) = pull_back(w_cotangent)
    main_updates, main_opt = optimizers.main.update(main_grads, state["opt"]["main"], encoder_params)
    metrics["grad_norm/main"] = optax.tree.norm(main_grads)

    # ---- every `adversarial_every` steps: D_W's update and the mapper's adversarial update
    def discriminate(d_params, w):
      return merge("discriminator", d_params, constants)(w)

    def adversarial(_):
      d_params = params["discriminator"]
      g_loss, g_cotangent = jax.value_and_grad(
          lambda w: w_adv * losses.generator_adversarial_loss(discriminate(d_params, w)))(w)
      (adv_grads,) = pull_back(g_cotangent)
      adv_updates, adv_opt = optimizers.adversarial.update(adv_grads, state["opt"]["adversarial"], encoder_params)

      def d_loss_fn(d_params):
        real = discriminate(d_params, real_w)
        fake = discriminate(d_params, jax.lax.stop_gradient(w))
        d_loss = w_adv * losses.discriminator_loss(real, fake)
        r1 = losses.r1_penalty(lambda x: discriminate(d_params, x), real_w, gamma)
        return d_loss + r1, (d_loss, r1, jnp.mean(real), jnp.mean(fake))

      (_, (d_loss, r1, real, fake)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(d_params)
      d_updates, d_opt = optimizers.discriminator.update(d_grads, state["opt"]["discriminator"], d_params)
      new_d = optax.apply_updates(d_params, d_updates)
      adv_metrics = {"loss/generator_adversarial": g_loss, "loss/discriminator": d_loss, "loss/r1": r1,
                     "d/real_logit": real, "d/fake_logit": fake, "grad_norm/adversarial": optax.tree.norm(adv_grads),
                     "grad_norm/discriminator": optax.tree.norm(d_grads)}
      return adv_updates, adv_opt, new_d, d_opt, adv_metrics

    def skip(_):
      zero = jnp.zeros((), jnp.float32)
      return (_zeros_like(encoder_params), state["opt"]["adversarial"], params["discriminator"],
              state["opt"]["discriminator"], {k: zero for k in ADVERSARIAL_METRICS})

    adv_updates, adv_opt, new_d, d_opt, adv_metrics = jax.lax.cond(
        state["step"] % every == 0, adversarial, skip, None)
    metrics.update(adv_metrics)

    # ---- apply: the non-adversarial update first, then the adversarial one (both from the same gradients' point)
    new_encoder = optax.apply_updates(optax.apply_updates(encoder_params, main_updates), adv_updates)
    new_state = {
        "step": state["step"] + 1,
        "params": {**new_encoder, "discriminator": new_d},
        "constants": constants,
        "opt": {"main": main_opt, "adversarial": adv_opt, "discriminator": d_opt},
    }
    return new_state, metrics

  return step_fn


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
  return {"id": batch["id"], "attr": batch["attr"], "w_real": batch["w_real"],
          "same": replicate(np.float32(bool(batch["same"])), mesh)}


def make_train_step(graphs: Graphs, spec: model_lib.Spec, config: ml_collections.ConfigDict, optimizers: Optimizers,
                    mesh: Mesh) -> Callable[..., tuple[TrainState, dict[str, Any]]]:
  """`train_step(state, frozen_state, batch) -> (state, metrics)`, jitted over `mesh` with the state donated."""
  step_fn = make_step_fn(graphs, spec, config.loss, optimizers, config.optim.adversarial_every)
  replicated = NamedSharding(mesh, P())
  return jax.jit(step_fn, in_shardings=(replicated, replicated, batch_shardings(mesh)),
                 out_shardings=(replicated, replicated), donate_argnums=(0,))
