"""Checks of the paths a command line names, run before any model loads or any work starts.

A typo in an output path or an input name should cost a second, not the minutes of loading networks and computing a
result that cannot be written. Each check raises `app.UsageError` (one line, exit status 2) naming the path and
what is wrong with it. Remote paths (`gs://...`) are left to the readers and writers, which know their file
systems. This module defines no flags, so every command (`convert` and `train` too) can use it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

from absl import app


def is_remote(path: str | os.PathLike) -> bool:
  """A URL such as gs://bucket/x: not checked here (only TensorFlow's file systems can)."""
  return "://" in str(path)


def _article(noun: str) -> str:
  return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def check_input_files(paths: Sequence[str | os.PathLike], what: str = "image") -> None:
  """Each path is an existing, readable regular file (`what` names its kind in the message)."""
  for p in paths:
    if is_remote(p):
      continue
    path = pathlib.Path(p)
    if path.is_dir():
      raise app.UsageError(f"{p}: is a directory, not {_article(what)} file")
    if not path.exists():
      raise app.UsageError(f"{p}: no such {what} file")
    if not os.access(path, os.R_OK):
      raise app.UsageError(f"{p}: cannot read the {what} file (permission denied)")


def check_input_path(path: str | os.PathLike, what: str) -> None:
  """`path` exists, as a file or a directory (`what` names what it should be in the message)."""
  if not is_remote(path) and not os.path.exists(path):
    raise app.UsageError(f"{path}: no such {what}")


def check_input_dir(path: str | os.PathLike, what: str = "folder", hint: str = "") -> None:
  """`path` is an existing directory (`hint` is appended to the message when it does not exist)."""
  if is_remote(path):
    return
  p = pathlib.Path(path)
  if not p.exists():
    raise app.UsageError(f"{path}: no such {what}{hint}")
  if not p.is_dir():
    raise app.UsageError(f"{path}: is a file, not {_article(what)}")


def _check_parent(path: pathlib.Path) -> None:
  """The nearest existing ancestor of `path` is a writable directory, so the writer can create what is missing."""
  for ancestor in path.absolute().parents:
    if ancestor.exists():
      if not ancestor.is_dir():
        raise app.UsageError(f"{path}: parent {ancestor} is a file")
      if not os.access(ancestor, os.W_OK | os.X_OK):
        raise app.UsageError(f"{path}: cannot create files in {ancestor} (permission denied)")
      return


def image_suffixes() -> tuple[str, ...]:
  """The file suffixes PIL writes an image format for (.png, .jpg, ...)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel

  Image.init()
  stubs = ("BUFR", "GRIB", "HDF5", "WMF")  # registered, but their save handlers need plug-ins PIL lacks
  return tuple(
    sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.SAVE and fmt not in stubs)
  )


def check_output_path(path: str | os.PathLike, flag: str = "--out", suffixes: Sequence[str] | None = None) -> None:
  """`path` can be written as a file: not a directory, a known suffix, under a directory that is or can be made.

  Args:
    path: the file to write (overwritten if it exists).
    flag: the flag that named it, for the messages.
    suffixes: the lower-case suffixes accepted (".gif", ...); None: any.
  """
  if is_remote(path):
    return
  p = pathlib.Path(path)
  if p.is_dir():
    raise app.UsageError(f"{path}: is a directory; {flag} names the file to write")
  if suffixes is not None and p.suffix.lower() not in suffixes:
    wanted = " or ".join(suffixes) if len(suffixes) <= 4 else "an image suffix such as .png or .jpg"
    raise app.UsageError(f"{flag}={path}: must end in {wanted}")
  if p.exists() and not os.access(p, os.W_OK):
    raise app.UsageError(f"{path}: cannot overwrite the file (permission denied)")
  _check_parent(p)


def check_output_image(path: str | os.PathLike, flag: str = "--out") -> None:
  """`check_output_path` for an image, in a format PIL writes."""
  check_output_path(path, flag, suffixes=image_suffixes())


def check_output_dir(path: str | os.PathLike, *, empty: bool = True) -> None:
  """`path` can be used as an output directory: absent or a directory (empty unless `empty` is False)."""
  if is_remote(path):
    return
  p = pathlib.Path(path)
  if p.exists():
    if not p.is_dir():
      raise app.UsageError(f"{path}: is a file, not a directory")
    if empty and any(p.iterdir()):
      raise app.UsageError(f"{path}: exists and is not empty; choose a new directory")
    return
  _check_parent(p)
