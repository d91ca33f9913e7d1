"""Tests of the generated (w, image) dataset and its input pipelines (disentangle_jax/data)."""

from __future__ import annotations

import filecmp
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from PIL import Image

from disentangle_jax import frozen
from disentangle_jax.configs import smoke
from disentangle_jax.data import folder
from disentangle_jax.data import generate
from disentangle_jax.data import pipeline
from disentangle_jax.data import tfds_format

NUM_TRAIN, NUM_VALIDATION, PER_SHARD = 40, 12, 16


# --- fixtures --------------------------------------------------------------------------------------------------------


def _config():
  """The smoke config (its tiny random StyleGAN2, 32px) with a smaller dataset."""
  c = smoke.get_config()
  c.data.num_train, c.data.num_validation, c.data.examples_per_shard = NUM_TRAIN, NUM_VALIDATION, PER_SHARD
  c.data.generate_batch_size = 8
  return c


@pytest.fixture(scope="module")
def g():
  config = _config()
  return frozen.generator(config.generator, config.seed)  # what generate() builds from the config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """A dataset generated on all 8 CPU devices, G built from the config."""
  out = str(tmp_path_factory.mktemp("data") / "ds")
  generate.generate(_config(), out)
  return out


def _shards(d):
  return sorted(f for f in os.listdir(d) if ".array_record-" in f)


def _read_split(d, split):
  source = tfds.builder_from_directory(d).as_data_source(split)
  return [source[i] for i in range(len(source))]


# --- generation ------------------------------------------------------------------------------------------------------


def test_generated_dataset_reads_back_exactly(dataset, g):
  config = _config()
  builder = tfds.builder_from_directory(dataset)
  assert builder.info.splits["train"].num_examples == NUM_TRAIN
  assert builder.info.splits["validation"].num_examples == NUM_VALIDATION
  assert builder.info.splits["train"].num_shards == 3
  train, validation = _read_split(dataset, "train"), _read_split(dataset, "validation")
  examples = train + validation
  seeds = np.array([e["seed"] for e in examples])
  np.testing.assert_array_equal(
    seeds, np.concatenate([np.arange(NUM_TRAIN), tfds_format.VALIDATION_SEED_OFFSET + np.arange(NUM_VALIDATION)])
  )
  # Recompute every example from its seed alone: z, then w = the first truncated row, then G(w broadcast).
  base = jax.random.key(config.data.seed)
  z = np.stack([np.asarray(jax.random.normal(jax.random.fold_in(base, int(s)), (g.config.z_dim,))) for s in seeds])
  np.testing.assert_array_equal(np.stack([e["z"] for e in examples]), z)
  ws = np.asarray(
    g.mapping(
      jnp.asarray(z), truncation_psi=config.data.truncation_psi, truncation_cutoff=config.data.truncation_cutoff
    )
  )
  w = np.stack([e["w"] for e in examples])
  assert w.dtype == np.float32 and w.shape == (len(examples), g.config.w_dim)
  np.testing.assert_allclose(w, ws[:, 0], rtol=0, atol=1e-6)
  images = np.asarray(g.synthesis(jnp.repeat(jnp.asarray(w)[:, None], g.config.num_ws, axis=1)))
  expected = np.clip(np.round((images + 1) * 127.5), 0, 255).astype(np.uint8)
  got = np.stack([e["image"] for e in examples])
  assert got.dtype == np.uint8 and got.shape == (len(examples), 32, 32, 3)
  assert np.abs(got.astype(int) - expected).max() <= 1  # PNG is lossless; XLA may round one pixel differently
  assert np.mean(got != expected) < 1e-3
  assert got.std() > 5  # a real picture, not a constant


def test_render_from_ws_uses_every_row(g, tmp_path):
  """`data.render_from = "ws"` (the original's generator): the image from all rows of the truncated mapping, only
  the first `truncation_cutoff` rows truncated; the stored w is still row 0 (what their loader gives D_W)."""
  config = _config()
  config.data.num_train, config.data.num_validation, config.data.examples_per_shard = 8, 4, 8
  config.data.render_from, config.data.truncation_cutoff = "ws", 2  # 2 of the 8 rows at 32 px
  out = str(tmp_path / "ws")
  generate.generate(config, out, generator=g)
  examples = _read_split(out, "train")
  z = jnp.asarray(np.stack([e["z"] for e in examples]))
  ws = g.mapping(z, truncation_psi=config.data.truncation_psi, truncation_cutoff=2)
  assert not np.allclose(np.asarray(ws[:, 0]), np.asarray(ws[:, -1]))  # the rows differ
  np.testing.assert_allclose(np.stack([e["w"] for e in examples]), np.asarray(ws[:, 0]), rtol=0, atol=1e-6)
  expected = np.clip(np.round((np.asarray(g.synthesis(ws)) + 1) * 127.5), 0, 255)
  got = np.stack([e["image"] for e in examples]).astype(int)
  assert np.abs(got - expected).max() <= 1 and np.mean(got != expected) < 1e-3
  row0 = np.asarray(g.synthesis(jnp.repeat(ws[:, :1], g.config.num_ws, axis=1)))
  assert np.abs(got - np.clip(np.round((row0 + 1) * 127.5), 0, 255)).max() > 8  # not the broadcast row 0
  assert json.load(open(os.path.join(out, tfds_format.GENERATION_FILE)))["render_from"] == "ws"


