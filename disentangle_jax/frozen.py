"""Builds the frozen networks (G, E_id, the landmark net) from a config section, by kind.

The rest of the project picks a network by config alone: `kind` names a package under
`disentangle_jax.third_party` (or, for our own networks such as the toy world's, the module `_OWN` names), `weights`
is anything that package's `load` accepts (an upstream checkpoint or a converted directory), and an empty `weights`
means random initialisation at the sizes in `arch` (the smoke config and the tests), always from an explicit seed.
Every builder returns the package's plain NNX module (its `.config` sizes it); eager callers run it through the
package's jitted functions (`stylegan2.synthesis(g, ws)`).
"""

from __future__ import annotations

import importlib
from typing import Any

import ml_collections
from flax import nnx

GENERATORS = ("stylegan2", "stylegan1", "toy")
ID_ENCODERS = ("vggface2", "arcface", "toy")
LANDMARK_NETS = ("fan", "mediapipe_facemesh", "toy")
_ALIASES = {"facemesh": "mediapipe_facemesh"}
# Kinds that are our own code rather than ports, by role: the module that follows the third_party contract.
_OWN = {
  "generator": {"toy": "disentangle_jax.toy.generator"},
  "identity encoder": {"toy": "disentangle_jax.toy.identity_net"},
  "landmark net": {"toy": "disentangle_jax.toy.landmark_net"},
}


def _package(kind: str, allowed: tuple[str, ...], role: str) -> Any:
  kind = _ALIASES.get(kind, kind)
  if kind not in allowed:
    raise ValueError(f"unknown {role} kind {kind!r}; choose one of {allowed}")
  return importlib.import_module(_OWN.get(role, {}).get(kind, f"disentangle_jax.third_party.{kind}"))


def _build(cfg: ml_collections.ConfigDict, package: Any, seed: int) -> nnx.Module:
  if cfg.weights:
    return package.load(cfg.weights)
  return package.init(package.Config(**cfg.arch.to_dict()), seed)


def generator(cfg: ml_collections.ConfigDict, seed: int) -> nnx.Module:
  """G: `config.generator` -> a generator with `mapping(z, ...)` and `synthesis(ws, ...)`."""
  return _build(cfg, _package(cfg.kind, GENERATORS, "generator"), seed)


def id_encoder(cfg: ml_collections.ConfigDict, seed: int) -> nnx.Module:
  """E_id: `config.id_encoder` -> a network with `embed(images, head=...)`."""
  return _build(cfg, _package(cfg.kind, ID_ENCODERS, "identity encoder"), seed)


def landmark_net(cfg: ml_collections.ConfigDict, seed: int) -> nnx.Module:
  """The landmark net: `config.landmarks` -> a network with `landmarks(images)`."""
  return _build(cfg, _package(cfg.kind, LANDMARK_NETS, "landmark net"), seed)


def landmark_keep_indices(kind: str) -> tuple[int, ...]:
  """Indices of the points the landmark loss compares (the jaw / face-oval contour dropped)."""
  return tuple(_package(kind, LANDMARK_NETS, "landmark net").KEEP_INDICES)
