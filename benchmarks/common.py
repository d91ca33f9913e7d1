"""Shared measuring tools of the benchmarks: timing, XLA cost analysis, and the machine's dense peak.

Every benchmark reports its throughput beside the same run's dense-matmul peak, so a figure reads as a fraction of
what this machine can do rather than as an absolute that means little across machines.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Timing:
  """Seconds per call: the median and the best of the timed repetitions."""

  median_s: float
  best_s: float
  repeats: int


def time_fn(fn: Callable[[], Any], warmup: int = 1, repeats: int = 5, min_time_s: float = 0.0) -> Timing:
  """Times `fn()` (which must block until its result is ready) after `warmup` untimed calls."""
  for _ in range(warmup):
    fn()
  times = []
  start = time.perf_counter()
  while len(times) < repeats or time.perf_counter() - start < min_time_s:
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return Timing(float(np.median(times)), float(np.min(times)), len(times))


def block(tree: Any) -> Any:
  return jax.tree.map(lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree)


def _on_cpu(tree: Any) -> Any:
  """Abstract copies of the array leaves of `tree`, placed on the host CPU device."""
  cpu = jax.sharding.SingleDeviceSharding(jax.devices("cpu")[0])

  def leaf(x: Any) -> Any:
    if isinstance(x, (jax.Array, np.ndarray)):
      return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=cpu)
    return x

  return jax.tree.map(leaf, tree)


def compiled_flops(jitted: Callable[..., Any], *args: Any, **kwargs: Any) -> float | None:
  """FLOPs of one call of `jitted(*args)` from XLA's cost analysis (None if unavailable).

  FLOPs are a property of the program, so they are counted on the host CPU backend: on GPUs the program hands
  convolutions to cuDNN custom calls, which XLA's GPU cost analysis counts as (almost) zero.
  """
  if jax.default_backend() != "cpu":
    args, kwargs = _on_cpu(args), _on_cpu(kwargs)
  analysis = jitted.lower(*args, **kwargs).compile().cost_analysis()
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  return float(analysis["flops"])


def compiled_memory(jitted: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, int] | None:
  """Argument, output and temporary bytes of the compiled program, from XLA's memory analysis."""
  stats = jitted.lower(*args, **kwargs).compile().memory_analysis()
  if stats is None:
    return None
  fields = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes", "generated_code_size_in_bytes")
  out = {f: int(getattr(stats, f, 0)) for f in fields}
  out["peak_estimate_bytes"] = out["argument_size_in_bytes"] + out["output_size_in_bytes"] + out["temp_size_in_bytes"]
  return out


def dense_peak_flops(dtype: Any = jnp.float32, n: int | None = None, repeats: int = 5) -> float:
  """FLOP/s of a large jitted square matmul on the default device: the machine's practical dense peak."""
  if n is None:
    n = 2048 if jax.default_backend() == "cpu" else 8192
  a = jnp.ones((n, n), dtype)
  b = jnp.ones((n, n), dtype)
  matmul = jax.jit(lambda x, y: x @ y)
  t = time_fn(lambda: matmul(a, b).block_until_ready(), warmup=2, repeats=repeats)
  return 2.0 * n**3 / t.best_s


def device_summary() -> str:
  d = jax.devices()[0]
  return f"{jax.default_backend()} x{jax.device_count()} ({d.device_kind}), jax {jax.__version__}"


def print_table(rows: list[dict[str, Any]]) -> None:
  """Prints rows of dicts as an aligned text table (columns from the first row)."""
  if not rows:
    return
  cols = list(rows[0])
  cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
  widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
  print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
  for row in cells:
    print("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _fmt(v: Any) -> str:
  if isinstance(v, float):
    return f"{v:.4g}"
  return "-" if v is None else str(v)