def test_sharded_generation_equals_single_device(dataset, g, tmp_path):
  config = _config()
  out = str(tmp_path / "one")
  generate.generate(config, out, generator=g, devices=jax.devices()[:1])
  for split in ("train", "validation"):
    a, b = _read_split(dataset, split), _read_split(out, split)
    for key in ("seed", "z"):
      np.testing.assert_array_equal(np.stack([e[key] for e in a]), np.stack([e[key] for e in b]))
    # XLA's kernels differ in the last bit between batch shapes; PNG pixels agree within one level.
    np.testing.assert_allclose(np.stack([e["w"] for e in a]), np.stack([e["w"] for e in b]), rtol=0, atol=1e-6)
    ia, ib = np.stack([e["image"] for e in a]).astype(int), np.stack([e["image"] for e in b]).astype(int)
    assert np.abs(ia - ib).max() <= 1 and np.mean(ia != ib) < 1e-3


def test_killed_generation_resumes_to_the_same_dataset(dataset, g, tmp_path):
  config = _config()
  out = str(tmp_path / "resumed")

  def die_after_two(shard):
    if shard.index == 1:
      raise KeyboardInterrupt("simulated kill")

  with pytest.raises(KeyboardInterrupt):
    generate.generate(config, out, generator=g, on_shard_written=die_after_two)
  done = _shards(out)
  assert len(done) == 2 and not os.path.exists(os.path.join(out, "dataset_info.json"))
  before = {f: (os.stat(os.path.join(out, f)).st_mtime_ns, open(os.path.join(out, f), "rb").read()) for f in done}
  stale = os.path.join(out, "generated_faces-train.array_record-00002-of-00003.tmp-0-12345")
  with open(stale, "wb") as f:  # a half-written shard of a hard-killed run
    f.write(b"partial")
  written = generate.generate(config, out, generator=g)
  assert [s.path for s in written] == [os.path.join(out, f) for f in _shards(dataset) if f not in done]
  assert not os.path.exists(stale)
  for f, (mtime, data) in before.items():
    assert os.stat(os.path.join(out, f)).st_mtime_ns == mtime
    assert open(os.path.join(out, f), "rb").read() == data
  assert _shards(out) == _shards(dataset)
  for f in _shards(dataset):
    assert filecmp.cmp(os.path.join(out, f), os.path.join(dataset, f), shallow=False), f
  assert generate.generate(config, out, generator=g) == []  # complete: nothing rewritten


def test_rerun_with_other_settings_is_refused(dataset, g):
  config = _config()
  config.data.truncation_psi = 0.5
  with pytest.raises(ValueError, match="generation.json.*truncation_psi"):
    generate.generate(config, dataset, generator=g)
  config = _config()
  other = frozen.generator(config.generator, config.seed + 1)
  with pytest.raises(ValueError, match="generation.json.*generator_fingerprint"):
    generate.generate(config, dataset, generator=other)


def test_two_processes_write_disjoint_shards(dataset, g, tmp_path):
  config = _config()
  out = str(tmp_path / "pod")
  first = generate.generate(config, out, generator=g, process_index=1, process_count=2)
  assert not os.path.exists(os.path.join(out, "dataset_info.json"))
  second = generate.generate(config, out, generator=g, process_index=0, process_count=2)
  assert {s.path for s in first}.isdisjoint(s.path for s in second)
  assert _shards(out) == _shards(dataset) and os.path.exists(os.path.join(out, "dataset_info.json"))


# --- the training pipeline --------------------------------------------------------------------------------------------


def _take(p, n=None):
  out = []
  for batch in p:
    out.append(jax.tree.map(np.asarray, batch))
    if n is not None and len(out) == n:
      break
  return out


def _pipe(dataset, **kw):
  kw = {"batch_size": 8, "seed": 3, "cross_every": 3, "num_steps": 7, **kw}
  return pipeline.Pipeline(dataset, "train", **kw)


