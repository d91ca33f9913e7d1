"""Fault tests of the generated dataset: damaged shards are found, named and rebuilt (disentangle_jax/data/generate.py).

Reuses `tests/test_data.py`'s small config (4 shards: 3 train, 1 validation, 32px) and its helpers.
"""
# pylint: disable=protected-access  (test_data's helpers)

from __future__ import annotations

import filecmp
import json
import logging
import os
import shutil

import jax
import numpy as np
import pytest

from disentangle_jax import errors
from disentangle_jax import frozen
from disentangle_jax.data import generate
from disentangle_jax.data import tfds_format
from tests import test_data


@pytest.fixture(scope="module")
def g():
  config = test_data._config()
  return frozen.generator(config.generator, config.seed)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory, g):
  """A dataset generated in one go: what any repaired copy must equal byte for byte."""
  out = str(tmp_path_factory.mktemp("faults") / "fresh")
  generate.generate(test_data._config(), out, generator=g)
  return out


def _copy(src, tmp_path, name="copy"):
  out = str(tmp_path / name)
  shutil.copytree(src, out)  # copy2: modification times survive, so "untouched" stays checkable
  return out


def _record(out, name):
  return tfds_format.checksum_record_path(os.path.join(out, name))


def _all_files(d):
  """Every file under `d`, relative: shards, checksum records and metadata."""
  return sorted(os.path.relpath(os.path.join(root, f), d) for root, _, files in os.walk(d) for f in files)


def _mtimes(d):
  return {f: os.stat(os.path.join(d, f)).st_mtime_ns for f in _all_files(d)}


def _rerun(out, g, caplog):
  """Reruns generate on `out`; returns (shards written, generate-data WARNING messages)."""
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    written = generate.generate(test_data._config(), out, generator=g)
  warnings = [
    r.getMessage()
    for r in caplog.records
    if r.levelno >= logging.WARNING and r.getMessage().startswith("generate-data:")
  ]
  return written, warnings


def test_damaged_shards_are_named_and_rebuilt(fresh, g, tmp_path, caplog):
  out = _copy(fresh, tmp_path)
  names = test_data._shards(out)
  assert len(names) == 4
  truncated, flipped, unrecorded, untouched = names
  path = os.path.join(out, truncated)
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 3])
  path = os.path.join(out, flipped)
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2 + 1000] ^= 0x01  # one bit inside a record: the file still opens with the right count
  with open(path, "wb") as f:
    f.write(bytes(data))
  assert tfds_format.count_records(path) == test_data.PER_SHARD
  os.remove(_record(out, unrecorded))  # as if written by a version without checksum records
  before = _mtimes(out)

  problems = generate.verify(out)  # read-only: names the damaged shards, changes nothing
  assert len(problems) == 3, problems
  assert problems[0].startswith(os.path.join(out, truncated) + ": ") and "truncated" in problems[0]
  assert problems[1] == f"{os.path.join(out, flipped)}: checksum mismatch (file changed after it was written)"
  assert problems[2].startswith(f"{os.path.join(out, 'dataset_info.json')}: split 'train' has")  # bytes changed
  assert _mtimes(out) == before

  written, warnings = _rerun(out, g, caplog)
  assert len(warnings) == 2, warnings
  assert warnings[0].startswith(f"generate-data: {os.path.join(out, truncated)}: ")
  assert "truncated" in warnings[0] and warnings[0].endswith("; rebuilding it")
  assert warnings[1] == (
    f"generate-data: {os.path.join(out, flipped)}: checksum mismatch (file changed after it was written); rebuilding it"
  )
  assert [os.path.basename(s.path) for s in written] == [truncated, flipped]
  for name in (unrecorded, untouched):  # kept as they were; the unrecorded one only got its record back
    assert os.stat(os.path.join(out, name)).st_mtime_ns == before[name]
  assert os.stat(os.path.join(out, "dataset_info.json")).st_mtime_ns != before["dataset_info.json"]

  assert _all_files(out) == _all_files(fresh)
  for f in _all_files(fresh):  # shards, checksum records, dataset_info.json: as if generated in one go
    assert filecmp.cmp(os.path.join(out, f), os.path.join(fresh, f), shallow=False), f
  assert generate.verify(out) == []
  for a, b in zip(test_data._take(test_data._pipe(out)), test_data._take(test_data._pipe(fresh))):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_clean_rerun_rebuilds_nothing(fresh, g, tmp_path, caplog):
  out = _copy(fresh, tmp_path)
  before = _mtimes(out)
  written, warnings = _rerun(out, g, caplog)
  assert written == [] and warnings == []
  assert _mtimes(out) == before  # no shard, record or metadata rewritten


def test_verify_names_every_fault_without_rendering(fresh, tmp_path):
  assert generate.verify(fresh) == []
  out = _copy(fresh, tmp_path)
  names = test_data._shards(out)
  with open(_record(out, names[0]), "w") as f:
    f.write('{"num_records": 16, "sha')  # a damaged checksum record
  record = json.load(open(_record(out, names[1])))
  record["num_records"] = 15  # a record that disagrees with the file
  json.dump(record, open(_record(out, names[1]), "w"))
  os.remove(os.path.join(out, names[2]))
  problems = generate.verify(out)
  assert len(problems) == 3, problems
  assert problems[0].startswith(
    f"{os.path.join(out, names[0])}: its checksum record {_record(out, names[0])} is unreadable"
  )
  assert problems[1] == f"{os.path.join(out, names[1])}: 16 records but 15 when it was written"
  assert problems[2] == f"{os.path.join(out, names[2])}: missing"

  # Without hashing, a flipped byte of the same size goes unseen; a size change does not.
  out = _copy(fresh, tmp_path, "flipped")
  path = os.path.join(out, names[3])
  data = bytearray(open(path, "rb").read())
  data[len(data) // 2 + 1000] ^= 0x01
  open(path, "wb").write(bytes(data))
  assert generate.verify(out, checksums=False) == []
  assert generate.verify(out) == [f"{path}: checksum mismatch (file changed after it was written)"]
  open(path, "ab").write(b"extra")
  problems = generate.verify(out, checksums=False)
  assert len(problems) == 2, problems
  assert problems[0].startswith(f"{path}: {len(data) + 5} bytes but {len(data)} when it was written")
  assert problems[1].startswith(f"{os.path.join(out, 'dataset_info.json')}: split 'validation' has {len(data)} bytes")


def test_unreadable_settings_are_a_user_error(fresh, g, tmp_path):
  out = _copy(fresh, tmp_path)
  settings = os.path.join(out, "generation.json")
  with open(settings, "w") as f:
    f.write("{not json")
  with pytest.raises(generate.DataError, match=f"{settings}: unreadable") as raised:
    generate.generate(test_data._config(), out, generator=g)
  assert isinstance(raised.value, errors.UserError) and isinstance(raised.value, ValueError)
  assert generate.verify(out)[0].startswith(f"{settings}: unreadable")
  assert generate.verify(str(tmp_path / "nothing")) == [
    f"{tmp_path / 'nothing' / 'generation.json'}: missing; not a folder written by generate-data"
  ]
  config = test_data._config()
  config.data.truncation_psi = 0.5
  with pytest.raises(generate.DataError, match="generation.json.*truncation_psi"):
    generate.generate(config, fresh, generator=g)
