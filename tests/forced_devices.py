"""Settings for JAX processes with several forced CPU devices (the test session, `train_runner.py`)."""

from __future__ import annotations


def write_whole_arrays() -> None:
  """Orbax saves each replicated array whole from its first replica instead of in replica slices.

  On CPU, Orbax's default (replica-parallel writes) cuts every replicated array into one slice per device with an
  eager `lax.slice` each: with 8 forced devices, 10,000 small compilations and 45 s for one save of the toy world's
  train state (1,666 arrays), against 3-6 s whole (1 s on one device). A CPU user with one device, and Orbax on
  GPUs, write whole arrays anyway; the files are the same format either way.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from orbax.checkpoint import type_handlers  # pylint: disable=import-outside-toplevel

  type_handlers.register_type_handler(jax.Array, type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
