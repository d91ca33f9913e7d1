"""The `--config` flag of `train` and `generate-data`, and the check of its `--config.<key>` overrides.

ml_collections' config flag turns every `--config.<key>=value` into a flag of its own while it parses the config;
a key the (locked) config lacks fails there with a bare KeyError, three tracebacks deep. `prepare_argv` runs
before flag parsing (`main.run` calls it): it loads the config the command line names, refuses unknown keys in one
line with the closest known ones, and makes `--config` explicit, so the overrides are always parsed together with
the config they override.

Defined once here (not per command) so both commands can be imported in one process, as the tests do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

from disentangle_jax import config_check
from disentangle_jax.configs import toy

DEFAULT = toy.__file__
CONFIG = config_flags.DEFINE_config_file(
  "config",
  DEFAULT,
  "experiment config file[:presets]; override its keys with --config.<key>=value (after --config)",
  lock_config=True,
)

_OVERRIDE = re.compile(r"^--?(?:no)?config\.([^=]+)")
_CONFIG = re.compile(r"^--?config(=|$)")


def _config_value(args: Sequence[str]) -> tuple[int, str | None]:
  """(index, value) of the last `--config=X` / `--config X` in args, or (-1, None)."""
  found = (-1, None)
  for i, arg in enumerate(args):
    if arg == "--":
      break
    m = _CONFIG.match(arg)
    if m:
      found = (i, arg.split("=", 1)[1] if m.group(1) else (args[i + 1] if i + 1 < len(args) else None))
  return found


def prepare_argv(args: Sequence[str]) -> list[str]:
  """The command's flags with `--config=<default>` put first when absent; unknown override keys raise.

  Raises:
    app.UsageError: an override names no key of the config (one line each, with suggestions), or the config
      file cannot be loaded.
  """
  args = list(args)
  names = []
  for arg in args:
    if arg == "--":
      break
    m = _OVERRIDE.match(arg)
    if m:
      names.append(m.group(1))
  index, value = _config_value(args)
  if index < 0:
    args.insert(0, f"--config={DEFAULT}")
    value = DEFAULT
  if value is None:
    raise app.UsageError("--config: needs a config file")
  if not os.path.isfile(value.split(":", 1)[0]):
    raise app.UsageError(f"--config={value}: no such config file")
  try:
    config = flags.FLAGS["config"].parser.parse(value)
    config.keys()  # a config that failed to load raises only when used
  except Exception as e:  # pylint: disable=broad-except  # a bad preset, an error in the file
    raise app.UsageError(f"--config={value}: {_last_line(e)}") from e
  unknown = config_check.unknown_keys(config, names)
  if unknown:
    raise app.UsageError("\n".join(unknown))
  return args


def _last_line(e: BaseException) -> str:
  """The line of an error that says what went wrong: ml_collections wraps it after a traceback or attempt list."""
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  return (lines[-1] if lines else type(e).__name__).strip("'\"")
