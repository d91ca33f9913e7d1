"""XLA compiler options the MediaPipe nets are jitted with, to step around a CPU miscompilation.

jaxlib 0.10's CPU backend fuses chains of convolutions, pooling and element-wise ops into YNNPACK kernels
("ynn_fusion"). With depthwise layers written as grouped convolutions (`feature_group_count`), BlazeFace came out
wrong under `jax.jit` (regressors off by tens of pixels against both eager execution and the TFLite interpreter,
while every intermediate was right whenever it was also an output). `layers.DepthwiseConv` no longer uses grouped
convolutions, which removed the error; the package's jitted functions (`jit` below) still compile with the YNNPACK
fusion list emptied, as a precaution that costs nothing measurable here and keeps the nets off that path. The option
is only set on CPU, and only if this jaxlib knows it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax

_NO_YNN_FUSION = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def compiler_options() -> dict[str, Any] | None:
  """Options for `jax.jit(..., compiler_options=...)`, or None where nothing needs working around."""
  if jax.default_backend() != "cpu":
    return None
  try:
    jax.jit(lambda x: x + 1, compiler_options=_NO_YNN_FUSION).lower(1.0).compile()
  except Exception:  # pylint: disable=broad-except  # an XLA without the option: nothing to turn off
    return None
  return dict(_NO_YNN_FUSION)


def jit(fn: Callable[..., Any]) -> Callable[..., Any]:
  """`jax.jit(fn, compiler_options=compiler_options())`, built on the first call: the options probe the backend,
  which importing the package must not do."""
  compiled: list[Callable[..., Any]] = []

  @functools.wraps(fn)
  def call(*args: Any) -> Any:
    if not compiled:
      compiled.append(jax.jit(fn, compiler_options=compiler_options()))
    return compiled[0](*args)

  return call
