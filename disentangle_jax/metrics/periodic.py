"""ArcFace similarity and FID on a sample, for training's periodic evaluation (when `config.eval` names the weights).

Off unless `config.eval.arcface_weights` or `config.eval.fid_weights` is set, so existing configs train as before.
At each evaluation it swaps `config.eval.fid_samples` validation pairs (cross pairs: different identity and
attribute images) and logs
  eval/arcface/id_to_out, attr_to_out, id_to_attr   ArcFace cosines (`identity.similarities`)
  eval/fid                                          FID of those swaps against the identity images, which are the
                                                    generator's own samples (the dataset is rendered by G)
Each process measures its own rows of the batches; process 0's numbers are the ones written.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import ml_collections
import numpy as np
from absl import logging

from disentangle_jax import fid as fid_lib
from disentangle_jax.metrics import identity
from disentangle_jax.metrics import nets as nets_lib


class PaperMetrics:
  """`metrics(swap, batches)` -> the scalars above; `active` is False when no weights are configured."""

  def __init__(self, config: ml_collections.ConfigDict, factories: nets_lib.Factories | None = None):
    section = config.get("eval")
    arcface = section.get("arcface_weights") if section is not None else None
    fid = section.get("fid_weights") if section is not None else None
    self.samples = int(section.get("fid_samples", 256)) if section is not None else 0
    self.active = bool(arcface or fid)
    self.nets = nets_lib.MetricNets()
    if self.active:
      hints = {
        nets_lib.ARCFACE: "set config.eval.arcface_weights",
        nets_lib.FID: "set config.eval.fid_weights",
      }
      self.nets = nets_lib.build(arcface=arcface, fid_inception=fid, hints=hints, factories=factories)
      for group, why in self.nets.skipped.items():
        logging.warning("periodic evaluation: skipping %s: %s", group, why)

  def __call__(
    self,
    swap: Callable[[Any, Any], Any],
    batches: Iterable[dict[str, Any]],
    rows: Callable[[Any], np.ndarray] = np.asarray,
  ) -> dict[str, float]:
    """Scalars over up to `fid_samples` pairs of `batches` ({"id", "attr"} arrays; `rows` gives this process's)."""
    sims: dict[str, list[np.ndarray]] = {}
    out_feats, real_feats = [], []
    seen = 0
    for batch in batches:
      if seen >= self.samples:
        break
      out = swap(batch["id"], batch["attr"])
      ids, attrs, out = (np.clip(rows(x), -1.0, 1.0) for x in (batch["id"], batch["attr"], out))
      take = min(len(ids), self.samples - seen)
      ids, attrs, out = ids[:take], attrs[:take], out[:take]
      if self.nets.arcface is not None:
        embed = self.nets.arcface
        for k, v in identity.similarities(embed(ids), embed(attrs), embed(out)).items():
          sims.setdefault(k, []).append(v)
      if self.nets.inception is not None:
        out_feats.append(self.nets.pool3(out))
        real_feats.append(self.nets.pool3(ids))
      seen += take
    result = {f"arcface/{k}": float(np.mean(np.concatenate(v))) for k, v in sims.items()}
    if out_feats and seen >= 2:
      result["fid"] = fid_lib.distance(np.concatenate(out_feats), np.concatenate(real_feats))
    return result
