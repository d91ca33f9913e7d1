"""The behaviour every port's `Config` dataclass shares: a JSON-ready `to_dict` and a checked `from_dict`.

Converted directories store a network's config as JSON (`common/converted.py`), which turns tuples into lists;
`from_dict` turns them back, nested ones too, so a config read back equals (and hashes like) the one written, and it
refuses unknown fields by name instead of passing them to the constructor.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import TypeVar

_C = TypeVar("_C", bound="ConfigBase")


def _tuples(value: Any) -> Any:
  return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


class ConfigBase:
  """Mixin for a frozen dataclass `Config`: `to_dict()` / `from_dict(d)`."""

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)  # type: ignore[call-overload]

  @classmethod
  def from_dict(cls: type[_C], d: dict[str, Any]) -> _C:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - names)
    if unknown:
      raise ValueError(f"unknown {cls.__module__}.{cls.__name__} fields {unknown}; known: {sorted(names)}")
    return cls(**{k: _tuples(v) for k, v in d.items()})
