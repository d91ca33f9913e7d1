"""Checks an upstream state_dict against what a port expects, and names every key that does not fit.

A converter that silently drops or mis-shapes a tensor produces a network that runs and is wrong; these checks
turn that into an error listing the missing, unexpected and mis-shaped keys of the checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping

import numpy as np

from disentangle_jax import errors


class CheckpointMismatchError(errors.UserError, ValueError):
  """A checkpoint's keys or shapes do not match the network it is converted into."""

  def __init__(
    self,
    source: str,
    missing: Iterable[str] = (),
    unexpected: Iterable[str] = (),
    misshaped: Iterable[tuple[str, tuple, tuple]] = (),
  ):
    self.missing, self.unexpected, self.misshaped = list(missing), list(unexpected), list(misshaped)
    lines = [f"{source}: checkpoint does not match the network"]
    if self.missing:
      lines.append(
        f"  missing keys ({len(self.missing)}): "
        + ", ".join(self.missing[:20])
        + (" ..." if len(self.missing) > 20 else "")
      )
    if self.unexpected:
      lines.append(
        f"  unexpected keys ({len(self.unexpected)}): "
        + ", ".join(self.unexpected[:20])
        + (" ..." if len(self.unexpected) > 20 else "")
      )
    for key, got, want in self.misshaped[:20]:
      lines.append(f"  mis-shaped key {key}: checkpoint has {got}, network expects {want}")
    super().__init__("\n".join(lines))


def check(
  state_dict: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], source: str, ignore: Iterable[str] = ()
) -> None:
  """Raises `CheckpointMismatchError` unless `state_dict` has exactly the keys and shapes of `expected`.

  Args:
    state_dict: upstream key -> array.
    expected: upstream key -> shape the port needs.
    source: what to call the checkpoint in the message (usually its path).
    ignore: keys (or key suffixes after a dot, such as "num_batches_tracked") that may be present and are unused.
  """
  ignore = tuple(ignore)

  def ignored(key: str) -> bool:
    return key in ignore or any(key.endswith("." + s) for s in ignore)

  missing = [k for k in expected if k not in state_dict]
  unexpected = [k for k in state_dict if k not in expected and not ignored(k)]
  misshaped = [
    (k, tuple(np.shape(state_dict[k])), tuple(expected[k]))
    for k in expected
    if k in state_dict and tuple(np.shape(state_dict[k])) != tuple(expected[k])
  ]
  if missing or unexpected or misshaped:
    raise CheckpointMismatchError(source, missing, unexpected, misshaped)
