"""The on-disk format of the generated (w, image) dataset: a TFDS folder of ArrayRecord shards.

ArrayRecord rather than TFRecord because the training pipeline reads examples by index: a deterministic,
index-based stream can start at any step without replaying the ones before it (see `pipeline.py`). The folder is a
regular TFDS dataset (`dataset_info.json`, `features.json`), so `tfds.builder_from_directory(dir).as_data_source(split)`
reads it too.

Every example carries the seed it was rendered from: example `s` has `z = normal(fold_in(key(data.seed), s))`.
Train examples have seeds `0 .. num_train - 1`, validation examples `VALIDATION_SEED_OFFSET + j`, so the two splits
never share a latent and growing one split leaves the other unchanged.

Next to the shards, `checksums/<shard file name>.json` records each finished shard's record count, size and sha256
(`write_checksum_record`), so that a shard truncated or changed after it was written is recognised
(`shard_problem`); `generate.py` writes these records and verifies them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from array_record.python import array_record_module

from disentangle_jax import errors


class DataError(errors.UserError, ValueError):
  """A dataset folder that cannot be used or resumed as it is; the message names the file and what to do."""


def hide_accelerators_from_tensorflow() -> None:
  """TensorFlow only reads and decodes here: keep it off the GPUs/TPUs so it takes no memory JAX needs."""
  try:
    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
  except (RuntimeError, ValueError):  # already initialised, or no such device type
    pass


hide_accelerators_from_tensorflow()

DATASET_NAME = "generated_faces"
FILE_FORMAT = "array_record"
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
SPLITS = ("train", "validation")
VALIDATION_SEED_OFFSET = 1 << 30
# One record per chunk (cheap random access); PNG bytes do not compress further, so no compression either.
WRITER_OPTIONS = "group_size:1,uncompressed"
GENERATION_FILE = "generation.json"
# A subfolder, so that the checksum records never match the shard file names (`*.array_record-*`) in listings.
CHECKSUM_DIR = "checksums"
_HASH_CHUNK = 1 << 22


def features(resolution: int, w_dim: int, z_dim: int) -> tfds.features.FeaturesDict:
  """The example schema: the rendered image (lossless PNG), its w, its z and its seed."""
  return tfds.features.FeaturesDict(
    {
      "image": tfds.features.Image(shape=(resolution, resolution, 3), encoding_format="png"),
      "w": tfds.features.Tensor(shape=(w_dim,), dtype=np.float32),
      "z": tfds.features.Tensor(shape=(z_dim,), dtype=np.float32),
      "seed": tfds.features.Scalar(dtype=np.int64),
    }
  )


def first_seed(split: str) -> int:
  """The seed of a split's first example."""
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
  return 0 if split == "train" else VALIDATION_SEED_OFFSET


@dataclasses.dataclass(frozen=True)
class Shard:
  """One output file: examples `start .. start + length - 1` of `split` (indices within the split)."""

  split: str
  index: int
  num_shards: int
  start: int
  length: int
  path: str

  @property
  def seeds(self) -> np.ndarray:
    return np.arange(self.start, self.start + self.length, dtype=np.int64) + first_seed(self.split)


def _template(data_dir: str, split: str) -> tfds.core.ShardedFileTemplate:
  return tfds.core.ShardedFileTemplate(
    data_dir=data_dir, template=FILENAME_TEMPLATE, dataset_name=DATASET_NAME, split=split, filetype_suffix=FILE_FORMAT
  )


def plan(data_dir: str, sizes: dict[str, int], examples_per_shard: int) -> list[Shard]:
  """All shards of all splits, in order; `sizes` maps split name -> number of examples."""
  if examples_per_shard <= 0:
    raise ValueError(f"data.examples_per_shard must be positive, got {examples_per_shard}")
  shards = []
  for split, size in sizes.items():
    if size < 0 or size >= VALIDATION_SEED_OFFSET:
      raise ValueError(f"split {split!r}: size {size} outside [0, {VALIDATION_SEED_OFFSET})")
    first_seed(split)
    num_shards = math.ceil(size / examples_per_shard)
    template = _template(data_dir, split)
    for i in range(num_shards):
      start = i * examples_per_shard
      shards.append(
        Shard(
          split,
          i,
          num_shards,
          start,
          min(examples_per_shard, size - start),
          os.fspath(template.sharded_filepath(shard_index=i, num_shards=num_shards)),
        )
      )
  return shards


def write_metadata(
  data_dir: str, shards: list[Shard], feature_dict: tfds.features.FeaturesDict, description: str
) -> None:
  """Writes `dataset_info.json` and `features.json` for finished shards (the last step of a generation)."""
  infos = []
  for split in dict.fromkeys(s.split for s in shards):
    mine = [s for s in shards if s.split == split]
    infos.append(
      tfds.core.SplitInfo(
        name=split,
        shard_lengths=[s.length for s in mine],
        num_bytes=sum(tf.io.gfile.stat(s.path).length for s in mine),
        filename_template=_template(data_dir, split),
      )
    )
  tfds.folder_dataset.write_metadata(
    data_dir=data_dir,
    features=feature_dict,
    split_infos=infos,
    filename_template=FILENAME_TEMPLATE,
    check_data=False,
    description=description,
  )


# --- checksum records: catch shards truncated or changed after they were written -------------------------------------


