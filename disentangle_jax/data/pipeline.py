"""The training input: a deterministic, index-based tf.data stream over the generated dataset, per process.

Every batch is a pure function of (seed, step): example positions come from per-epoch permutations of this process's
part of the split (numpy PCG64 from [seed, process, stream, epoch]: shuffle before repeat, each epoch a full
permutation), so a run restarted at step k (`start_step=k`) continues exactly the sequence of an uninterrupted run
without replaying steps 0..k-1, whatever the prefetch depth; no step needs folding into the seed. Reading is by
index from the ArrayRecord shards; tf.data decodes in parallel and prefetches; each step becomes global `jax.Array`s
sharded over the mesh's `data` axis (`jax.make_array_from_process_local_data`), shipped as uint8 and converted to
float on the devices.
With `cache=True` this process's part is decoded once into host memory and steps become gathers (same output):
PNG decoding (~5 ms per 256px image and core) is what limits the streaming mode.

The paper's schedule: with `cross_every = 3`, one step in three is a cross batch (`I_attr` a different image for
every row), the others same-image batches (`I_id = I_attr`, reconstruction applies); `cross_phase` says which:
the original (`trainer.py`: epoch % cross_frequency == 0) crosses at steps 0, 3, 6 (`cross_phase = 0`, what
`configs/paper.py` sets); the default `cross_every - 1` crosses at steps 2, 5, 8 (`is_same_step`).
A cross batch pairs row r's identity image (epoch position p) with the attribute image at position
`(p + shift) mod n` of the same epoch permutation, `shift` in [1, n) drawn per step: never the same image.
The latent discriminator's real `w` come from an independent permutation stream.

Each step yields a dict (per process: B = per-device batch x this process's devices; globally x processes):
  "id":     float32 [B, H, W, 3] in [-1, 1], the identity images I_id
  "attr":   float32 [B, H, W, 3] in [-1, 1], the attribute images I_attr (the very same array as "id" when same)
  "w_real": float32 [B, w_dim], real w for D_W, unrelated to the images
  "same":   Python bool, True for same-image steps (reconstruction loss on)
  "step":   Python int, the step this batch belongs to
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from disentangle_jax.data import tfds_format

tfds_format.hide_accelerators_from_tensorflow()

_ID_STREAM, _W_STREAM, _SHIFT_STREAM = 0, 1, 2


def is_same_step(step: int, cross_every: int, cross_phase: int | None = None) -> bool:
  """True when `step` is a same-image step: the steps with `step % cross_every == cross_phase` are cross ones
  (default phase: the last of each group of `cross_every`)."""
  if cross_every <= 0:
    return True
  phase = cross_every - 1 if cross_phase is None else int(cross_phase)
  if not 0 <= phase < cross_every:
    raise ValueError(f"data.cross_phase must be in [0, cross_every={cross_every}), got {phase}")
  return step % cross_every != phase


class ShardedSource:
  """This process's part of a split of the generated dataset, read by position (0 .. len-1) from its shards.

  The split is divided between processes with `tfds.split_for_jax_process` (contiguous, disjoint, covering the split).
  Every shard is opened and its record count checked against `dataset_info.json` up front, so a truncated or
  replaced shard fails at start-up with its file name rather than mid-training.
  """

  def __init__(self, data_dir: str, split: str, process_index: int | None = None, process_count: int | None = None):
    if not tf.io.gfile.exists(os.path.join(data_dir, "dataset_info.json")):
      raise FileNotFoundError(
        f"{data_dir}: no dataset_info.json; run `disentangle-jax generate-data --out={data_dir}` (or let it finish)"
      )
    self.builder = tfds.builder_from_directory(data_dir)
    if split not in self.builder.info.splits:
      raise KeyError(f"{data_dir}: no split {split!r}; it has {list(self.builder.info.splits)}")
    process_index = jax.process_index() if process_index is None else process_index
    process_count = jax.process_count() if process_count is None else process_count
    sub = tfds.split_for_jax_process(split, process_index=process_index, process_count=process_count)
    self.split_spec = str(sub)
    self.instructions = [fi for fi in self.builder.info.splits[sub].file_instructions if fi.take > 0]
    self.ends = np.cumsum([fi.take for fi in self.instructions])
    if not len(self.ends) or self.ends[-1] < 2:
      raise ValueError(f"{data_dir}: split {self.split_spec} has fewer than 2 examples for process {process_index}")
    self.readers = [self._open(fi) for fi in self.instructions]
    # The split's global example index of every local position (for tests and diagnostics).
    first = self.builder.info.splits[split].file_instructions
    file_start = dict(zip((os.fspath(fi.filename) for fi in first), np.cumsum([0] + [fi.take for fi in first])))
    self.global_indices = np.concatenate(
      [file_start[os.fspath(fi.filename)] + fi.skip + np.arange(fi.take) for fi in self.instructions]
    )

  @staticmethod
  def _open(fi: Any) -> Any:
    path = os.fspath(fi.filename)
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"{path}: shard listed in dataset_info.json is missing")
    try:
      reader = array_record_module.ArrayRecordReader(path, "readahead_buffer_size:0")
      n = reader.num_records()
    except Exception as e:  # pylint: disable=broad-except
      raise OSError(f"{path}: unreadable ArrayRecord shard ({e})") from e
    if n != fi.examples_in_shard:
      raise OSError(
        f"{path}: {n} records but dataset_info.json says {fi.examples_in_shard} (truncated or corrupt"
        " shard; delete it and rerun generate-data)"
      )
    return reader

  def __len__(self) -> int:
    return int(self.ends[-1])

  def locate(self, position: int) -> tuple[str, int]:
    """(shard file, record index) of a local position."""
    f = int(np.searchsorted(self.ends, position, side="right"))
    start = self.ends[f - 1] if f else 0
    fi = self.instructions[f]
    return os.fspath(fi.filename), int(fi.skip + position - start)

  def read(self, positions: np.ndarray) -> list[bytes]:
    """Serialized examples at local `positions`, in order."""
    positions = np.asarray(positions)
    files = np.searchsorted(self.ends, positions, side="right")
    out: list[bytes] = [b""] * len(positions)
    for f in np.unique(files):
      rows = np.nonzero(files == f)[0]
      start = self.ends[f - 1] if f else 0
      fi = self.instructions[f]
      records = [int(fi.skip + p - start) for p in positions[rows]]
      try:
        got = self.readers[f].read(records)
      except Exception as e:  # pylint: disable=broad-except
        raise OSError(f"{fi.filename}: cannot read records {records} ({e})") from e
      for r, g in zip(rows, got):
        out[r] = g
    return out


class Schedule:
  """Which local positions step `step` reads: a pure function of (seed, step, n, batch size, cross_every)."""

  def __init__(
    self, n: int, batch_size: int, seed: int, cross_every: int, process_index: int = 0, cross_phase: int | None = None
  ):
    self.n, self.batch_size, self.seed, self.cross_every = n, batch_size, seed, cross_every
    self.process_index, self.cross_phase = process_index, cross_phase
    is_same_step(0, cross_every, cross_phase)  # checks the phase
    self._cache: dict[tuple[int, int], np.ndarray] = {}

  def _permutation(self, stream: int, epoch: int) -> np.ndarray:
    key = (stream, epoch)
    if key not in self._cache:
      if len(self._cache) >= 8:
        self._cache.pop(next(iter(self._cache)))
      self._cache[key] = np.random.default_rng([self.seed, self.process_index, stream, epoch]).permutation(self.n)
    return self._cache[key]

  def _stream(self, stream: int, step: int, shift: int = 0) -> np.ndarray:
    p = step * self.batch_size + np.arange(self.batch_size)
    epochs, within = p // self.n, (p + shift) % self.n
    out = np.empty(self.batch_size, np.int64)
    for e in np.unique(epochs):  # a batch spans at most a few epochs
      rows = epochs == e
      out[rows] = self._permutation(stream, int(e))[within[rows]]
    return out

  def same(self, step: int) -> bool:
    return is_same_step(step, self.cross_every, self.cross_phase)

  def positions(self, step: int) -> dict[str, np.ndarray]:
    """{"id", "attr", "w_real"} local positions of `step` ("attr" equals "id" on same-image steps)."""
    ids = self._stream(_ID_STREAM, step)
    if self.same(step):
      attr = ids
    else:
      shift = 1 + int(np.random.default_rng([self.seed, self.process_index, _SHIFT_STREAM, step]).integers(self.n - 1))
      attr = self._stream(_ID_STREAM, step, shift)
    return {"id": ids, "attr": attr, "w_real": self._stream(_W_STREAM, step)}


def _parse(serialized: tf.Tensor, resolution: int, w_dim: int, images: bool = True) -> tuple[tf.Tensor, tf.Tensor]:
  """Serialized examples [N] -> (uint8 images [N, H, W, 3] (or None), w [N, w_dim])."""
  spec = {"w": tf.io.FixedLenFeature([w_dim], tf.float32)}
  if images:
    spec["image"] = tf.io.FixedLenFeature([], tf.string)
  parsed = tf.io.parse_example(serialized, spec)
  if not images:
    return None, parsed["w"]
  pixels = tf.map_fn(
    lambda b: tf.io.decode_png(b, channels=3),
    parsed["image"],
    fn_output_signature=tf.TensorSpec([resolution, resolution, 3], tf.uint8),
  )
  return tf.ensure_shape(pixels, [None, resolution, resolution, 3]), parsed["w"]


def _to_unit_range(pixels: np.ndarray) -> np.ndarray:
  """uint8 -> float32 in [-1, 1] on the host (mesh-less use)."""
  return pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


@jax.jit
def _to_unit_range_on_device(pixels: jax.Array) -> jax.Array:
  """uint8 -> float32 in [-1, 1] on the devices (sharded like the input): a quarter of the host-to-device bytes."""
  # XLA turns the division into a multiplication by the reciprocal: clip the ends back to exactly -1 and 1.
  return jnp.clip(pixels.astype(jnp.float32) / jnp.float32(127.5) - jnp.float32(1.0), -1.0, 1.0)


class Pipeline:
  """Iterates training batches (see the module docstring for the keys) from `start_step` on.

  Two modes with identical output: streaming (read and decode each step's PNGs from the shards) and cached
  (`cache=True`: decode this process's part once at start-up into host memory, N x H x W x 3 bytes, then every step
  is a gather). Caching takes the PNG decoding, the costly part, out of the steady state.
  """

  def __init__(
    self,
    data_dir: str,
    split: str,
    *,
    batch_size: int,
    seed: int,
    cross_every: int,
    start_step: int = 0,
    num_steps: int | None = None,
    mesh: Mesh | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    prefetch: int = 4,
    cache: bool = False,
    cross_phase: int | None = None,
  ):
    """Args:
    data_dir: a folder written by `generate`.
    split: "train" or "validation" (or any TFDS split spec of the folder).
    batch_size: examples per step for THIS process (per-device batch x its local devices).
    seed: the data seed; with `step` it fixes every batch.
    cross_every: every `cross_every`-th step is a cross batch (0: never).
    start_step: the first step to yield (a restored checkpoint's step).
    num_steps: stop after this many steps (default: endless).
    mesh: if given, outputs are global `jax.Array`s sharded as P("data") over it; otherwise numpy arrays.
    process_index, process_count: simulate another process's view (tests); default the JAX process.
    prefetch: steps prepared ahead of the consumer.
    cache: decode this process's part of the split once into memory (see the class docstring).
    cross_phase: which step of each group of `cross_every` is the cross one (default the last; see the module).
    """
    self.source = ShardedSource(data_dir, split, process_index, process_count)
    info = self.source.builder.info.features
    self.resolution = int(info["image"].shape[0])
    self.w_dim = int(info["w"].shape[0])
    self.schedule = Schedule(
      len(self.source),
      batch_size,
      seed,
      cross_every,
      jax.process_index() if process_index is None else process_index,
      cross_phase,
    )
    self.start_step, self.num_steps, self.mesh, self.prefetch = start_step, num_steps, mesh, prefetch
    self._sharding = None if mesh is None else NamedSharding(mesh, P("data"))
    self._images: np.ndarray | None = None
    self._w: np.ndarray | None = None
    if cache:
      self._fill_cache()

  @staticmethod
  def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = max(2, os.cpu_count() or 2)
    return options

  def _fill_cache(self, chunk: int = 128) -> None:
    n, res, w_dim = len(self.source), self.resolution, self.w_dim
    images = np.empty((n, res, res, 3), np.uint8)
    w = np.empty((n, w_dim), np.float32)

    def load(start):
      raw = tf.numpy_function(
        lambda s: np.array(self.source.read(np.arange(s, min(s + chunk, n))), dtype=object),
        [start],
        tf.string,
        stateful=False,
      )
      return (start,) + _parse(raw, res, w_dim)

    ds = tf.data.Dataset.range(0, n, chunk).map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    it = iter(ds.with_options(self._options()).prefetch(2).as_numpy_iterator())
    for start in range(0, n, chunk):
      try:
        _, pixels, ws = next(it)
      except tf.errors.OpError as e:
        raise OSError(f"caching the dataset failed: {self.diagnose(np.arange(start, min(start + chunk, n)))}") from e
      images[start : start + len(pixels)] = pixels
      w[start : start + len(ws)] = ws
    self._images, self._w = images, w

  def _positions(self, step: np.int64) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    pos = self.schedule.positions(int(step))
    return pos["id"], None if self.schedule.same(int(step)) else pos["attr"], pos["w_real"]

  def _read(self, step: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Streaming mode: the serialized records of a step (`attr` empty on same-image steps)."""
    ids, attr, w = self._positions(step)
    as_array = lambda p: np.array(self.source.read(p) if p is not None else [], dtype=object)  # noqa: E731
    return as_array(ids), as_array(attr), as_array(w)

  def _gather(self, step: np.int64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cached mode: the uint8 images and w of a step (`attr` empty on same-image steps)."""
    ids, attr, w = self._positions(step)
    empty = np.empty((0,) + self._images.shape[1:], np.uint8)
    return self._images[ids], empty if attr is None else self._images[attr], self._w[w]

  def dataset(self) -> tf.data.Dataset:
    """The tf.data pipeline of (step, id, attr, w_real) host tensors (images uint8; `attr` empty on same steps)."""
    end = np.iinfo(np.int64).max if self.num_steps is None else self.start_step + self.num_steps
    w_dim, res = self.w_dim, self.resolution

    def load(step):
      ids, attr, w = tf.numpy_function(self._read, [step], [tf.string, tf.string, tf.string], stateful=False)
      _, w = _parse(w, res, w_dim, images=False)
      return step, _parse(ids, res, w_dim)[0], _parse(attr, res, w_dim)[0], w

    def gather(step):
      ids, attr, w = tf.numpy_function(self._gather, [step], [tf.uint8, tf.uint8, tf.float32], stateful=False)
      shape = [None, res, res, 3]
      return step, tf.ensure_shape(ids, shape), tf.ensure_shape(attr, shape), tf.ensure_shape(w, [None, w_dim])

    ds = tf.data.Dataset.range(self.start_step, end)
    ds = ds.map(load if self._images is None else gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.with_options(self._options()).prefetch(self.prefetch)

  def diagnose(self, positions: np.ndarray, images: bool = True) -> str:
    """Names the first file/record among local `positions` that cannot be parsed or decoded."""
    for p in np.asarray(positions).ravel():
      path, record = self.source.locate(int(p))
      raw = self.source.read(np.array([p]))[0]
      try:
        feature = tf.train.Example.FromString(raw).features.feature
        if len(feature["w"].float_list.value) != self.w_dim:
          raise ValueError(f"w has {len(feature['w'].float_list.value)} values, expected {self.w_dim}")
        if images:
          image = tf.io.decode_png(feature["image"].bytes_list.value[0], channels=3)
          if tuple(image.shape) != (self.resolution, self.resolution, 3):
            raise ValueError(f"image shape {tuple(image.shape)}, expected {(self.resolution, self.resolution, 3)}")
      except Exception as e:  # pylint: disable=broad-except
        return f"{path}: record {record} is corrupt ({type(e).__name__}: {e})"
    return "no single corrupt record found"

  def _to_global(self, x: np.ndarray) -> Any:
    if self._sharding is None:
      return _to_unit_range(x) if x.dtype == np.uint8 else x
    global_shape = (x.shape[0] * jax.process_count(),) + x.shape[1:]
    out = jax.make_array_from_process_local_data(self._sharding, x, global_shape)
    return _to_unit_range_on_device(out) if x.dtype == np.uint8 else out

  def __iter__(self) -> Iterator[dict[str, Any]]:
    it = iter(self.dataset().as_numpy_iterator())
    step = self.start_step
    while self.num_steps is None or step < self.start_step + self.num_steps:
      try:
        got_step, ids, attr, w = next(it)
      except StopIteration:
        return
      except tf.errors.OpError as e:
        ids, attr, w = self._positions(step)
        suspects = np.concatenate([ids] + ([] if attr is None else [attr]))
        problem = self.diagnose(suspects)
        if problem.startswith("no single"):
          problem = self.diagnose(w, images=False)
        raise OSError(f"input pipeline failed at step {step}: {problem}") from e
      assert got_step == step, (got_step, step)
      same = self.schedule.same(step)
      ids = self._to_global(ids)
      yield {
        "id": ids,
        "attr": ids if same else self._to_global(attr),
        "w_real": self._to_global(w),
        "same": same,
        "step": int(step),
      }
      step += 1


def _auto_cache(data_dir: str, split: str, fraction: float = 0.25) -> bool:
  """Cache decoded images when this process's part takes at most `fraction` of the host's memory."""
  if not tf.io.gfile.exists(os.path.join(data_dir, "dataset_info.json")):
    return False  # Pipeline raises the explanatory error
  info = tfds.builder_from_directory(data_dir).info
  res = int(info.features["image"].shape[0])
  need = info.splits[split].num_examples / jax.process_count() * res * res * 3
  try:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError):
    return False
  return need <= fraction * total


def train_pipeline(
  config: ml_collections.ConfigDict,
  mesh: Mesh,
  *,
  start_step: int = 0,
  split: str = "train",
  data_dir: str | None = None,
  num_steps: int | None = None,
) -> Pipeline:
  """The training input of `config` on `mesh`, from `start_step` (global batch = per_device_batch_size x devices).

  Optional config fields: `data.cache_decoded` (True / False; default: cache when this process's decoded part fits
  in a quarter of the host's memory) and `data.pipeline_seed` (default `data.seed`).
  """
  local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
  data_dir = data_dir or config.data.dir
  cache = config.data.get("cache_decoded", None)
  if cache is None:
    cache = _auto_cache(data_dir, split)
  return Pipeline(
    data_dir,
    split,
    cache=bool(cache),
    batch_size=int(config.per_device_batch_size) * local_devices,
    seed=int(config.data.get("pipeline_seed", config.data.seed)) + (0 if split == "train" else 1),
    cross_every=int(config.data.get("cross_every", 3)),
    cross_phase=config.data.get("cross_phase", None),
    start_step=start_step,
    num_steps=num_steps,
    mesh=mesh,
  )
