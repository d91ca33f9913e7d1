"""Refuses a config whose values cannot work, before any work starts, naming every bad key at once.

A negative batch size, a zero checkpoint interval or a NaN learning rate would otherwise surface far from their
cause: as a shape error inside a jitted step, a division by zero at the first `step % every`, or NaN losses hours
into a run. `validate` checks the keys of `configs/paper.py` (keys a config lacks are skipped, so partial configs
of tests and tools pass) and raises one `errors.ConfigError` listing every problem, one per line, so a user fixes
them in one go.

`unknown_keys` does the same for names (`--config.optim.lrr`): it lists what does not exist with the closest keys.

This module imports neither JAX nor TensorFlow: the command line calls it before those load, and
`train.train_and_evaluate` calls it too.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

from disentangle_jax import errors

# Keys that count something: a positive integer (a zero or negative size or count has no meaning).
POSITIVE_INTS = (
  "per_device_batch_size",
  "eval_batches",
  "score_pairs",
  "keep_checkpoints",
  "data.num_train",
  "data.num_validation",
  "data.examples_per_shard",
  "data.generate_batch_size",
)
# Optional weight paths: None (off) or a non-empty path.
OPTIONAL_PATHS = (
  "eval.arcface_weights",
  "eval.fid_weights",
  "eval.fid_reference",
  "eval.pose_landmarks_weights",
)
# Every-N-steps intervals: `step % every` needs every >= 1.
INTERVALS = ("log_every", "image_every", "eval_every", "checkpoint_every", "optim.adversarial_every")
# Weights and rates that scale a term: zero switches it off, negative would reverse it.
NON_NEGATIVE = (
  "loss.identity",
  "loss.landmarks",
  "loss.reconstruction",
  "loss.ms_ssim_weight",
  "loss.l1_weight",
  "loss.adversarial",
  "loss.r1_gamma",
  "optim.lr",
  "optim.adversarial_lr_scale",
  "optim.discriminator_lr_scale",
  "optim.attr_encoder_lr_scale",
  "optim.eps",
  "landmarks.units_px",
  "mapper.negative_slope",
  "discriminator.negative_slope",
)
# Positive reals: the width of the inverse-Gaussian L1 mask divides the distances.
POSITIVE_REALS = ("loss.mask_sigma",)
# Non-negative integers: 0 has a meaning (data.cross_every: never cross; data.seed: numpy refuses negative seeds).
NON_NEGATIVE_INTS = (
  "data.cross_every",
  "data.cross_phase",
  "data.seed",
  "data.shuffle_buffer",
  "data.truncation_cutoff",
  "keep_best_checkpoints",  # 0: no best checkpoints
  "early_stop_evaluations",  # 0: never stop early
)
# Adam's decay rates: at 1 the bias correction divides by zero.
UNIT_INTERVAL = ("optim.b1", "optim.b2")
# Layer widths of the trained MLPs: each a positive integer.
WIDTHS = ("mapper.hidden", "discriminator.hidden")
CHOICES = {
  "generator.kind": ("stylegan2", "stylegan1", "toy"),
  "id_encoder.kind": ("vggface2", "arcface", "toy"),
  "attr_encoder.kind": ("inception_v3",),
  "landmarks.kind": ("fan", "facemesh", "mediapipe_facemesh", "toy"),
  "generator.noise_mode": ("const", "random", "none"),
  "compute.frozen_dtype": ("float32", "bfloat16"),
  "loss.l1_reduction": ("mean", "sum"),
  "optim.adam": ("keras", "optax"),
  "data.render_from": ("w", "ws"),
}

_MISSING = object()


def _lookup(config: Any, dotted: str) -> Any:
  """config["a"]["b"] for "a.b", or _MISSING where a part is absent."""
  node = config
  for part in dotted.split("."):
    try:
      if part not in node:
        return _MISSING
      node = node[part]
    except TypeError:  # a leaf where a section was expected
      return _MISSING
  return node


def _is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
  return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_section(value: Any) -> bool:
  return isinstance(value, Mapping) or (hasattr(value, "items") and hasattr(value, "keys"))


def _leaves(config: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
  for key in sorted(config.keys()):
    value = config[key]
    name = f"{prefix}{key}"
    if _is_section(value):
      yield from _leaves(value, name + ".")
    else:
      yield name, value


def flat_keys(config: Any) -> list[str]:
  """Every dotted key of `config`, sections included ("optim", "optim.lr", ...), sorted."""
  out = []
  for key in sorted(config.keys()):
    value = config[key]
    out.append(str(key))
    if _is_section(value):
      out.extend(f"{key}.{k}" for k in flat_keys(value))
  return out


def problems(config: Any, *, allow_empty: bool = False) -> list[str]:
  """One line per impossible value in `config`, "config.<key>=<value>: <why>"; empty when it can work."""
  out: list[str] = []

  def bad(key: str, value: Any, why: str) -> None:
    out.append(f"config.{key}={value!r}: {why}")

  # Non-finite floats anywhere: NaN compares false with every bound below, so it gets its own check.
  non_finite = set()
  for key, value in _leaves(config):
    values = value if isinstance(value, (tuple, list)) else (value,)
    if any(_is_real(v) and not math.isfinite(v) for v in values):
      non_finite.add(key)
      bad(key, value, "must be a finite number")

  def each(keys, check, why):
    for key in keys:
      value = _lookup(config, key)
      if value is _MISSING or key in non_finite:
        continue
      if not check(value):
        bad(key, value, why)

  each(POSITIVE_INTS, lambda v: _is_int(v) and v > 0, "must be a positive integer")
  each(INTERVALS, lambda v: _is_int(v) and v > 0, "must be a positive integer (an every-N-steps interval)")
  each(NON_NEGATIVE, lambda v: _is_real(v) and v >= 0, "must be >= 0")
  each(POSITIVE_REALS, lambda v: _is_real(v) and v > 0, "must be > 0")
  each(NON_NEGATIVE_INTS, lambda v: v is None or (_is_int(v) and v >= 0), "must be a non-negative integer")
  each(UNIT_INTERVAL, lambda v: _is_real(v) and 0 <= v < 1, "must be in [0, 1)")
  each(("seed",), _is_int, "must be an integer")
  each(("attr_encoder.toy_start",), lambda v: isinstance(v, bool), "must be True or False")
  if _lookup(config, "attr_encoder.toy_start") is True and _lookup(config, "generator.kind") != "toy":
    bad("attr_encoder.toy_start", True, "E_attr's toy start is trained on the toy generator; set generator.kind='toy'")
  each(OPTIONAL_PATHS, lambda v: v is None or (isinstance(v, str) and v != ""), "must be None (off) or a path")
  each(("eval.fid_samples",), lambda v: _is_int(v) and v >= 2, "must be an integer >= 2 (FID needs a covariance)")
  each(
    WIDTHS,
    lambda v: isinstance(v, (tuple, list)) and all(_is_int(w) and w > 0 for w in v),
    "must be a sequence of positive integer layer widths",
  )
  for key, allowed in CHOICES.items():
    each((key,), lambda v, allowed=allowed: v in allowed, f"must be one of {', '.join(allowed)}")
  phase, every = _lookup(config, "data.cross_phase"), _lookup(config, "data.cross_every")
  if _is_int(phase) and _is_int(every) and every > 0 and not phase < every:
    bad("data.cross_phase", phase, f"must be below data.cross_every={every} (the cross step's place in each group)")
  if allow_empty:
    each(("num_steps",), lambda v: _is_int(v) and v >= 0, "must be a non-negative integer")
  else:
    each(("num_steps",), lambda v: _is_int(v) and v > 0, "must be a positive integer (`train --allow_empty` accepts 0)")
  return out


def validate(config: Any, *, allow_empty: bool = False) -> None:
  """Raises `errors.ConfigError` listing every impossible value of `config`, one per line.

  Args:
    config: a `ml_collections.ConfigDict` (or nested mapping) with the keys of `configs/paper.py`.
    allow_empty: accept `num_steps=0` (a run that only sets up its workdir and evaluates the initial state).
  """
  found = problems(config, allow_empty=allow_empty)
  if found:
    raise errors.ConfigError("\n".join(found))


def unknown_keys(config: Any, names: list[str]) -> list[str]:
  """One line per dotted name that is not a key of `config`, with the closest known keys as suggestions.

  A name whose section exists ("optim.lrr") is compared with that section's keys, and the section's keys are
  listed when none is close; other names are compared with every dotted key.
  """
  known = flat_keys(config)
  known_set = set(known)
  out = []
  for name in names:
    if name in known_set:
      continue
    parent, _, leaf = name.rpartition(".")
    hint = ""
    if parent in known_set and _is_section(_lookup(config, parent)):
      siblings = sorted(str(k) for k in _lookup(config, parent).keys())
      close = difflib.get_close_matches(leaf, siblings, n=3, cutoff=0.6)
      if close:
        hint = f"; did you mean: {', '.join(f'{parent}.{k}' for k in close)}?"
      else:
        hint = f"; {parent} has: {', '.join(siblings) or 'no keys'}"
    else:
      close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
      if close:
        hint = f"; did you mean: {', '.join(close)}?"
    out.append(f"--config.{name}: no such config key{hint}")
  return out
