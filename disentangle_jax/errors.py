"""`UserError`: the marker of every error a user can cause and fix (bad input, a bad file, a busy workdir).

The command line prints such an error as one line on stderr and exits non-zero, without a traceback (shown with
`--verbosity=1`); anything else is a bug and keeps its traceback. Each error class also derives from the built-in
type that fits it (`ValueError`, `OSError`, ...), so library callers can catch either.

Exit codes of `disentangle-jax` (`main.run`), for scripts and schedulers:

  0   success
  1   an expected failure (a `UserError`, a missing or unwritable file) named in one line on stderr
  2   a usage error: a bad flag, config key or config value, or a bad path on the command line
  75  `train` stopped by SIGTERM after saving a checkpoint (EX_TEMPFAIL: requeue it, the rerun resumes)

An unexpected exception (a bug) prints its traceback and exits 1.
"""

from __future__ import annotations

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PREEMPTED = 75  # sysexits.h EX_TEMPFAIL, "temporary failure; the user is invited to retry"


class UserError(Exception):
  """An expected failure whose message alone tells the user what is wrong and where.

  `exit_code` is what the command line exits with; subclasses that mean "the invocation is wrong" use 2.
  """

  exit_code: int = EXIT_FAILURE


class ConfigError(UserError, ValueError):
  """A config key that does not exist or a value that cannot work; raised before any work starts."""

  exit_code = EXIT_USAGE
