"""`disentangle_jax.load(path)`: a trained model ready to swap, encode and render, from an export or a workdir.

Users hold one of two things: the directory `disentangle-jax export` wrote (E_attr and M parameters plus the config
that names the frozen networks' weights), or a training workdir with Orbax checkpoints. Both load into the same
`InferenceModel`, which keeps only what inference needs (G, E_id, E_attr, M: no landmark net, no D_W, no optimiser
state) and runs each method as one jitted function, compiled once per input shape.

    model = disentangle_jax.load("runs/toy")
    out = model.swap(id_images, attr_images)          # [B, R, R, 3] in [-1, 1]
    code, w = model.encode(id_images, attr_images)    # concat(id, attr) [B, id_dim + attr_dim], w [B, w_dim]
    same = model.render(w)
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from disentangle_jax import checkpoints
from disentangle_jax import errors
from disentangle_jax import model as model_lib
from disentangle_jax import official
from disentangle_jax.nets import mapper as mapper_lib
from disentangle_jax.third_party.common import state_dict as state_dict_lib

EXPORT_META = "inference.json"
EXPORT_PARAMS = "params"
EXPORT_CARRIED = "frozen"  # frozen weights an export carries; its config names them relative to the export
# The frozen networks an inference model builds (no landmark net): those an export stores, carries or references.
INFERENCE_FROZEN = ("generator", "id_encoder")
EXPORT_FORMAT = "disentangle_jax.inference"
EXPORT_VERSION = 1


class ModelLoadError(errors.UserError, ValueError):
  """A model path cannot be loaded; the message names the path and what is wrong with it."""


# ----------------------------------------------------------------------------------------------------------------
# The model object


class InferenceModel:
  """G, E_id, E_attr and M of a trained model, with jitted, batched methods on float32 NHWC images in [-1, 1].

  Images may also be given as uint8 [0, 255] (converted here) and as a single image [H, W, 3] (a batch of one).
  Any image size works (the encoders resize internally); outputs are at the generator's resolution.
  """

  def __init__(
    self, config: ml_collections.ConfigDict, model: model_lib.Model, source: str = "", step: int | None = None
  ):
    self.config = config
    self.spec = model.spec
    self.source = source
    self.step = step  # the training step of the parameters, when known
    spec = model.spec
    # Split once: the jitted functions take plain array pytrees, so a call does not re-walk the module graphs.
    frozen_graph, self._frozen_state = nnx.split(
      model_lib.Frozen(model.frozen.generator, model.frozen.id_encoder, None)
    )
    trainable_graph, self._trainable_state = nnx.split(
      model_lib.Trainable(model.trainable.attr_encoder, model.trainable.mapper, None)
    )
    self._frozen_graph, self._trainable_graph = frozen_graph, trainable_graph

    def swap(frozen_state, trainable_state, id_images, attr_images):
      frozen, trainable = nnx.merge(frozen_graph, frozen_state), nnx.merge(trainable_graph, trainable_state)
      return model_lib.swap(frozen, trainable, spec, id_images, attr_images)[0]

    def encode(frozen_state, trainable_state, id_images, attr_images):
      trainable = nnx.merge(trainable_graph, trainable_state)
      id_code = model_lib.embed_identity(nnx.merge(frozen_graph, frozen_state), spec, id_images)
      code = mapper_lib.concat_codes(id_code, trainable.attr_encoder(attr_images))
      return code, trainable.mapper(code)

    # One compiled program per method and input shape (`jax.jit` caches by shape).
    self._swap = jax.jit(swap)
    self._encode = jax.jit(encode)
    self._render = jax.jit(lambda frozen_state, w: model_lib.render(nnx.merge(frozen_graph, frozen_state), spec, w))
    self._id_code = jax.jit(
      lambda frozen_state, x: model_lib.embed_identity(nnx.merge(frozen_graph, frozen_state), spec, x)
    )
    self._attr_code = jax.jit(lambda trainable_state, x: nnx.merge(trainable_graph, trainable_state).attr_encoder(x))
    self._map = jax.jit(lambda trainable_state, code: nnx.merge(trainable_graph, trainable_state).mapper(code))

  # --- sizes -------------------------------------------------------------------------------------------------

  @property
  def resolution(self) -> int:
    return int(self.spec.resolution)

  @property
  def w_dim(self) -> int:
    return int(self.spec.w_dim)

  @property
  def code_dim(self) -> int:
    """Size of the concatenated code concat(E_id, E_attr): M's input."""
    return int(self.spec.id_dim + self.spec.attr_dim)

  @property
  def frozen(self) -> model_lib.Frozen:
    """G and E_id (the landmark net is None: inference does not use it)."""
    return nnx.merge(self._frozen_graph, self._frozen_state)

  @property
  def trainable(self) -> model_lib.Trainable:
    """E_attr and M, with their trained parameters (D_W is None: inference does not use it)."""
    return nnx.merge(self._trainable_graph, self._trainable_state)

  # --- public methods ----------------------------------------------------------------------------------------

  def swap(self, id_images: Any, attr_images: Any) -> jax.Array:
    """The identity of `id_images` with the pose, expression and lighting of `attr_images` -> [B, R, R, 3]."""
    return self._swap(self._frozen_state, self._trainable_state, *self._pair(id_images, attr_images))

  def encode(self, id_images: Any, attr_images: Any) -> tuple[jax.Array, jax.Array]:
    """(concatenated code [B, id_dim + attr_dim], w [B, w_dim]) of image pairs."""
    return self._encode(self._frozen_state, self._trainable_state, *self._pair(id_images, attr_images))

  def render(self, w: Any) -> jax.Array:
    """G(w) with `w` [B, w_dim] broadcast to every style input -> [B, R, R, 3] in ~[-1, 1]."""
    return self._render(self._frozen_state, _rows(w, self.w_dim, "render: w"))

  def id_code(self, images: Any) -> jax.Array:
    """E_id's L2-normalised identity code [B, id_dim] (also the identity metric's embedding)."""
    return self._id_code(self._frozen_state, _images(images, "images"))

  def attr_code(self, images: Any) -> jax.Array:
    """E_attr's attribute code [B, attr_dim]."""
    return self._attr_code(self._trainable_state, _images(images, "images"))

  def map(self, code: Any) -> jax.Array:
    """M: concatenated code [B, id_dim + attr_dim] -> w [B, w_dim]."""
    return self._map(self._trainable_state, _rows(code, self.code_dim, "map: code"))

  def __repr__(self) -> str:
    s = self.spec
    return (
      f"InferenceModel({self.source or 'in memory'}: {s.resolution}px, id {s.id_dim} + attr {s.attr_dim}"
      f" -> w {s.w_dim})"
    )

  def _pair(self, id_images: Any, attr_images: Any) -> tuple[jax.Array, jax.Array]:
    a, b = _images(id_images, "id_images"), _images(attr_images, "attr_images")
    if a.shape[0] != b.shape[0]:
      raise ValueError(f"id_images and attr_images need the same batch size, got {a.shape[0]} and {b.shape[0]}")
    return a, b


