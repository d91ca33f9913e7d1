"""The exact score of a model trained in the toy world: how well a swap keeps identity and attributes apart.

Every w the toy generator reads has known factors (`generator.factors`), and the model's own output is a w
(`encode` returns M's w), so no network judges the result: for held-out pairs (I_id, I_attr) rendered from fresh z,
the identity factors of M's w are compared with I_id's and its attribute factors with I_attr's.

For each group (identity, attribute):
- `r2`: the coefficient of determination of the output's factors against the right source's, per factor over the
  pairs, averaged over factors (1: exact, 0: no better than predicting the mean, negative: worse); each factor's
  own is `r2/<factor>` (`identity/r2/eye_colour`), which shows which factor a low mean comes from.
- `accuracy`: the fraction of pairs whose output factors (each scaled to its range) lie closer to the right source
  than to the other one; 0.5 is chance, and a model that copies either input scores 1 on one group and 0 on the other.
Plus `psnr`: reconstruction PSNR (dB, pixels in [-1, 1]) of `swap(I, I)` against I.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from disentangle_jax.toy import generator as toy_lib
from disentangle_jax.toy import render

HELD_OUT_SEED = 2**31 - 1  # z seeds of the training data count up from 0; this stream never meets them
GROUPS = {"identity": render.IDENTITY, "attribute": render.ATTRIBUTE}


def r2_per_column(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
  """1 - SSE / SST of each column (a constant target column counts as 0 if missed, 1 if hit)."""
  sse = np.sum((predicted - target) ** 2, axis=0)
  sst = np.sum((target - target.mean(axis=0)) ** 2, axis=0)
  return np.where(sst > 0, 1.0 - sse / np.maximum(sst, 1e-30), (sse == 0).astype(np.float64))


def r2(predicted: np.ndarray, target: np.ndarray) -> float:
  """Mean over columns of `r2_per_column`."""
  return float(np.mean(r2_per_column(predicted, target)))


def closer_accuracy(predicted: np.ndarray, right: np.ndarray, other: np.ndarray) -> float:
  """Fraction of rows nearer (Euclidean) to `right` than to `other`."""
  return float(np.mean(np.linalg.norm(predicted - right, axis=1) < np.linalg.norm(predicted - other, axis=1)))


def score(
  model: Any, num_pairs: int = 256, batch_size: int = 64, truncation_psi: float = 1.0, seed: int = HELD_OUT_SEED
) -> dict[str, float]:
  """The toy-world score of `model` (an `InferenceModel` whose G is the toy generator) on `num_pairs` fresh pairs."""
  generator = model.frozen.generator
  if not isinstance(generator, toy_lib.Generator):
    raise TypeError(f"the toy score needs the toy generator; this model's G is a {type(generator).__name__}")
  rng = np.random.Generator(np.random.PCG64(seed))
  z = rng.standard_normal((2, num_pairs, generator.config.z_dim)).astype(np.float32)
  found: dict[str, list[np.ndarray]] = {"out": [], "id": [], "attr": []}
  squared_errors = []
  for start in range(0, num_pairs, batch_size):
    ws_id = toy_lib.mapping(generator, jnp.asarray(z[0, start : start + batch_size]), truncation_psi=truncation_psi)
    ws_attr = toy_lib.mapping(generator, jnp.asarray(z[1, start : start + batch_size]), truncation_psi=truncation_psi)
    id_images, attr_images = toy_lib.synthesis(generator, ws_id), toy_lib.synthesis(generator, ws_attr)
    _, w_out = model.encode(id_images, attr_images)
    for name, w in (("out", w_out), ("id", ws_id[:, 0]), ("attr", ws_attr[:, 0])):
      found[name].append(toy_lib.factors(generator, w))
    # swap(I, I) is G(w) of the pair (I, I): `encode` and `render` again, not `swap`, whose separate compiled
    # program (E_attr included) would add as much compile time as the whole score's arithmetic on a CPU.
    same = model.render(model.encode(attr_images, attr_images)[1])
    squared_errors.append(np.mean((np.asarray(same) - np.asarray(attr_images)) ** 2, axis=(1, 2, 3)))
  result: dict[str, float] = {}
  for group, table in GROUPS.items():
    out, of_id, of_attr = (
      render.normalised(np.concatenate([f[group] for f in found[k]]).astype(np.float64), table)
      for k in ("out", "id", "attr")
    )
    right, other = (of_id, of_attr) if group == "identity" else (of_attr, of_id)
    per_factor = r2_per_column(out, right)
    result[f"{group}/r2"] = float(np.mean(per_factor))
    result.update({f"{group}/r2/{name}": float(v) for (name, _, _), v in zip(table, per_factor)})
    result[f"{group}/accuracy"] = closer_accuracy(out, right, other)
  mse = np.concatenate(squared_errors)
  result["reconstruction/psnr"] = float(np.mean(10.0 * np.log10(4.0 / np.maximum(mse, 1e-12))))
  result["pairs"] = float(num_pairs)
  return result
