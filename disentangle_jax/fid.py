"""Frechet Inception Distance: pool3 statistics of image sets, their Frechet distance, and a cache of statistics.

FID compares two image sets through the mean and covariance of their FID-Inception pool3 features
(`disentangle_jax.third_party.fid_inception`): `||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`. Everything here is
float64 numpy, as in pytorch-fid, whose `calculate_frechet_distance` this reproduces (same square root, same
`eps` retry when the root of the product is not finite, same tolerance for a complex root); the test checks it
against pytorch-fid's own function on shared features.

The statistics of a folder of real faces cost a full InceptionV3 pass over every image and change only when the
folder or the weights change, so `folder_statistics` keeps them in a small `.npz` cache keyed by the files' names,
sizes and modification times, the weights' fingerprint and how the images were read. Other image sets (a dataset
split, the generator's samples) use `cached_statistics` with a key of their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import warnings
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from scipy import linalg

from disentangle_jax import errors

EPS = 1e-6  # added to both covariances' diagonals when the square root of their product is not finite
IMAG_ATOL = 1e-3  # how far from real the root's diagonal may be before the distance is refused
CACHE_VERSION = 1  # part of every cache key: bump it when what a statistic means changes


class FIDError(errors.UserError, ValueError):
  """Statistics that cannot give a Frechet distance (mismatched sizes, too few samples, a far-from-real root)."""


# --- statistics ---------------------------------------------------------------------------------------------------


def statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
  """(mean [D], unbiased covariance [D, D]) of features [N, D], in float64 (pytorch-fid's `mu`, `sigma`)."""
  x = np.asarray(features, np.float64)
  if x.ndim != 2 or x.shape[0] < 2:
    raise FIDError(f"statistics need features [N >= 2, D], got shape {x.shape}")
  return x.mean(axis=0), np.cov(x, rowvar=False)


class RunningStatistics:
  """`statistics` of features that arrive in batches, without keeping them (50k x 2048 would be 800 MB).

  Sums are taken around the first batch's mean, so the covariance keeps its precision when the mean is large
  compared with the spread (pool3 features are non-negative).
  """

  def __init__(self):
    self.count = 0
    self._shift: np.ndarray | None = None
    self._sum: np.ndarray | None = None
    self._outer: np.ndarray | None = None

  def update(self, features: Any) -> None:
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
      raise FIDError(f"features must be [N, D], got shape {x.shape}")
    if self._shift is None:
      self._shift = x.mean(axis=0)
      self._sum = np.zeros_like(self._shift)
      self._outer = np.zeros((x.shape[1], x.shape[1]))
    elif x.shape[1] != self._shift.shape[0]:
      raise FIDError(f"features of size {x.shape[1]} after features of size {self._shift.shape[0]}")
    d = x - self._shift
    self.count += x.shape[0]
    self._sum += d.sum(axis=0)
    self._outer += d.T @ d

  def result(self) -> tuple[np.ndarray, np.ndarray]:
    if self.count < 2:
      raise FIDError(f"statistics need at least 2 images, got {self.count}")
    mean_d = self._sum / self.count
    sigma = (self._outer - self.count * np.outer(mean_d, mean_d)) / (self.count - 1)
    return self._shift + mean_d, sigma


# --- the distance -------------------------------------------------------------------------------------------------


def _sqrtm(a: np.ndarray) -> np.ndarray:
  with warnings.catch_warnings():
    # A singular product is expected (fewer images than dimensions); the result is checked below instead.
    warnings.filterwarnings("ignore", message="Matrix is singular")
    return linalg.sqrtm(a)


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any, eps: float = EPS) -> float:
  """The Frechet distance of N(mu1, sigma1) and N(mu2, sigma2), in float64, as pytorch-fid computes it.

  `sqrtm(sigma1 @ sigma2)` is the principal square root; when it is not finite (an almost singular product), the
  root is retaken with `eps` added to both diagonals. A root with a complex diagonal whose imaginary part exceeds
  1e-3 means the inputs are not covariances (or are numerically broken): `FIDError`. Otherwise only its real part
  counts.
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape:
    raise FIDError(f"means of different sizes: {mu1.shape} and {mu2.shape}")
  if sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
    raise FIDError(f"covariances {sigma1.shape} and {sigma2.shape} do not fit means of shape {mu1.shape}")
  root = _sqrtm(sigma1 @ sigma2)
  if not np.isfinite(root).all():
    logging.warning("FID: the square root of the covariance product is not finite; adding %g to the diagonals", eps)
    shift = eps * np.eye(sigma1.shape[0])
    root = _sqrtm((sigma1 + shift) @ (sigma2 + shift))
  if np.iscomplexobj(root):
    if not np.allclose(np.diagonal(root).imag, 0.0, atol=IMAG_ATOL):
      raise FIDError(
        f"the square root of the covariance product has an imaginary part up to {np.max(np.abs(root.imag)):.3g}: "
        "these are not covariance matrices of real features"
      )
    root = root.real
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(root))


def distance(features: Any, reference: Any) -> float:
  """FID of features [N, D] against reference features [M, D], or against their (mu, sigma) as a tuple: the
  `statistics` of each side, then `frechet_distance`. For callers that hold features rather than statistics."""
  mu_ref, sigma_ref = reference if isinstance(reference, tuple) else statistics(reference)
  return frechet_distance(*statistics(features), mu_ref, sigma_ref)


# --- statistics of images -----------------------------------------------------------------------------------------


def _batches(images: Iterable[Any], batch_size: int) -> Iterable[tuple[np.ndarray, int]]:
  """Regroups images ([H, W, 3] or [B, H, W, 3] each) into [batch_size, ...] batches and their valid row counts;
  the last batch is padded by repeating its final image, so the network compiles once."""
  pending: list[np.ndarray] = []
  held = 0
  for item in images:
    a = np.asarray(item, np.float32)
    a = a[None] if a.ndim == 3 else a
    if a.ndim != 4 or a.shape[-1] != 3:
      raise FIDError(f"images must be [H, W, 3] or [B, H, W, 3] RGB, got shape {a.shape}")
    pending.append(a)
    held += a.shape[0]
    while held >= batch_size:
      joined = np.concatenate(pending)
      yield joined[:batch_size], batch_size
      pending, held = [joined[batch_size:]], held - batch_size
  if held:
    joined = np.concatenate(pending)
    pad = np.repeat(joined[-1:], batch_size - held, axis=0)
    yield np.concatenate([joined, pad]), held


def statistics_of_images(
  network: Any,
  images: Iterable[Any],
  batch_size: int = 50,
  progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of the pool3 features of images (float NHWC in [-1, 1], one image or a batch per item).

  `network` is a FID Inception (`fid_inception.load`); images of one size share one compiled program, fed
  `batch_size` at a time. `progress(n)` is called with the number of images done after each batch.
  """
  from disentangle_jax.third_party import fid_inception  # pylint: disable=import-outside-toplevel

  running = RunningStatistics()
  for batch, valid in _batches(images, batch_size):
    running.update(np.asarray(fid_inception.features(network, batch))[:valid])
    if progress is not None:
      progress(running.count)
  return running.result()


