"""The `disentangle-jax` entry point."""

import logging as std_logging
import os

from absl import logging

from disentangle_jax import main


def _record(level: int, *parts: str) -> std_logging.LogRecord:
  return std_logging.LogRecord("absl", level, os.sep.join(("", "site-packages") + parts), 1, "msg", None, None)


def test_library_info_lines_are_hidden_unless_verbose():
  f = main._LibraryInfoFilter()  # pylint: disable=protected-access
  before = logging.get_verbosity()
  try:
    logging.set_verbosity(logging.INFO)
    assert not f.filter(_record(std_logging.INFO, "orbax", "checkpoint", "checkpoint_manager.py"))
    assert not f.filter(_record(std_logging.INFO, "tensorflow_datasets", "core", "dataset_info.py"))
    assert f.filter(_record(std_logging.WARNING, "orbax", "checkpoint", "checkpoint_manager.py"))
    assert f.filter(_record(std_logging.INFO, "disentangle_jax", "train.py"))
    logging.set_verbosity(1)  # --verbosity=1
    assert f.filter(_record(std_logging.INFO, "orbax", "checkpoint", "checkpoint_manager.py"))
  finally:
    logging.set_verbosity(before)
