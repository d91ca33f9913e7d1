"""The one key-mapping scheme of every port: a list of `Rule`s, checked against a state_dict and then applied.

A `Rule` names one upstream tensor (key and shape) and where it goes in the Flax parameter tree, with the layout
change it needs. Ports whose module tree mirrors upstream's derive their rules from the module (`torch_layout`);
the StyleGANs list them. Either way the rule list is the whole contract: a checkpoint key no rule names, a rule
whose key the checkpoint lacks and a tensor of the wrong shape are all reported together, naming the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import numpy as np

from disentangle_jax import trees
from disentangle_jax.third_party.common import state_dict as state_dict_lib


def _identity(array: np.ndarray) -> np.ndarray:
  return array


@dataclasses.dataclass(frozen=True)
class Rule:
  """One upstream tensor: its key and shape, its Flax path (None: a buffer that is checked, then unused), and the
  transform from the upstream layout (float32 numpy in, the Flax variable's value out)."""

  key: str
  shape: tuple[int, ...]
  path: trees.Path | None
  fn: Callable[[np.ndarray], np.ndarray] = _identity


def expected(rules: Iterable[Rule]) -> dict[str, tuple[int, ...]]:
  """Upstream key -> upstream shape of every rule."""
  return {r.key: tuple(r.shape) for r in rules}


def apply(
  state_dict: Mapping[str, Any], rules: Sequence[Rule], source: str, ignore: Iterable[str] = ()
) -> dict[str, Any]:
  """Checks `state_dict` against `rules` and returns the nested Flax parameter dict (float32 numpy).

  Raises `CheckpointMismatchError` naming every missing, unexpected and mis-shaped key (prefixed by `source`);
  `ignore` lists keys (or dotted suffixes such as "num_batches_tracked") that may be present and are unused.
  """
  state_dict_lib.check(state_dict, expected(rules), source, ignore=ignore)
  flat: dict[trees.Path, np.ndarray] = {}
  for r in rules:
    if r.path is None:
      continue
    if r.path in flat:
      raise ValueError(f"{source}: two checkpoint tensors map onto {'/'.join(r.path)}")
    flat[r.path] = np.array(r.fn(np.asarray(state_dict[r.key], np.float32)), dtype=np.float32, order="C")
  return trees.unflatten(flat)
