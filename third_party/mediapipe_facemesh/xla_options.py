"""XLA compiler options the MediaPipe nets are jitted with, to step around a CPU miscompilation.

jaxlib 0.10's CPU backend fuses chains of convolutions, pooling and element-wise ops into YNNPACK kernels
("ynn_fusion"). For BlazeFace that fusion returns wrong values (regressors off by tens of pixels against both the
eager computation and the TFLite interpreter; every intermediate is right when it is also an output). Compiling
with the YNNPACK fusion list emptied gives the eager result to float rounding. The option is only set on CPU and
only if this jaxlib knows it.
"""

from __future__ import annotations

import functools
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
