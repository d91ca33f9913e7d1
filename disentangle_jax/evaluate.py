"""Evaluation on the validation split: the metrics the original trainer logs during training.

For every validation batch of identity images `I_id` and (different) attribute images `I_attr`:
  - swapping, `out = G(M(E_id(I_id), E_attr(I_attr)))` with `out` clipped to the image range as the original does:
      similarity/id_to_out    cos(E_id(I_id), E_id(out))       identity kept: higher is better
      similarity/attr_to_out  cos(E_id(I_attr), E_id(out))     attribute image's identity leaking in: lower is better
      similarity/id_to_attr   cos(E_id(I_id), E_id(I_attr))    the baseline between the two inputs
      similarity/score        id_to_out - attr_to_out           the original's disentanglement score (it logs Keras'
                                                                negated cosines, attr - id of those), higher is better
      landmarks/distance      mean Euclidean distance of all landmarks of I_attr and out, in the landmark net's pixels
      landmarks/mse           the landmark loss's own measure: mean squared coordinate error without the jaw
  - reconstruction, `rec = G(M(E_id(I_id), E_attr(I_id)))` against `I_id`, in [0, 1] units:
      reconstruction/mse, reconstruction/psnr (max 1), reconstruction/ms_ssim, reconstruction/id_similarity
The dataset holds generated faces only, so "real" reconstruction (the original's optional `test_real_attr`) needs a
folder of real aligned faces and is not part of the periodic evaluation.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from disentangle_jax import losses
from disentangle_jax import model as model_lib


def _cosine(a: jax.Array, b: jax.Array) -> jax.Array:
  a = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
  b = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
  return jnp.sum(a * b, axis=-1)


def trainable_from_state(graphs: Any, state: Any) -> model_lib.Trainable:
  """Rebuilds the trainable modules from a `train_step.TrainState`."""
  parts = {
    k: nnx.merge(graphs.trainable[k], state.params[k], state.constants[k])
    for k in ("attr_encoder", "mapper", "discriminator")
  }
  return model_lib.Trainable(**parts)


def batch_metrics(
  frozen: model_lib.Frozen,
  trainable: model_lib.Trainable,
  spec: model_lib.Spec,
  id_images: jax.Array,
  attr_images: jax.Array,
) -> dict[str, jax.Array]:
  """Per-example metrics [B] of one batch (see the module docstring)."""
  out, _ = model_lib.swap(frozen, trainable, spec, id_images, attr_images)
  out = jnp.clip(out, -1.0, 1.0)
  e_id = model_lib.embed_identity(frozen, spec, id_images)
  e_attr = model_lib.embed_identity(frozen, spec, attr_images)
  e_out = model_lib.embed_identity(frozen, spec, out)
  lnd_attr = model_lib.detect_landmarks(frozen, spec, attr_images)
  lnd_out = model_lib.detect_landmarks(frozen, spec, out)
  keep = np.asarray(spec.landmark_keep, np.int32)
  id_to_out, attr_to_out = _cosine(e_id, e_out), _cosine(e_attr, e_out)

  rec, _ = model_lib.swap(frozen, trainable, spec, id_images, id_images)
  rec = jnp.clip(rec, -1.0, 1.0)
  target01, rec01 = losses.to_unit_range(id_images), losses.to_unit_range(rec)
  mse = jnp.mean(jnp.square(target01 - rec01), axis=(1, 2, 3))
  ms = losses.ms_ssim(target01, rec01, filter_size=losses.fit_filter_size(spec.resolution))
  return {
    "similarity/id_to_out": id_to_out,
    "similarity/attr_to_out": attr_to_out,
    "similarity/id_to_attr": _cosine(e_id, e_attr),
    "similarity/score": id_to_out - attr_to_out,
    "landmarks/distance": jnp.mean(jnp.linalg.norm(lnd_attr - lnd_out, axis=-1), axis=-1),
    "landmarks/mse": jnp.mean(jnp.square(lnd_attr[:, keep] - lnd_out[:, keep]), axis=(1, 2)),
    "reconstruction/mse": mse,
    "reconstruction/psnr": -10.0 * jnp.log10(jnp.maximum(mse, 1e-10)),
    "reconstruction/ms_ssim": ms,
    "reconstruction/id_similarity": _cosine(e_id, model_lib.embed_identity(frozen, spec, rec)),
  }


def make_eval_step(graphs: Any, spec: model_lib.Spec, mesh: Mesh) -> Callable[..., dict[str, jax.Array]]:
  """`eval_step(state, frozen_state, id_images, attr_images) -> {metric: sum over the batch}` (replicated)."""

  def step(state, frozen_state, id_images, attr_images):
    frozen = nnx.merge(graphs.frozen, frozen_state)
    per_example = batch_metrics(frozen, trainable_from_state(graphs, state), spec, id_images, attr_images)
    return {k: jnp.sum(v) for k, v in per_example.items()}

  replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  return jax.jit(step, in_shardings=(replicated, replicated, split, split), out_shardings=replicated)


def evaluate(
  eval_step: Callable[..., dict[str, jax.Array]],
  state: dict[str, Any],
  frozen_state: Any,
  batches: Iterable[dict[str, Any]],
) -> dict[str, float]:
  """Means of every metric over the examples of `batches` (dicts with global "id" and "attr" arrays)."""
  totals: dict[str, float] = {}
  count = 0
  for batch in batches:
    sums = jax.device_get(eval_step(state, frozen_state, batch["id"], batch["attr"]))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
    count += int(batch["id"].shape[0])
  if not count:
    raise ValueError("evaluate: no validation batches")
  return {k: v / count for k, v in totals.items()}
