"""The `disentangle-jax` command: `disentangle-jax <command> [--flags]`, also `python -m disentangle_jax`.

Each command lives in its own module under `disentangle_jax/cli/` and defines its own absl flags; only the module
of the command being run is imported, so `convert` does not pay for TensorFlow and flags never collide.

`run` reports every expected error (an `errors.UserError`, a missing or unwritable file, a bad flag, an unknown
`--config.<key>`, an `absl.app.UsageError`) as one line on stderr, `disentangle-jax <command>: error: <message>`,
and exits with the status listed in `errors` (1, or 2 for usage errors); `--verbosity=1` adds the traceback.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import importlib
import logging as std_logging
import os
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

from disentangle_jax import errors

COMMANDS: dict[str, tuple[str, str]] = {
  "convert": ("disentangle_jax.cli.convert", "convert upstream weights into a converted-weights directory"),
  "generate-data": ("disentangle_jax.cli.generate_data", "render the (w, image) training set with G"),
  "train": ("disentangle_jax.cli.train", "train E_attr, M and D_W"),
  "evaluate": ("disentangle_jax.cli.evaluate", "evaluate a trained model"),
  "swap": ("disentangle_jax.cli.swap", "identity/attribute swap grid"),
  "interpolate": ("disentangle_jax.cli.interpolate", "interpolate in W or in the concatenated code"),
  "video": ("disentangle_jax.cli.video", "drive a fixed identity with the frames of a video"),
  "export": ("disentangle_jax.cli.export", "export the inference parameters"),
  "sample": ("disentangle_jax.cli.sample", "render an image grid with a generator"),
}


class _LibraryInfoFilter(std_logging.Filter):
  """Drops the INFO lines of Orbax and TFDS unless absl's `--verbosity` is 1 or more.

  Orbax logs some twenty lines per checkpoint save and TFDS several per dataset opened, which would bury the run's
  own progress and metrics. Warnings and errors always pass. The filter sits on absl's handler, which the records
  of every Python logger reach.
  """

  _PACKAGES = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}")

  def filter(self, record: std_logging.LogRecord) -> bool:
    from absl import logging  # pylint: disable=import-outside-toplevel

    if record.levelno >= std_logging.WARNING or logging.get_verbosity() > logging.INFO:
      return True
    return not any(p in record.pathname for p in self._PACKAGES)


def _usage() -> str:
  lines = ["usage: disentangle-jax <command> [--flags]   (disentangle-jax <command> --help for its flags)", ""]
  for name, (module, doc) in COMMANDS.items():
    if importlib.util.find_spec(module) is not None:
      lines.append(f"  {name:<14} {doc}")
  return "\n".join(lines)


EXIT_STATUS = (
  "exit status: 0 done; 1 an expected failure, named in one line on stderr (--verbosity=1 adds its\n"
  "traceback); 2 a usage error (a bad flag, config key, config value or path); train: 75 preempted"
)

# The OS errors a command can meet on a user's paths; reported in one line like `errors.UserError`.
EXPECTED_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)

_CONFIG_OVERRIDE = re.compile(r"^--?(?:no)?config\.")


def exit_code(e: BaseException) -> int | None:
  """The exit status for an expected error (one line, no traceback), or None for a bug (keeps its traceback)."""
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel

  if isinstance(e, (app.UsageError, flags.Error)):
    return errors.EXIT_USAGE
  if isinstance(e, errors.UserError):
    return int(e.exit_code)
  if isinstance(e, EXPECTED_OS_ERRORS):
    return errors.EXIT_FAILURE
  return None


def message(e: BaseException) -> str:
  """What an expected error says: its text, or "<file>: <reason>" for an OS error raised by `open` and friends."""
  if isinstance(e, OSError) and e.strerror and e.filename is not None:
    text = f"{e.filename}: {e.strerror}" + (f" ({e.filename2})" if e.filename2 is not None else "")
  else:
    text = str(e.args[0]) if isinstance(e, KeyError) and len(e.args) == 1 else str(e)
  return text.strip() or type(e).__name__


def report(prog: str, e: BaseException, *, verbose: bool = False) -> None:
  """Writes `prog: error: <message>` to stderr (further lines of the message indented); the traceback if verbose."""
  if verbose:
    traceback.print_exception(e, file=sys.stderr)
  first, *rest = message(e).splitlines()
  sys.stderr.write("".join([f"{prog}: error: {first}\n"] + [f"  {line.strip()}\n" for line in rest if line.strip()]))
  sys.stderr.flush()


def _verbose(args: list[str]) -> bool:
  """Whether `--verbosity` (`-v`) is 1 or more: from the parsed flag, else from the raw arguments."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  if flags.FLAGS.is_parsed():
    return flags.FLAGS["verbosity"].value >= 1
  level = 0
  for i, arg in enumerate(args):
    name, eq, value = arg.partition("=")
    if name in ("--verbosity", "-verbosity", "--v", "-v"):
      value = value if eq else (args[i + 1] if i + 1 < len(args) else "0")
      try:
        level = int(value)
      except ValueError:
        pass
  return level >= 1