# --- the cache ----------------------------------------------------------------------------------------------------


def default_cache_dir() -> pathlib.Path:
  """`$XDG_CACHE_HOME/disentangle_jax/fid` (`~/.cache/...` without it)."""
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return pathlib.Path(root) / "disentangle_jax" / "fid"


def fingerprint(network: Any) -> str:
  """The identity of a network's weights: sha256 over its config and every array of its state (name, dtype, shape,
  bytes), so a statistic is never reused for other weights, however they were loaded."""
  from flax import nnx  # pylint: disable=import-outside-toplevel

  h = hashlib.sha256(json.dumps(getattr(network, "config", None).to_dict(), sort_keys=True).encode())
  for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(network))), key=str):
    a = np.ascontiguousarray(np.asarray(leaf))
    h.update(f"{jax.tree_util.keystr(path)}|{a.dtype}|{a.shape}".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def files_identity(paths: Sequence[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
  """sha256 of the files' names (relative to `root`), sizes and modification times: changes when any file does."""
  h = hashlib.sha256()
  for p in sorted(os.fspath(p) for p in paths):
    st = os.stat(p)
    name = os.path.relpath(p, root) if root is not None else p
    h.update(f"{name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
  return h.hexdigest()


def cached_statistics(
  key: Mapping[str, Any],
  compute: Callable[[], tuple[np.ndarray, np.ndarray]],
  cache_dir: str | os.PathLike | None,
) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) from `cache_dir` under `key` (a JSON-able mapping that identifies the image set, the weights and
  the reading), or `compute()`d and saved there. `cache_dir=None` computes without caching."""
  if cache_dir is None:
    return compute()
  text = json.dumps({"version": CACHE_VERSION, **key}, sort_keys=True)
  path = pathlib.Path(cache_dir) / f"stats_{hashlib.sha256(text.encode()).hexdigest()[:24]}.npz"
  if path.is_file():
    try:
      with np.load(path, allow_pickle=False) as f:
        if str(f["key"]) == text:
          logging.info("FID statistics from the cache: %s", path)
          return f["mu"], f["sigma"]
    except (OSError, ValueError, KeyError) as e:  # a damaged entry is recomputed and replaced
      logging.warning("FID cache entry %s unreadable (%s); recomputing", path, e)
  mu, sigma = compute()
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
  np.savez(tmp, mu=mu, sigma=sigma, key=np.asarray(text))
  os.replace(tmp, path)  # whole or absent, also with two processes filling the same entry
  return mu, sigma


def folder_statistics(
  network: Any,
  folder: str | os.PathLike,
  size: int,
  batch_size: int = 50,
  cache_dir: str | os.PathLike | None = None,
  progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
  """(mu, sigma) of a folder of photos (png/jpg), read as the project reads photos (`data.folder`: centre square,
  resized to `size`), cached under `cache_dir` (default `default_cache_dir()`; pass `""` for no cache)."""
  from disentangle_jax.data import folder as folder_lib  # pylint: disable=import-outside-toplevel

  paths = folder_lib.list_images(os.fspath(folder))
  key = {
    "kind": "folder",
    "files": files_identity(paths, folder),
    "count": len(paths),
    "size": int(size),
    "weights": fingerprint(network),
  }

  def compute() -> tuple[np.ndarray, np.ndarray]:
    pipeline = folder_lib.FolderPipeline(paths, size, batch_size)
    images = (b["image"][: int(np.sum(b["valid"]))] for b in pipeline)
    return statistics_of_images(network, images, batch_size, progress)

  if cache_dir is None:
    cache_dir = default_cache_dir()
  return cached_statistics(key, compute, cache_dir or None)