def checksum_record_path(shard_path: str) -> str:
  """Where the checksum record of the shard at `shard_path` lives: `<folder>/checksums/<shard file name>.json`."""
  return os.path.join(os.path.dirname(shard_path), CHECKSUM_DIR, os.path.basename(shard_path) + ".json")


def digest(path: str) -> tuple[int, str]:
  """(size in bytes, sha256 hex) of a file, read in chunks (hashlib releases the GIL, so threads hash in parallel)."""
  sha, size = hashlib.sha256(), 0
  with tf.io.gfile.GFile(path, "rb") as f:
    while chunk := f.read(_HASH_CHUNK):
      sha.update(chunk)
      size += len(chunk)
  return size, sha.hexdigest()


def count_records(path: str) -> int:
  """The number of records of an ArrayRecord file; DataError if it cannot be opened (truncated, corrupt footer).

  Reads only the footer and index, not the records: cheap whatever the shard's size.
  """
  reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
  try:
    if not reader.ok():  # the reader does not raise; a file it cannot parse only reports not ok
      raise DataError(f"{path}: unreadable ArrayRecord file (truncated or corrupt)")
    return int(reader.num_records())
  finally:
    reader.close()


def write_checksum_record(
  shard_path: str, num_records: int, size: int | None = None, sha256: str | None = None
) -> None:
  """Records a finished shard's count, size and sha256 (hashed here unless given); temp file + rename, so a reader
  sees either no record or a complete one."""
  if size is None or sha256 is None:
    size, sha256 = digest(shard_path)
  path = checksum_record_path(shard_path)
  tf.io.gfile.makedirs(os.path.dirname(path))
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(
      {
        "shard": os.path.basename(shard_path),
        "num_records": int(num_records),
        "num_bytes": int(size),
        "sha256": sha256,
      },
      f,
      indent=2,
      sort_keys=True,
    )
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _read_checksum_record(shard_path: str) -> dict[str, Any] | None:
  """The shard's checksum record; None if it has none (an older version's shard, or killed just before writing it)."""
  path = checksum_record_path(shard_path)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    record = json.load(f)
  return {
    "num_records": int(record["num_records"]),
    "num_bytes": int(record["num_bytes"]),
    "sha256": str(record["sha256"]),
  }


# What a damaged JSON file raises (JSONDecodeError and UnicodeDecodeError are ValueErrors).
_UNREADABLE_JSON = (ValueError, KeyError, TypeError, tf.errors.OpError)


def shard_problem(shard: Shard, checksum: bool = True) -> str | None:
  """What is wrong with a shard on disk (None: nothing), checked against its checksum record and the plan.

  With a record: the size, then (if `checksum`) the sha256, then the record count must match the record, and the
  count the planned `shard.length`. Without a record (an older version's shard): only that it opens and has the
  planned count; its content cannot be checked. `checksum=False` skips hashing (a stat and the footer only).
  """
  path = shard.path
  try:
    if not tf.io.gfile.exists(path):
      return "missing"
    try:
      record = _read_checksum_record(path)
    except _UNREADABLE_JSON as e:
      return f"its checksum record {checksum_record_path(path)} is unreadable ({type(e).__name__}: {e})"
    if record is not None:
      size = tf.io.gfile.stat(path).length
      if size != record["num_bytes"]:
        return f"{size} bytes but {record['num_bytes']} when it was written (truncated or overwritten)"
      if checksum and digest(path)[1] != record["sha256"]:
        return "checksum mismatch (file changed after it was written)"
    try:
      n = count_records(path)
    except DataError:
      return "unreadable ArrayRecord file (truncated or corrupt)"
    if record is not None and n != record["num_records"]:
      return f"{n} records but {record['num_records']} when it was written"
    if n != shard.length:
      return f"{n} records but the plan (generation.json) has {shard.length}"
  except (OSError, tf.errors.OpError) as e:
    return f"cannot be read ({type(e).__name__}: {e})"
  return None


def metadata_problems(data_dir: str, shards: list[Shard]) -> list[str]:
  """How `dataset_info.json` disagrees with the planned shards and their files (shard lengths, bytes per split)."""
  path = os.path.join(data_dir, "dataset_info.json")
  if not tf.io.gfile.exists(path):
    return [f"{path}: missing (generation not finished)"]
  try:
    with tf.io.gfile.GFile(path) as f:
      splits = {
        s["name"]: (int(s.get("numBytes", -1)), [int(n) for n in s.get("shardLengths", [])])
        for s in json.load(f)["splits"]
      }
  except _UNREADABLE_JSON as e:
    return [f"{path}: unreadable ({type(e).__name__}: {e})"]
  problems = []
  for split in dict.fromkeys(s.split for s in shards):
    mine = [s for s in shards if s.split == split]
    if split not in splits:
      problems.append(f"{path}: no split {split!r}")
      continue
    num_bytes, lengths = splits[split]
    if lengths != [s.length for s in mine]:
      problems.append(f"{path}: split {split!r} has shard lengths {lengths}, the plan {[s.length for s in mine]}")
    if all(tf.io.gfile.exists(s.path) for s in mine):
      size = sum(tf.io.gfile.stat(s.path).length for s in mine)
      if num_bytes != size:
        problems.append(f"{path}: split {split!r} has {num_bytes} bytes, its shard files {size}")
  return problems