def _fail(prog: str, e: BaseException, args: list[str]) -> None:
  """Reports an expected error and exits with its status; re-raises anything else (a bug keeps its traceback)."""
  code = exit_code(e)
  if code is None:
    raise e
  report(prog, e, verbose=_verbose(args))
  sys.exit(code)


def _guarded(prog: str, main: Callable[[list[str]], Any], args: list[str]) -> Callable[[list[str]], Any]:
  """`main` with expected errors turned into one line on stderr and an exit status (before absl's own handler)."""

  @functools.wraps(main)
  def wrapped(argv: list[str]) -> Any:
    try:
      return main(argv)
    except Exception as e:  # pylint: disable=broad-except  # _fail re-raises the unexpected ones
      _fail(prog, e, args)

  return wrapped


def _parse_flags(prog: str, args: list[str], argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag reported in one line (absl's own parser prints two and exits 1)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    _fail(prog, e, args)
    raise  # unreachable: _fail exits


def _reset_flags() -> None:
  """Forgets the flag values of an earlier command in this process (the tests run several)."""
  from absl import flags  # pylint: disable=import-outside-toplevel

  if flags.FLAGS.is_parsed():
    flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith("config.")]:  # per-run override flags of ml_collections
    delattr(flags.FLAGS, name)
  if "disentangle_jax.cli._flags" in sys.modules:
    sys.modules["disentangle_jax.cli._flags"].reset()


def run(argv: list[str] | None = None) -> None:
  """Entry point of the console script; exits with the status listed in `errors` (0 when the command returns)."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(_usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  name = argv[1]
  if name not in COMMANDS or importlib.util.find_spec(COMMANDS[name][0]) is None:
    print(f"disentangle-jax: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
    sys.exit(2)
  prog = f"disentangle-jax {name}"
  args = argv[2:]
  # TensorFlow only feeds data here; its C++ start-up chatter (CUDA probing on CPU hosts) would bury the run's own
  # log. Python-level TensorFlow errors still raise. Set TF_CPP_MIN_LOG_LEVEL to see it.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  saved_argv = sys.argv
  # ml_collections' config flag reads sys.argv itself, at import (where an unknown --config.<key> would fail before
  # anything could report it) and when the flags are parsed: hide the overrides until they have been checked.
  sys.argv = [prog] + [a for a in args if not _CONFIG_OVERRIDE.match(a)]
  try:
    module = importlib.import_module(COMMANDS[name][0])
    from absl import app  # pylint: disable=import-outside-toplevel
    from absl import flags  # pylint: disable=import-outside-toplevel
    from absl import logging  # pylint: disable=import-outside-toplevel

    handler = logging.get_absl_handler()
    if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
      handler.addFilter(_LibraryInfoFilter())
    if any(a in ("-h", "--help") for a in args):
      # absl's own --help describes the __main__ module (the console-script shim); describe the command instead.
      print((module.__doc__ or "").strip() + "\n")
      for defining in flags.FLAGS.flags_by_module_dict():
        if defining.startswith("disentangle_jax") or defining.startswith("ml_collections"):
          print(flags.FLAGS.module_help(defining))
      print("\n" + EXIT_STATUS)
      sys.exit(0)
    _reset_flags()
    if getattr(module, "CONFIG", None) is not None:  # the command takes an experiment config (cli/_config.py)
      from disentangle_jax.cli import _config  # pylint: disable=import-outside-toplevel

      try:
        args = _config.prepare_argv(args)
      except app.UsageError as e:
        _fail(prog, e, args)
    sys.argv = [prog] + args
    app.run(
      _guarded(prog, module.main, args), argv=[prog] + args, flags_parser=functools.partial(_parse_flags, prog, args)
    )
  finally:
    sys.argv = saved_argv


if __name__ == "__main__":
  run()
