"""Renders the (w, image) training set with the frozen generator G and writes it as a TFDS folder.

Each example: `z = normal(fold_in(key(data.seed), seed))` -> `ws = G.mapping(z, truncation)` -> `w = ws[:, 0]`,
the stored `w` (the first, truncated row: what the original's loader hands its latent discriminator as a "real" w,
`data_loader.py: get_w_by_ind`), and the image, rendered as `data.render_from` says:

* "ws" (`configs/paper.py`, the original's `utils/generate_fake_data.py`): `G.synthesis(ws)` from all num_ws rows,
  truncated with `truncation_psi` on the first `truncation_cutoff` rows only (8 of 14 at 256 px; the later rows
  untruncated, so no single `w` reproduces the image exactly);
* "w" (default): `G.synthesis(w broadcast to every style input)`: image and stored `w` agree exactly (the method
  maps codes to ONE `w` that drives every style input).

Batches are jitted and sharded over every local device along a `data` mesh axis; every process of a pod writes its
own shards (the i-th shard of the whole dataset belongs to process `i % process_count`). The content depends only on
the config: example `s`'s `z` comes from its seed alone, whatever the batch size or the number of devices (XLA's
kernels may round the last bit of `w` differently for another batch shape; pixels then agree within one level).

Resumable: each shard is written to a temporary name and atomically renamed when complete; a rerun skips finished
shards (never opening them for writing) and removes stale temporary files. A `generation.json` records the settings
that determine the content, so a rerun with different settings fails instead of mixing two datasets (`DataError`,
also when it cannot be read).

Verified: after each shard is renamed into place, `checksums/<shard>.json` records its record count, size and sha256
(temp file + rename; see `tfds_format`). Every `generate` call first checks this process's existing shards: size
and sha256 against the record, record count (from the ArrayRecord footer) against the record and the planned shard
length. A shard that fails (truncated, bit-flipped, wrong count, unreadable, unreadable record) is deleted with a
WARNING naming the file and the fault, and rendered again; `dataset_info.json` is then rewritten. A shard without a
record (an older version's, or a run killed between the rename and the record) is kept if it opens with the planned
count, and its record written. Hashing reads every byte once: seconds for the smoke dataset, about a disk read of the
dataset for a large one. `verify(out_dir)` runs the same checks read-only (training can call it; no JAX work).
"""

from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging
from array_record.python import array_record_module
from flax import nnx
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from disentangle_jax import frozen
from disentangle_jax import hosts
from disentangle_jax.data import tfds_format

DataError = tfds_format.DataError  # a dataset folder the user must fix (the same class, importable from here)


def fingerprint(module: nnx.Module) -> str:
  """A hash of every array of G (parameters and buffers): two runs with different generators never mix."""
  digest = hashlib.sha256()
  leaves, _ = jax.tree_util.tree_flatten_with_path(nnx.state(module))
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    array = np.asarray(leaf)
    digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()[:20]


def settings(config: ml_collections.ConfigDict, generator: Any) -> dict[str, Any]:
  """What determines the dataset's content (recorded in `generation.json`, checked on a rerun)."""
  g_config = generator.config
  d = config.data
  cutoff = d.get("truncation_cutoff", None)
  render_from = str(d.get("render_from", "w"))
  if render_from not in ("w", "ws"):
    raise ValueError(f"config.data.render_from must be 'w' or 'ws', got {render_from!r}")
  # Recorded only when not the default, so datasets written before the option existed keep matching.
  extra = {} if render_from == "w" else {"render_from": render_from}
  return {
    **extra,
    "seed": int(d.seed),
    "num_train": int(d.num_train),
    "num_validation": int(d.num_validation),
    "examples_per_shard": int(d.examples_per_shard),
    "truncation_psi": float(d.get("truncation_psi", 1.0)),
    "truncation_cutoff": None if cutoff is None else int(cutoff),
    "noise_mode": str(config.generator.get("noise_mode", "const")),
    "generator_kind": str(config.generator.kind),
    "generator_weights": str(config.generator.weights),
    "generator_fingerprint": fingerprint(generator),
    "generator_arch": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.generator.arch.items()},
    "resolution": int(g_config.resolution),
    "w_dim": int(g_config.w_dim),
    "z_dim": int(g_config.z_dim),
    "num_ws": int(g_config.num_ws),
  }


