"""FID from Inception pool3 features already computed, through `disentangle_jax.fid` (statistics, Frechet distance).

The two functions of `disentangle_jax.fid` come in as arguments (`nets.MetricNets.statistics` / `.frechet`), so the
table can be tested with any implementation of them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Statistics = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Frechet = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], float]


def fid(
  features: np.ndarray,
  reference: tuple[np.ndarray, np.ndarray] | np.ndarray,
  statistics: Statistics,
  frechet: Frechet,
) -> float:
  """FID between `features` [N, F] and `reference`: features [M, F] or their (mu, sigma)."""
  features = np.asarray(features, np.float64)
  if len(features) < 2:
    raise ValueError(f"FID needs at least 2 images, got {len(features)}")
  if not isinstance(reference, tuple):
    reference = statistics(np.asarray(reference, np.float64))
  mu, sigma = statistics(features)
  return float(frechet(mu, sigma, *reference))
