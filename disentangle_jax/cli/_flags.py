"""Flags the application commands share, and the `--id a.png b.png --attr c.png d.png` list syntax.

absl flags take one value per flag; the commands also accept several files after `--id` / `--attr` (as in
`disentangle-jax swap --id a.png b.png --attr c.png d.png`). For that the flag parser stops at the first bare
word (no GNU-style interleaving), and `finish(argv)` hands the words that follow to the list flag parsed last, then
parses the flags after them. `--id=a.png,b.png` and repeated use also work.

Defined once here (not per command) so several commands can be imported in one process, as the tests do.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app
from absl import flags

FLAGS = flags.FLAGS
FLAGS.set_gnu_getopt(False)

LIST_FLAGS = ("id", "attr")
_order: list[str] = []  # list flags in the order they were parsed


class _OrderedListParser(flags.ListParser):
  """A comma-separated list flag that appends across uses and records that it was parsed last."""

  def __init__(self, name: str):
    super().__init__()
    self._name = name

  def parse(self, argument):
    _order.append(self._name)
    values = super().parse(argument)
    previous = FLAGS[self._name].value if self._name in FLAGS and FLAGS[self._name].present else None
    return (list(previous) if previous else []) + values


def _define_list(name: str, help_text: str) -> None:
  flags.DEFINE(_OrderedListParser(name), name, None, help_text, serializer=flags.CsvListSerializer(","))


_define_list("id", "identity images: --id a.png b.png (or --id=a.png,b.png); for `video`, one image")
_define_list("attr", "attribute images (swap), or the driving video (video)")
flags.DEFINE_string("model", None, "an exported model directory or a training workdir")
if "out" not in FLAGS:  # generate-data defines --out too (an output folder); tests import both
  flags.DEFINE_string("out", None, "output file")
flags.DEFINE_bool("convert", False, "convert grayscale / transparent images to RGB instead of refusing them")
flags.DEFINE_bool("align", False, "detect the face in each photo and align it FFHQ-style first (real photos)")
flags.DEFINE_string(
  "detector",
  None,
  "MediaPipe weights for --align: the mediapipe==0.10.21 wheel or a directory "
  "with converted `blazeface` and `mediapipe_facemesh` weights (default: $DISENTANGLE_JAX_MEDIAPIPE, "
  "then weights/mediapipe_facemesh)",
)
flags.DEFINE_bool(
  "all_faces", False, "with --align: use every face found in a photo (each is listed), not only the largest"
)
flags.DEFINE_alias("all-faces", "all_faces")
flags.DEFINE_integer("batch_size", 16, "images per model call", lower_bound=1)
flags.DEFINE_float("fps", 10.0, "frames per second of animations and videos", lower_bound=0.1)


def finish(argv: Sequence[str]) -> list[str]:
  """Completes flag parsing after absl stopped at a bare word; returns the words no flag claimed (argv[0] first)."""
  rest = list(argv[1:])
  current = _order[-1] if _order and rest and not rest[0].startswith("-") else None
  extra: dict[str, list[str]] = {}
  others: list[str] = []
  positional: list[str] = []
  i = 0
  while i < len(rest):
    token = rest[i]
    if token == "--":
      positional.extend(rest[i + 1 :])
      break
    if token.startswith("-"):
      name, eq, value = token.lstrip("-").partition("=")
      if name in LIST_FLAGS:
        current = name
        if eq:
          extra.setdefault(name, []).extend(v for v in value.split(",") if v)
        i += 1
        continue
      current = None
      others.append(token)
      takes_value = not eq and name in FLAGS and not FLAGS[name].boolean
      if takes_value and i + 1 < len(rest):
        others.append(rest[i + 1])
        i += 1
    elif current is not None:
      extra.setdefault(current, []).extend(v for v in token.split(",") if v)
    else:
      positional.append(token)
    i += 1
  if others:
    left = FLAGS(["_"] + others, known_only=False)
    positional.extend(left[1:])
  for name, values in extra.items():
    FLAGS[name].value = list(FLAGS[name].value or []) + values
    FLAGS[name].present = True
  return [argv[0]] + positional


def no_positional(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")


def require(*names: str) -> None:
  """Usage error naming every required flag that was not given."""
  missing = [n for n in names if FLAGS[n].value in (None, "", [])]
  if missing:
    raise app.UsageError(f"missing required flag(s): {', '.join('--' + n for n in missing)}")


def reset() -> None:
  """Forgets parsed values (tests run several commands in one process)."""
  _order.clear()
  FLAGS.unparse_flags()