@functools.partial(
  jax.jit,
  static_argnames=(
    "graphdef",
    "seed",
    "z_dim",
    "num_ws",
    "truncation_psi",
    "truncation_cutoff",
    "noise_mode",
    "sharding",
    "render_from",
  ),
)
def _render(
  state: Any,
  seeds: jax.Array,
  *,
  graphdef: Any,
  seed: int,
  z_dim: int,
  num_ws: int,
  truncation_psi: float,
  truncation_cutoff: int | None,
  noise_mode: str,
  sharding: NamedSharding,
  render_from: str = "w",
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One batch: seeds -> (uint8 images, w, z). Module-level so that repeated generations reuse the compilation."""
  g = nnx.merge(graphdef, state)
  base = jax.random.key(seed)
  z = jax.vmap(lambda s: jax.random.normal(jax.random.fold_in(base, s), (z_dim,), jnp.float32))(seeds)
  ws = g.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
  w = ws[:, 0]
  if render_from != "ws":
    ws = jnp.broadcast_to(w[:, None, :], (w.shape[0], num_ws, w.shape[1]))
  images = g.synthesis(ws, noise_mode=noise_mode)
  pixels = jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0, 255).astype(jnp.uint8)
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, sharding), (pixels, w.astype(jnp.float32), z))


def make_renderer(
  module: nnx.Module,
  g_config: Any,
  mesh: Mesh,
  seed: int,
  truncation_psi: float,
  truncation_cutoff: int | None,
  noise_mode: str = "const",
  render_from: str = "w",
) -> Callable[[np.ndarray], tuple[jax.Array, jax.Array, jax.Array]]:
  """`render(seeds [B]) -> (uint8 images [B, H, W, 3], w [B, w_dim], z [B, z_dim])`, sharded over `data`.

  B must be a multiple of the mesh size. The generator's parameters are replicated on every device once.
  `render_from`: "w" (row 0 broadcast) or "ws" (every row of the truncated mapping); see the module docstring.
  """
  graphdef, state = nnx.split(module)
  batch = NamedSharding(mesh, P("data"))
  state = jax.device_put(state, NamedSharding(mesh, P()))
  static = dict(
    graphdef=graphdef,
    seed=seed,
    z_dim=int(g_config.z_dim),
    num_ws=int(g_config.num_ws),
    truncation_psi=truncation_psi,
    truncation_cutoff=truncation_cutoff,
    noise_mode=noise_mode,
    sharding=batch,
    render_from=render_from,
  )

  def run(seeds: np.ndarray):
    return _render(state, jax.device_put(np.asarray(seeds, np.uint32), batch), **static)

  return run


class _Progress:
  """Logs images done, images/s and ETA at most every `every_s` seconds (and once at the end)."""

  def __init__(self, total: int, every_s: float = 10.0):
    self.total, self.done, self.every_s, self.logged = total, 0, every_s, -1
    self.start = self.last = time.perf_counter()

  def update(self, n: int, force: bool = False) -> None:
    self.done += n
    now = time.perf_counter()
    if (not force and now - self.last < self.every_s) or self.logged == self.done:
      return
    self.last, self.logged = now, self.done
    rate = self.done / max(now - self.start, 1e-9)
    eta = (self.total - self.done) / rate if rate > 0 else float("inf")
    logging.info(
      "generate-data: %d/%d images, %.2f images/s, ETA %s",
      self.done,
      self.total,
      rate,
      time.strftime("%H:%M:%S", time.gmtime(eta)) if math.isfinite(eta) else "?",
    )


def _read_settings(out_dir: str) -> dict[str, Any] | None:
  """The settings recorded in `generation.json`; None if there is none. Unreadable: DataError (the settings of the
  shards already there are lost, so they can neither be resumed nor trusted)."""
  path = os.path.join(out_dir, tfds_format.GENERATION_FILE)
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path) as f:
      found = json.load(f)
  except (ValueError, tf.errors.OpError) as e:
    raise DataError(
      f"{path}: unreadable ({type(e).__name__}: {e}); restore it, or delete the folder and generate it again"
    ) from e
  if not isinstance(found, dict):
    raise DataError(
      f"{path}: not a settings record (a JSON {type(found).__name__}); restore it, or delete the"
      " folder and generate it again"
    )
  return found


def _check_settings(out_dir: str, wanted: dict[str, Any]) -> None:
  path = os.path.join(out_dir, tfds_format.GENERATION_FILE)
  found = _read_settings(out_dir)
  if found is not None:
    diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
    if diff:
      details = ", ".join(f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} now" for k in diff)
      raise DataError(f"{path} was written with other settings ({details}); use another --out or delete it")
    return
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(wanted, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _plan(out_dir: str, recorded: dict[str, Any]) -> list[tfds_format.Shard]:
  """Every shard of the dataset whose settings are `recorded` (both splits, in order)."""
  return tfds_format.plan(
    out_dir, {"train": recorded["num_train"], "validation": recorded["num_validation"]}, recorded["examples_per_shard"]
  )


def _check_existing(shards: list[tfds_format.Shard], pool: concurrent.futures.Executor) -> list[tfds_format.Shard]:
  """Verifies the shards that exist; deletes the damaged ones (to be rendered again) and returns them.

  A shard without a checksum record that passes (right count) gets its record now instead of being rendered again.
  """
  existing = [s for s in shards if tf.io.gfile.exists(s.path)]
  unrecorded = {s.path for s in existing if not tf.io.gfile.exists(tfds_format.checksum_record_path(s.path))}
  start = time.perf_counter()
  damaged = []
  for shard, problem in zip(existing, pool.map(tfds_format.shard_problem, existing)):
    if problem is not None:
      logging.warning("generate-data: %s: %s; rebuilding it", shard.path, problem)
      tf.io.gfile.remove(shard.path)  # the shard first: a kill in between leaves no unchecked shard behind
      record = tfds_format.checksum_record_path(shard.path)
      if tf.io.gfile.exists(record):
        tf.io.gfile.remove(record)
      damaged.append(shard)
    elif shard.path in unrecorded:
      logging.info(
        "generate-data: %s: no checksum record (an older version's shard, or a run stopped before writing"
        " it); it has the planned %d records, recording its checksum",
        shard.path,
        shard.length,
      )
      tfds_format.write_checksum_record(shard.path, shard.length)
  if existing:
    logging.info(
      "generate-data: checked %d existing shards in %.1f s, %d damaged",
      len(existing),
      time.perf_counter() - start,
      len(damaged),
    )
  return damaged


def verify(out_dir: str, checksums: bool = True) -> list[str]:
  """Checks a finished dataset folder without rendering anything (no JAX work); returns its problems, [] if none.

  Each problem is one line naming the file: `generation.json` missing or unreadable; a shard missing, truncated,
  changed after it was written (sha256 against its checksum record), unreadable, or with another record count than
  its record or the plan; `dataset_info.json` missing or disagreeing with the shards. A shard without a checksum
  record (written by an older version) only has its record count checked. Rerunning `generate-data` with the same
  settings repairs every shard problem. `checksums=False` skips hashing: a stat and the ArrayRecord footer per shard,
  cheap even for a large dataset on a remote file system, but blind to changed bytes of the same size.
  """
  try:
    recorded = _read_settings(out_dir)
  except DataError as e:
    return [str(e)]
  if recorded is None:
    return [f"{os.path.join(out_dir, tfds_format.GENERATION_FILE)}: missing; not a folder written by generate-data"]
  try:
    shards = _plan(out_dir, recorded)
  except (KeyError, TypeError, ValueError) as e:
    return [f"{os.path.join(out_dir, tfds_format.GENERATION_FILE)}: no usable dataset sizes ({type(e).__name__}: {e})"]
  with concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
    found = pool.map(functools.partial(tfds_format.shard_problem, checksum=checksums), shards)
    problems = [f"{s.path}: {p}" for s, p in zip(shards, found) if p is not None]
  return problems + tfds_format.metadata_problems(out_dir, shards)


def _write_shard(
  shard: tfds_format.Shard,
  render,
  batch_size: int,
  feature_dict,
  progress: _Progress,
  pool: concurrent.futures.Executor,
) -> None:
  """Renders one shard into a temporary file, renames it into place when complete, then writes its checksum record."""
  tmp = f"{shard.path}.tmp-{jax.process_index()}-{os.getpid()}"
  seeds = shard.seeds
  chunks = [seeds[i : i + batch_size] for i in range(0, len(seeds), batch_size)]
  padded = [np.pad(c, (0, batch_size - len(c)), mode="edge") for c in chunks]
  writer = array_record_module.ArrayRecordWriter(tmp, tfds_format.WRITER_OPTIONS)
  try:
    pending = render(padded[0])
    for k, chunk in enumerate(chunks):
      images, w, z = jax.device_get(pending)
      if k + 1 < len(chunks):
        pending = render(padded[k + 1])  # the device renders the next batch while this one is encoded
      examples = [{"image": images[j], "w": w[j], "z": z[j], "seed": int(chunk[j])} for j in range(len(chunk))]
      for record in pool.map(feature_dict.serialize_example, examples):
        writer.write(record)
      progress.update(len(chunk))
    writer.close()
    writer = None
    size, sha256 = tfds_format.digest(tmp)
    tf.io.gfile.rename(tmp, shard.path, overwrite=False)
    tfds_format.write_checksum_record(shard.path, len(seeds), size, sha256)
  finally:
    if writer is not None:
      writer.close()
    if tf.io.gfile.exists(tmp):
      tf.io.gfile.remove(tmp)


def generate(
  config: ml_collections.ConfigDict,
  out_dir: str,
  *,
  generator: Any = None,
  devices: list[jax.Device] | None = None,
  on_shard_written: Callable[[tfds_format.Shard], None] | None = None,
  process_index: int | None = None,
  process_count: int | None = None,
) -> list[tfds_format.Shard]:
  """Renders `config.data.num_train` + `num_validation` examples into `out_dir`; returns the shards it wrote.

  The shards it wrote are the missing ones and the damaged ones (rebuilt; each logged as a WARNING when found).

  Args:
    config: a full experiment config (`config.data`, `config.generator`, `config.seed` for a random G).
    out_dir: the dataset folder (created; resumed if partly written).
    generator: G (the NNX module); default `frozen.generator(config.generator, config.seed)`, the same G as training.
    devices: the devices to shard over; default every local device.
    on_shard_written: called after each shard is renamed into place (progress hooks, tests).
    process_index, process_count: which shards this process writes; default this JAX process of all of them.
  """
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if generator is None:
    generator = frozen.generator(config.generator, config.seed)
  g_config = generator.config
  wanted = settings(config, generator)
  tf.io.gfile.makedirs(out_dir)
  _check_settings(out_dir, wanted)

  shards = _plan(out_dir, wanted)
  mine = shards[process_index::process_count]  # both splits' shards in one sequence, dealt out in turn
  for s in mine:  # leftovers of a killed run; finished shards are only touched when they fail their check
    for stale in tf.io.gfile.glob(f"{s.path}.tmp-*") + tf.io.gfile.glob(
      f"{tfds_format.checksum_record_path(s.path)}.tmp-*"
    ):
      tf.io.gfile.remove(stale)
  feature_dict = tfds_format.features(wanted["resolution"], wanted["w_dim"], wanted["z_dim"])
  written = []
  with concurrent.futures.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1))) as pool:
    damaged = _check_existing(mine, pool)
    todo = [s for s in mine if not tf.io.gfile.exists(s.path)]
    if todo:
      devices = list(jax.local_devices() if devices is None else devices)
      mesh = Mesh(np.array(devices), ("data",))
      batch_size = math.ceil(int(config.data.generate_batch_size) / len(devices)) * len(devices)
      render = make_renderer(
        generator,
        g_config,
        mesh,
        wanted["seed"],
        wanted["truncation_psi"],
        wanted["truncation_cutoff"],
        wanted["noise_mode"],
        wanted.get("render_from", "w"),
      )
      progress = _Progress(sum(s.length for s in todo))
      logging.info(
        "generate-data: %d of %d shards to write into %s (%d of them damaged ones) on %d devices, batch %d",
        len(todo),
        len(shards),
        out_dir,
        len(damaged),
        len(devices),
        batch_size,
      )
      for shard in todo:
        _write_shard(shard, render, batch_size, feature_dict, progress, pool)
        written.append(shard)
        if on_shard_written is not None:
          on_shard_written(shard)
      progress.update(0, force=True)
  if damaged:
    logging.info(
      "generate-data: rebuilt %d damaged shards: %s", len(damaged), ", ".join(os.path.basename(s.path) for s in damaged)
    )

  if process_count > 1:
    hosts.barrier("generate_data")
  info_path = os.path.join(out_dir, "dataset_info.json")
  # Also when another process rebuilt a shard: its size may differ from the one dataset_info.json records.
  if process_index == 0 and (
    written or not tf.io.gfile.exists(info_path) or tfds_format.metadata_problems(out_dir, shards)
  ):
    missing = [s.path for s in shards if not tf.io.gfile.exists(s.path)]
    if missing:
      logging.warning(
        "generate-data: %d shards still missing (e.g. %s); metadata not written yet", len(missing), missing[0]
      )
    else:
      tfds_format.write_metadata(
        out_dir,
        shards,
        feature_dict,
        description=("(w, image) pairs rendered by a frozen generator; settings in generation.json"),
      )
  return written