def _images(images: Any, name: str) -> jax.Array:
  """float32 [B, H, W, 3] in [-1, 1] from float or uint8 images, batched or single."""
  x = images
  if isinstance(x, np.ndarray) and x.dtype == np.uint8:
    x = x.astype(np.float32) / 127.5 - 1.0
  x = jnp.asarray(x, jnp.float32)
  if x.ndim == 3:
    x = x[None]
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"{name}: expected NHWC RGB images [B, H, W, 3], got shape {tuple(x.shape)}")
  return x


def _rows(x: Any, width: int, name: str) -> jax.Array:
  """float32 [B, width] from one vector or a batch of them."""
  x = jnp.asarray(x, jnp.float32)
  if x.ndim == 1:
    x = x[None]
  if x.ndim != 2 or x.shape[-1] != width:
    raise ValueError(f"{name} must be [B, {width}], got shape {tuple(x.shape)}")
  return x


def build(
  config: ml_collections.ConfigDict,
  trained: dict[str, Any] | None = None,
  source: str = "",
  attr_encoder_config: dict[str, Any] | None = None,
  step: int | None = None,
) -> InferenceModel:
  """The inference networks of `config` (`model.build(for_inference=True)`), filled with `trained` if given.

  `trained` maps network names to parameter trees (a checkpoint's E_attr and M, an export's too); without it
  E_attr and M are freshly initialised, as at step 0 of training. `attr_encoder_config` is the architecture an
  export recorded for E_attr.
  """
  try:
    model = model_lib.build(config, for_inference=True, trained=trained, attr_arch=attr_encoder_config, source=source)
  except state_dict_lib.CheckpointMismatchError as e:
    raise ModelLoadError(str(e)) from None
  if model.spec.frozen_dtype != "float32":
    nnx.update(model.frozen, model_lib.cast_frozen_state(nnx.state(model.frozen), model.spec.frozen_dtype))
  return InferenceModel(config, model, source, step)


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load(path: str | os.PathLike, best: str | None = None) -> InferenceModel:
  """An exported model directory (`disentangle-jax export`), a training workdir (its latest checkpoint, or with
  `best="identity"` / `"landmarks"` its best checkpoint by that evaluation metric), or a folder of the original TF2
  release's weights (`official.read`)."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"{path}: no such model directory (pass an exported model or a training workdir)")
  if not path.is_dir():
    raise ModelLoadError(f"{path}: is a file; a model is a directory (an export or a training workdir)")
  if (path / EXPORT_META).is_file():
    return load_export(path)
  if checkpoints.is_workdir(path):
    try:
      config, trained, step = checkpoints.restore_inference(path, best=best)
    except checkpoints.CheckpointError as e:
      raise ModelLoadError(str(e)) from None
    model = build(config, trained, source=f"{path} (step {step})", step=step)
    _check_generator(model, config.data.get("dir") or str(path / "data"))
    return model
  if official.is_release(path):
    config, trained, attr_arch = official.read(path)
    return build(config, trained, source=str(path.absolute()), attr_encoder_config=attr_arch)
  raise ModelLoadError(
    f"{path}: neither an exported model (no {EXPORT_META}), a training workdir with "
    "checkpoints, nor the original release's weights (AttrEncoder*.h5, LatentMappingNetwork*.h5)"
  )


def _check_generator(model: InferenceModel, data_dir: str) -> None:
  """Refuses a G that differs from the one that rendered the training data (recorded by `generate`).

  A random-init G is referenced by its seed only; if the generator code changed since training, the same seed
  gives another network and every output would be meaningless. Converted weights that changed on disk likewise.
  """
  record = pathlib.Path(data_dir) / "generation.json"
  if not record.is_file():
    return
  try:
    expected = json.loads(record.read_text()).get("generator_fingerprint")
  except (OSError, json.JSONDecodeError):
    return
  if not expected:
    return
  from disentangle_jax.data import generate  # pylint: disable=import-outside-toplevel

  got = generate.fingerprint(model.frozen.generator)
  if got != expected:
    g = model.config.generator
    raise ModelLoadError(
      f"{model.source}: the generator rebuilt from the config ({g.kind}, weights {g.weights or 'random init'}, "
      f"seed {model.config.seed}) is not the one that rendered the training data in {data_dir} (fingerprint "
      f"{got} != {expected}): its code or weights changed since training; retrain, or restore them"
    )


def load_export(path: str | os.PathLike) -> InferenceModel:
  """Reads the directory `export.export` wrote."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(path).absolute()
  try:
    meta = json.loads((path / EXPORT_META).read_text())
  except (OSError, json.JSONDecodeError) as e:
    raise ModelLoadError(f"{path / EXPORT_META}: unreadable export metadata ({e})") from e
  if meta.get("format") != EXPORT_FORMAT:
    raise ModelLoadError(f"{path / EXPORT_META}: format {meta.get('format')!r} is not {EXPORT_FORMAT!r}")
  if int(meta.get("version", 0)) > EXPORT_VERSION:
    raise ModelLoadError(
      f"{path}: export version {meta.get('version')} is newer than this code reads "
      f"({EXPORT_VERSION}); update disentangle_jax"
    )
  if not (path / EXPORT_PARAMS).is_dir():
    raise ModelLoadError(f"{path}: the export has no {EXPORT_PARAMS}/ directory")
  config = ml_collections.ConfigDict(meta["config"])
  for section in INFERENCE_FROZEN:  # weights the export carries (EXPORT_CARRIED) are named relative to it
    weights = config[section].get("weights") if section in config else None
    if weights and not os.path.isabs(weights) and (path / weights).exists():
      config[section].weights = str(path / weights)
  with ocp.StandardCheckpointer() as ckptr:
    trained = ckptr.restore(path / EXPORT_PARAMS)
  return build(
    config, trained, source=str(path), attr_encoder_config=meta.get("attr_encoder_config"), step=meta.get("step")
  )
