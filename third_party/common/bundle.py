"""A loaded frozen network: its NNX module, its config, and jitted versions of the module's public methods.

`stylegan2.load(path).synthesis(ws)` should be fast without the caller writing `jax.jit`; inside a larger jitted
function (the train step) the same methods are called on `bundle.module` directly, which, as an NNX module, is a
pytree that `jax.jit` and `jax.grad` accept.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
from flax import nnx


class Bundle:
  """Holds `module` and `config`; `bundle.<method>(*args, **kwargs)` runs `module.<method>` under `jax.jit`.

  Keyword arguments listed in `static` (strings, Python numbers that pick code paths) are compile-time constants;
  one compiled function is cached per distinct set of them and per input shape. `compiler_options` (XLA debug
  options) are passed to every `jax.jit`, for networks that need a backend quirk worked around.
  """

  def __init__(self, module: nnx.Module, config: Any, methods: dict[str, tuple[str, ...]],
               compiler_options: dict[str, Any] | None = None):
    self.module = module
    self.config = config
    self._methods = methods
    self._compiler_options = compiler_options
    self._cache: dict[tuple[str, tuple], Callable[..., Any]] = {}

  def __getattr__(self, name: str) -> Any:
    methods = self.__dict__.get("_methods", {})
    if name not in methods:
      raise AttributeError(name)
    return functools.partial(self._call, name)

  def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
    static_names = self._methods[name]
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k in static_names))
    dynamic = {k: v for k, v in kwargs.items() if k not in static_names}
    key = (name, static)
    if key not in self._cache:
      fixed = dict(static)

      def run(module, args, kwargs):
        return getattr(module, name)(*args, **kwargs, **fixed)

      self._cache[key] = jax.jit(run, compiler_options=self._compiler_options)
    return self._cache[key](self.module, args, dynamic)

  def __repr__(self) -> str:
    return f"{type(self.module).__name__} bundle ({self.config})"
