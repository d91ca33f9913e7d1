"""The `disentangle-jax` command: `disentangle-jax <command> [--flags]`, also `python -m disentangle_jax`.

Each command lives in its own module under `disentangle_jax/cli/` and defines its own absl flags; only the module
of the command being run is imported, so `convert` does not pay for TensorFlow and flags never collide.
"""

from __future__ import annotations

import importlib
import logging as std_logging
import os
import sys

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


def run(argv: list[str] | None = None) -> None:
  """Entry point of the console script."""
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    print(_usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  name = argv[1]
  if name not in COMMANDS or importlib.util.find_spec(COMMANDS[name][0]) is None:
    print(f"disentangle-jax: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
    sys.exit(2)
  # TensorFlow only feeds data here; its C++ start-up chatter (CUDA probing on CPU hosts) would bury the run's own
  # log. Python-level TensorFlow errors still raise. Set TF_CPP_MIN_LOG_LEVEL to see it.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  module = importlib.import_module(COMMANDS[name][0])
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.get_absl_handler().addFilter(_LibraryInfoFilter())
  if any(a in ("-h", "--help") for a in argv[2:]):
    # absl's own --help describes the __main__ module (the console-script shim); describe the command instead.
    print((module.__doc__ or "").strip() + "\n")
    for defining in flags.FLAGS.flags_by_module_dict():
      if defining.startswith("disentangle_jax") or defining.startswith("ml_collections"):
        print(flags.FLAGS.module_help(defining))
    sys.exit(0)
  app.run(module.main, argv=[f"disentangle-jax {name}"] + argv[2:])


if __name__ == "__main__":
  run()
