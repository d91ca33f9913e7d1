"""The on-disk format of the generated (w, image) dataset: a TFDS folder of ArrayRecord shards.

ArrayRecord rather than TFRecord because the training pipeline reads examples by index: a deterministic,
index-based stream can start at any step without replaying the ones before it (see `pipeline.py`). The folder is a
regular TFDS dataset (`dataset_info.json`, `features.json`), so `tfds.builder_from_directory(dir).as_data_source(split)`
reads it too.

Every example carries the seed it was rendered from: example `s` has `z = normal(fold_in(key(data.seed), s))`.
Train examples have seeds `0 .. num_train - 1`, validation examples `VALIDATION_SEED_OFFSET + j`, so the two splits
never share a latent and growing one split leaves the other unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

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


def features(resolution: int, w_dim: int, z_dim: int) -> tfds.features.FeaturesDict:
  """The example schema: the rendered image (lossless PNG), its w, its z and its seed."""
  return tfds.features.FeaturesDict({
      "image": tfds.features.Image(shape=(resolution, resolution, 3), encoding_format="png"),
      "w": tfds.features.Tensor(shape=(w_dim,), dtype=np.float32),
      "z": tfds.features.Tensor(shape=(z_dim,), dtype=np.float32),
      "seed": tfds.features.Scalar(dtype=np.int64),
  })


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
  return tfds.core.ShardedFileTemplate(data_dir=data_dir, template=FILENAME_TEMPLATE, dataset_name=DATASET_NAME,
                                       split=split, filetype_suffix=FILE_FORMAT)


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
      shards.append(Shard(split, i, num_shards, start, min(examples_per_shard, size - start),
                          os.fspath(template.sharded_filepath(shard_index=i, num_shards=num_shards))))
  return shards


def write_metadata(data_dir: str, shards: list[Shard], feature_dict: tfds.features.FeaturesDict,
                   description: str) -> None:
  """Writes `dataset_info.json` and `features.json` for finished shards (the last step of a generation)."""
  infos = []
  for split in dict.fromkeys(s.split for s in shards):
    mine = [s for s in shards if s.split == split]
    infos.append(tfds.core.SplitInfo(
        name=split, shard_lengths=[s.length for s in mine],
        num_bytes=sum(tf.io.gfile.stat(s.path).length for s in mine),
        filename_template=_template(data_dir, split)))
  tfds.folder_dataset.write_metadata(data_dir=data_dir, features=feature_dict, split_infos=infos,
                                     filename_template=FILENAME_TEMPLATE, check_data=False,
                                     description=description)
