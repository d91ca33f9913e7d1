"""`WorkdirLock`: one trainer per workdir.

Two trainers on one workdir would both write TensorBoard events and race each other's checkpoint saves. The lock
is an exclusive `flock` on `<workdir>/train.lock`, a file that also names its holder (host, pid, start time). The
kernel drops a `flock` when its process dies, however it dies, so a lock left by a killed run is simply taken over
(with a warning naming the dead holder); a live holder makes the second trainer fail at once with `WorkdirBusyError`.
With several processes only process 0 takes it (the others share the run).
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import socket
import time

from absl import logging

from disentangle_jax import errors

LOCK_FILE = "train.lock"


class WorkdirBusyError(errors.UserError, RuntimeError):
  """Another live process is training in this workdir."""


class WorkdirLock:
  """Context manager holding `<workdir>/train.lock` for the duration of a run."""

  def __init__(self, workdir: str | os.PathLike):
    self.path = pathlib.Path(workdir) / LOCK_FILE
    self._file = None

  def _holder(self) -> str:
    try:
      info = json.loads(self.path.read_text() or "{}")
    except (OSError, ValueError):
      info = {}
    if not info:
      return "an unknown process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"host {info.get('host', '?')}, pid {info.get('pid', '?')}, since {since}"

  def acquire(self) -> None:
    self.path.parent.mkdir(parents=True, exist_ok=True)
    f = open(self.path, "a+", encoding="utf-8")  # pylint: disable=consider-using-with  # held until release()
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.close()
      raise WorkdirBusyError(
        f"{self.path.parent}: another trainer is running in this workdir ({self._holder()}); "
        "wait for it to finish, stop it, or pass another --workdir"
      ) from None
    f.seek(0)
    previous = f.read().strip()
    if previous:  # the holder died without releasing: the kernel dropped its flock
      logging.warning("%s: taking over the lock of a process that is gone (%s)", self.path, self._holder())
    f.seek(0)
    f.truncate()
    f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}))
    f.flush()
    self._file = f

  def release(self) -> None:
    if self._file is None:
      return
    try:
      self._file.truncate(0)  # an empty file: released cleanly
      self._file.flush()
      fcntl.flock(self._file, fcntl.LOCK_UN)
    finally:
      self._file.close()
      self._file = None

  def __enter__(self) -> WorkdirLock:
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()
