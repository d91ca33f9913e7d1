"""`UserError`: the marker of every error a user can cause and fix (bad input, a bad file, a busy workdir).

The command line prints such an error as one line on stderr and exits non-zero, without a traceback (shown with
`--verbosity=1`); anything else is a bug and keeps its traceback. Each error class also derives from the built-in
type that fits it (`ValueError`, `OSError`, ...), so library callers can catch either.
"""

from __future__ import annotations


class UserError(Exception):
  """An expected failure whose message alone tells the user what is wrong and where."""


class ConfigError(UserError, ValueError):
  """A config key that does not exist or a value that cannot work; raised before any work starts."""
