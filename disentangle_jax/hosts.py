"""Barriers between the processes of a multi-host run.

`multihost_utils.sync_global_devices` is a collective over every device. On CPUs it runs through Gloo, whose context
is set up by the first collective and waits only 30 s for the other processes: a process that reaches a barrier
while another is still building its model or rendering its shards fails with DEADLINE_EXCEEDED (seen on a loaded
2-core machine, 30 s apart at the first barrier). These barriers wait on the coordination service of
`jax.distributed` instead (through Orbax's barrier function), with a timeout sized for that work.
"""

from __future__ import annotations

import itertools

import jax

TIMEOUT_S = 3600  # rendering a process's share of a 70,000-image dataset can take this long on a slow host
_calls = itertools.count()


def barrier(name: str, timeout_s: int = TIMEOUT_S) -> None:
  """Returns once every process has reached `barrier(name)`; a no-op in a single-process run.

  Every process must pass the same barriers in the same order, as with any collective: the key carries a call
  count, because a coordination-service barrier id serves one barrier only.
  """
  if jax.process_count() == 1:
    return
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  wait = ocp.multihost.get_barrier_sync_fn()
  wait(key=f"disentangle_jax.{name}.{next(_calls)}", timeout_ms=int(timeout_s * 1000))