def test_batch_schedule(dataset):
  p = _pipe(dataset, num_steps=9)
  batches = _take(p)
  assert [b["same"] for b in batches] == [True, True, False] * 3
  assert [b["step"] for b in batches] == list(range(9))
  for b in batches:
    assert b["id"].shape == (8, 32, 32, 3) and b["id"].dtype == np.float32 and b["w_real"].shape == (8, 32)
    assert -1.0 <= b["id"].min() and b["id"].max() <= 1.0
    if b["same"]:
      np.testing.assert_array_equal(b["id"], b["attr"])
    else:  # every row pairs two different images
      assert all(np.any(b["id"][r] != b["attr"][r]) for r in range(8))
  for step in range(30):
    pos = p.schedule.positions(step)
    assert (pos["id"] == pos["attr"]).all() == pipeline.is_same_step(step, 3)
    assert pipeline.is_same_step(step, 3) or not np.any(pos["id"] == pos["attr"])
  # Each epoch of the id stream visits every example once (shuffled, then repeated).
  ids = np.concatenate([p.schedule.positions(s)["id"] for s in range(NUM_TRAIN // 8 * 2)])
  for epoch in ids.reshape(2, NUM_TRAIN):
    assert sorted(epoch) == list(range(NUM_TRAIN))
  assert not np.array_equal(ids[:NUM_TRAIN], ids[NUM_TRAIN:])


def test_official_cross_phase(dataset):
  """`cross_phase = 0` (configs/paper.py, their `epoch % cross_frequency == 0`): steps 0, 3, 6 are the cross ones."""
  batches = _take(_pipe(dataset, num_steps=6, cross_phase=0))
  assert [b["same"] for b in batches] == [False, True, True] * 2
  assert np.any(batches[0]["id"] != batches[0]["attr"])


def test_images_and_w_match_the_dataset(dataset):
  p = _pipe(dataset, num_steps=1)
  batch = _take(p)[0]
  examples = _read_split(dataset, "train")
  pos = p.schedule.positions(0)
  np.testing.assert_array_equal(
    batch["id"],
    np.stack([examples[i]["image"] for i in pos["id"]]).astype(np.float32) / np.float32(127.5) - np.float32(1),
  )
  np.testing.assert_array_equal(batch["w_real"], np.stack([examples[i]["w"] for i in pos["w_real"]]))


def test_same_seed_same_batches_and_restart_continues(dataset):
  full = _take(_pipe(dataset))
  again = _take(_pipe(dataset))
  restarted = _take(_pipe(dataset, start_step=4, num_steps=3))
  other = _take(_pipe(dataset, seed=4))
  for a, b in zip(full, again):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  for a, b in zip(full[4:], restarted):
    jax.tree.map(np.testing.assert_array_equal, a, b)
  assert not np.array_equal(full[0]["id"], other[0]["id"])


def test_cached_mode_gives_the_same_batches(dataset):
  streamed = _take(_pipe(dataset, start_step=2, num_steps=4))
  cached = _take(_pipe(dataset, start_step=2, num_steps=4, cache=True))
  for a, b in zip(streamed, cached):
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_two_processes_get_disjoint_covering_parts(dataset):
  parts = [_pipe(dataset, batch_size=4, process_index=i, process_count=2) for i in range(2)]
  a, b = (set(p.source.global_indices.tolist()) for p in parts)
  assert a.isdisjoint(b) and a | b == set(range(NUM_TRAIN))
  w_all = np.stack([e["w"] for e in _read_split(dataset, "train")])
  for p, mine in zip(parts, (a, b)):
    for batch in _take(p, 3):  # every image and w a process sees comes from its own part
      for w in batch["w_real"]:
        assert int(np.argmin(np.abs(w_all - w).sum(1))) in mine


def test_global_arrays_on_the_mesh(dataset):
  mesh = jax.make_mesh((8,), ("data",))
  p = pipeline.train_pipeline(_config(), mesh, data_dir=dataset, num_steps=3, start_step=1)
  batches = list(p)
  assert [b["step"] for b in batches] == [1, 2, 3] and [b["same"] for b in batches] == [True, False, True]
  for b in batches:
    assert isinstance(b["id"], jax.Array) and b["id"].shape == (16, 32, 32, 3)
    expected = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    for key in ("id", "attr", "w_real"):
      assert b[key].dtype == jnp.float32 and b[key].sharding.is_equivalent_to(expected, b[key].ndim)
    assert b["w_real"].shape == (16, 32)
    assert -1.0 <= float(b["attr"].min()) and float(b["attr"].max()) <= 1.0


# --- corrupt input ---------------------------------------------------------------------------------------------------


def _copy(dataset, tmp_path):
  out = str(tmp_path / "copy")
  shutil.copytree(dataset, out)
  return out


def test_truncated_shard_is_named(dataset, tmp_path):
  out = _copy(dataset, tmp_path)
  path = os.path.join(out, _shards(out)[1])
  data = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(data[: len(data) // 3])
  with pytest.raises(IOError, match=_shards(out)[1]):
    _pipe(out)


def test_corrupt_bytes_in_shard_are_named(dataset, tmp_path):
  out = _copy(dataset, tmp_path)
  name = "generated_faces-train.array_record-00000-of-00003"
  data = bytearray(open(os.path.join(out, name), "rb").read())
  for off in range(2000, 40000, 1000):
    data[off] ^= 0xFF
  open(os.path.join(out, name), "wb").write(bytes(data))
  with pytest.raises(IOError, match=name):
    _take(_pipe(out, num_steps=5))


def test_corrupt_image_is_named(dataset, tmp_path):
  out = _copy(dataset, tmp_path)
  name = "generated_faces-train.array_record-00001-of-00003"
  path = os.path.join(out, name)
  reader = array_record_module.ArrayRecordReader(path)
  records = reader.read(list(range(reader.num_records())))
  reader.close()
  bad = tf.train.Example.FromString(records[5])
  bad.features.feature["image"].bytes_list.value[0] = b"\x89PNG\r\n\x1a\nnot really a png"
  records[5] = bad.SerializeToString()
  writer = array_record_module.ArrayRecordWriter(path, tfds_format.WRITER_OPTIONS)
  for r in records:
    writer.write(r)
  writer.close()
  with pytest.raises(IOError, match=f"{name}: record 5 is corrupt"):
    _take(_pipe(out, num_steps=2 * NUM_TRAIN // 8))
  with pytest.raises(IOError, match=f"{name}: record 5 is corrupt"):
    _pipe(out, cache=True)


def test_missing_dataset_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="generate-data"):
    _pipe(str(tmp_path / "nothing"))


# --- plain folders of photos -----------------------------------------------------------------------------------------


def test_folder_pipeline(tmp_path):
  rng = np.random.default_rng(0)
  pixels = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(5)]
  for i, p in enumerate(pixels):
    Image.fromarray(p).save(tmp_path / (f"{i}.png" if i % 2 == 0 else f"{i}.jpg"), quality=95)
  (tmp_path / "notes.txt").write_text("not an image")
  mesh = jax.make_mesh((2,), ("data",), devices=jax.devices()[:2])
  batches = list(folder.FolderPipeline(str(tmp_path), size=16, batch_size=2, mesh=mesh))
  assert [b["path"] for b in batches] == [
    [str(tmp_path / "0.png"), str(tmp_path / "1.jpg")],
    [str(tmp_path / "2.png"), str(tmp_path / "3.jpg")],
    [str(tmp_path / "4.png")],
  ]
  assert np.asarray(batches[-1]["valid"]).tolist() == [True, False]
  first = np.asarray(batches[0]["image"])
  assert first.shape == (2, 16, 16, 3) and first.dtype == np.float32
  # centre square crop (columns 8..55), then 3x3 area averaging
  crop = pixels[0][:, 8:56].astype(np.float64).reshape(16, 3, 16, 3, 3).mean((1, 3))
  np.testing.assert_allclose(first[0], crop / 127.5 - 1, atol=1e-4)


def test_folder_unreadable_image_is_named(tmp_path):
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
  (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff garbage")
  with pytest.raises(IOError, match="b.jpg"):
    list(folder.FolderPipeline(str(tmp_path), size=8, batch_size=2))
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(FileNotFoundError, match="no .png"):
    folder.list_images(str(empty))
  with pytest.raises(FileNotFoundError, match="not a folder"):
    folder.list_images(str(tmp_path / "a.png"))


# --- the command -----------------------------------------------------------------------------------------------------


def test_generate_data_command(tmp_path):
  """`disentangle-jax generate-data` with the installed smoke config (its default), shrunk by flags."""
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel

  out = tmp_path / "cli"
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "disentangle_jax",
      "generate-data",
      f"--out={out}",
      "--config.data.num_train=6",
      "--config.data.num_validation=2",
      "--config.data.examples_per_shard=4",
      "--config.data.generate_batch_size=2",
    ],
    capture_output=True,
    text=True,
    env=env,
    timeout=600,
    check=False,
  )
  assert result.returncode == 0, result.stderr[-3000:]
  assert "images/s" in result.stderr and "dataset complete" in result.stderr
  builder = tfds.builder_from_directory(str(out))
  assert builder.info.splits["train"].num_shards == 2 and builder.info.splits["validation"].num_examples == 2
  assert _read_split(str(out), "train")[5]["image"].shape == (32, 32, 3)
