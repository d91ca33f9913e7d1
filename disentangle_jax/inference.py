"""`disentangle_jax.load(path)`: a trained model ready to swap, encode and render, from an export or a workdir.

Users hold one of two things: the directory `disentangle-jax export` wrote (E_attr and M parameters plus the config
that names the frozen networks' weights), or a training workdir with Orbax checkpoints. Both load into the same
`InferenceModel`, which keeps only what inference needs (G, E_id, E_attr, M: no landmark net, no D_W, no optimiser
state) and runs each method as one jitted function, compiled once per input shape.

    model = disentangle_jax.load("runs/smoke")
    out = model.swap(id_images, attr_images)          # [B, R, R, 3] in [-1, 1]
    code, w = model.encode(id_images, attr_images)    # concat(id, attr) [B, id_dim + attr_dim], w [B, w_dim]
    same = model.render(w)
"""

from __future__ import annotations

import functools
import json
import os
import pathlib
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from disentangle_jax import checkpoints
from disentangle_jax import errors

EXPORT_META = "inference.json"
EXPORT_PARAMS = "params"
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

  def __init__(self, config: ml_collections.ConfigDict, spec: Any, frozen: nnx.Module, trainable: nnx.Module,
               source: str = "", step: int | None = None):
    self.config = config
    self.spec = spec
    self.source = source
    self.step = step  # the training step of the parameters, when known
    # Split once: the jitted functions take plain array pytrees, so a call does not re-walk the module graphs.
    self._frozen_def, self._frozen_state = nnx.split(frozen)
    self._trainable_def, self._trainable_state = nnx.split(trainable)
    self._jitted: dict[str, Callable[..., Any]] = {}

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

  # --- public methods ----------------------------------------------------------------------------------------

  def swap(self, id_images: Any, attr_images: Any) -> jax.Array:
    """The identity of `id_images` with the pose, expression and lighting of `attr_images` -> [B, R, R, 3]."""
    a, b = self._pair(id_images, attr_images)
    return self._fn("swap")(self._frozen_state, self._trainable_state, a, b)

  def encode(self, id_images: Any, attr_images: Any) -> tuple[jax.Array, jax.Array]:
    """(concatenated code [B, id_dim + attr_dim], w [B, w_dim]) of image pairs."""
    a, b = self._pair(id_images, attr_images)
    return self._fn("encode")(self._frozen_state, self._trainable_state, a, b)

  def render(self, w: Any) -> jax.Array:
    """G(w) with `w` [B, w_dim] broadcast to every style input -> [B, R, R, 3] in ~[-1, 1]."""
    w = jnp.asarray(w, jnp.float32)
    if w.ndim == 1:
      w = w[None]
    if w.ndim != 2 or w.shape[-1] != self.w_dim:
      raise ValueError(f"render: w must be [B, {self.w_dim}], got shape {tuple(w.shape)}")
    return self._fn("render")(self._frozen_state, self._trainable_state, w)

  def id_code(self, images: Any) -> jax.Array:
    """E_id's L2-normalised identity code [B, id_dim] (also the identity metric's embedding)."""
    return self._fn("id_code")(self._frozen_state, self._trainable_state, self._images(images, "images"))

  def attr_code(self, images: Any) -> jax.Array:
    """E_attr's attribute code [B, attr_dim]."""
    return self._fn("attr_code")(self._frozen_state, self._trainable_state, self._images(images, "images"))

  def map(self, code: Any) -> jax.Array:
    """M: concatenated code [B, id_dim + attr_dim] -> w [B, w_dim]."""
    code = jnp.asarray(code, jnp.float32)
    if code.ndim == 1:
      code = code[None]
    if code.ndim != 2 or code.shape[-1] != self.code_dim:
      raise ValueError(f"map: code must be [B, {self.code_dim}], got shape {tuple(code.shape)}")
    return self._fn("map")(self._frozen_state, self._trainable_state, code)

  def __repr__(self) -> str:
    s = self.spec
    return (f"InferenceModel({self.source or 'in memory'}: {s.resolution}px, id {s.id_dim} + attr {s.attr_dim}"
            f" -> w {s.w_dim})")

  # --- internals ---------------------------------------------------------------------------------------------

  def _images(self, images: Any, name: str) -> jax.Array:
    x = images
    if isinstance(x, np.ndarray) and x.dtype == np.uint8:
      x = x.astype(np.float32) / 127.5 - 1.0
    x = jnp.asarray(x, jnp.float32)
    if x.ndim == 3:
      x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"{name}: expected NHWC RGB images [B, H, W, 3], got shape {tuple(x.shape)}")
    return x

  def _pair(self, id_images: Any, attr_images: Any) -> tuple[jax.Array, jax.Array]:
    a, b = self._images(id_images, "id_images"), self._images(attr_images, "attr_images")
    if a.shape[0] != b.shape[0]:
      raise ValueError(f"id_images and attr_images need the same batch size, got {a.shape[0]} and {b.shape[0]}")
    return a, b

  def _fn(self, name: str) -> Callable[..., Any]:
    if name not in self._jitted:
      self._jitted[name] = jax.jit(functools.partial(_METHODS[name], self._frozen_def, self._trainable_def,
                                                     self.spec))
    return self._jitted[name]


def _m():
  from disentangle_jax import model as model_lib  # pylint: disable=import-outside-toplevel
  return model_lib


def _swap(fdef, tdef, spec, fstate, tstate, id_images, attr_images):
  frozen, trainable = nnx.merge(fdef, fstate), nnx.merge(tdef, tstate)
  return _m().swap(frozen, trainable, spec, id_images, attr_images)[0]


def _encode(fdef, tdef, spec, fstate, tstate, id_images, attr_images):
  frozen, trainable = nnx.merge(fdef, fstate), nnx.merge(tdef, tstate)
  id_code = _m().embed_identity(frozen, spec, id_images)
  code = jnp.concatenate([id_code, trainable.attr_encoder(attr_images)], axis=-1)
  return code, trainable.mapper(code)


def _render(fdef, tdef, spec, fstate, tstate, w):
  del tdef, tstate
  return _m().render(nnx.merge(fdef, fstate), spec, w)


def _id_code(fdef, tdef, spec, fstate, tstate, images):
  del tdef, tstate
  return _m().embed_identity(nnx.merge(fdef, fstate), spec, images)


def _attr_code(fdef, tdef, spec, fstate, tstate, images):
  del fdef, fstate, spec
  return nnx.merge(tdef, tstate).attr_encoder(images)


def _map(fdef, tdef, spec, fstate, tstate, code):
  del fdef, fstate, spec
  return nnx.merge(tdef, tstate).mapper(code)


_METHODS = {"swap": _swap, "encode": _encode, "render": _render, "id_code": _id_code, "attr_code": _attr_code,
            "map": _map}


# ----------------------------------------------------------------------------------------------------------------
# Building from a config and trained parameters


def build(config: ml_collections.ConfigDict, trained: dict[str, Any] | None = None, source: str = "",
          attr_encoder_config: dict[str, Any] | None = None, step: int | None = None) -> InferenceModel:
  """The inference networks of `config`; `trained` = {"attr_encoder": pure dict, "mapper": pure dict} or None.

  The frozen G and E_id come from `config` exactly as training built them (converted weights, or a random init
  from `config.seed` plus the training code's seed offsets). E_attr is built at the architecture the parameters
  were trained with (`attr_encoder_config`, from an export) without loading any ImageNet start point.
  """
  model_lib = _m()
  from disentangle_jax import frozen as frozen_lib  # pylint: disable=import-outside-toplevel
  from disentangle_jax.nets import mapper as mapper_lib  # pylint: disable=import-outside-toplevel

  seed = int(config.seed)
  g = frozen_lib.generator(config.generator, seed + model_lib.SEED_OFFSETS["generator"])
  e_id = frozen_lib.id_encoder(config.id_encoder, seed + model_lib.SEED_OFFSETS["id_encoder"])
  g.eval()
  e_id.eval()
  for name, net in (("generator", g), ("id_encoder", e_id)):
    if trained is not None and f"frozen_{name}" in trained:  # an export of a random-init network carries it
      _assign(net, trained[f"frozen_{name}"], f"{source}: frozen_{name}")
  res, w_dim, num_ws = int(g.config.resolution), int(g.config.w_dim), int(g.config.num_ws)
  head = str(config.id_encoder.head)
  id_dim = _output_dim(lambda x: e_id.embed(x, head=head), (1, res, res, 3))
  e_attr = _attr_encoder(config, seed + model_lib.SEED_OFFSETS["attr_encoder"], attr_encoder_config,
                         None if trained is None else trained["attr_encoder"])
  if trained is not None:
    _assign(e_attr, trained["attr_encoder"], f"{source}: attr_encoder")
  attr_dim = _output_dim(e_attr, (1, res, res, 3))
  make_mapper = lambda: mapper_lib.Mapper(id_dim + attr_dim, tuple(config.mapper.hidden), w_dim,
                                          negative_slope=float(config.mapper.negative_slope),
                                          rngs=nnx.Rngs(seed + model_lib.SEED_OFFSETS["mapper"]))
  mapper = make_mapper() if trained is None else nnx.eval_shape(make_mapper)
  if trained is not None:
    _assign(mapper, trained["mapper"], f"{source}: mapper")
  frozen_dtype = str(config.compute.get("frozen_dtype", "float32"))
  spec = model_lib.Spec(resolution=res, w_dim=w_dim, num_ws=num_ws, id_dim=id_dim, attr_dim=attr_dim,
                        id_head=head, landmark_keep=(), noise_mode=str(config.generator.get("noise_mode", "const")),
                        frozen_dtype=frozen_dtype, remat_generator=False)
  frozen = _Frozen(g, e_id)
  if frozen_dtype != "float32":
    state = model_lib.cast_frozen_state(nnx.state(frozen), frozen_dtype)
    nnx.update(frozen, state)
  return InferenceModel(config, spec, frozen, _Trainable(e_attr, mapper), source, step)


class _Frozen(nnx.Module):
  """The frozen networks inference needs; attribute names match `model.Frozen` so its functions apply."""

  def __init__(self, generator: nnx.Module, id_encoder: nnx.Module):
    self.generator = generator
    self.id_encoder = id_encoder


class _Trainable(nnx.Module):
  """E_attr and M; attribute names match `model.Trainable`."""

  def __init__(self, attr_encoder: nnx.Module, mapper: nnx.Module):
    self.attr_encoder = attr_encoder
    self.mapper = mapper


def _attr_encoder(config: ml_collections.ConfigDict, seed: int, arch: dict[str, Any] | None,
                  trained: dict[str, Any] | None) -> nnx.Module:
  """E_attr at the architecture it was trained with.

  With trained parameters coming, the module is only built abstractly (`nnx.eval_shape`: no random init, which
  for InceptionV3 costs a minute of op-by-op dispatch on a CPU) and never loads the ImageNet start point.
  """
  model_lib = _m()
  from disentangle_jax.nets import inception  # pylint: disable=import-outside-toplevel
  cfg = config.attr_encoder
  if trained is None:
    return model_lib.attr_encoder(cfg, seed)
  if arch is None:
    if cfg.weights and os.path.exists(cfg.weights):  # the architecture the training code derived from them
      module = nnx.eval_shape(lambda: model_lib.attr_encoder(cfg, seed))
      module.eval()
      return module
    sizes = {k: v for k, v in model_lib._arch(cfg).items()}  # pylint: disable=protected-access
    fc = trained.get("fc") if isinstance(trained, dict) else None
    if fc and "kernel" in fc:
      sizes["num_classes"] = int(np.shape(fc["kernel"])[-1])
    arch = sizes
  module = nnx.eval_shape(lambda: inception.init(_inception_config(arch), seed))
  module.eval()
  return module


def _inception_config(arch: dict[str, Any]) -> Any:
  from disentangle_jax.nets import inception  # pylint: disable=import-outside-toplevel
  if hasattr(inception.Config, "from_dict"):
    return inception.Config.from_dict(arch)
  return inception.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in arch.items()})


def _output_dim(fn: Any, shape: tuple[int, ...]) -> int:
  return int(jax.eval_shape(fn, jax.ShapeDtypeStruct(shape, jnp.float32)).shape[-1])


def _assign(module: nnx.Module, pure: dict[str, Any], name: str) -> None:
  """Puts a pure-dict state into `module`, with an error naming the first missing / unexpected / mis-shaped key."""
  state = nnx.state(module)
  want = _flat(nnx.to_pure_dict(state))
  got = _flat(pure)
  missing = sorted(set(want) - set(got))
  unexpected = sorted(set(got) - set(want))
  if missing or unexpected:
    raise ModelLoadError(f"{name}: parameters do not match the architecture; missing {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{' ...' if len(unexpected) > 5 else ''}")
  for k, v in got.items():
    need = tuple(getattr(want[k], "shape", np.shape(want[k])))
    if tuple(np.shape(v)) != need:
      raise ModelLoadError(f"{name}: {'/'.join(k)} has shape {np.shape(v)}, the architecture needs {need}")
  def fill(node: Any, prefix: tuple[str, ...]) -> Any:  # the module's own key types (List indices are ints)
    if isinstance(node, dict):
      return {k: fill(v, prefix + (str(k),)) for k, v in node.items()}
    return jnp.asarray(got[prefix], node.dtype)

  nnx.replace_by_pure_dict(state, fill(nnx.to_pure_dict(state), ()))
  nnx.update(module, state)


def _flat(tree: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, prefix + (str(k),)))
    return out
  return {prefix: tree}


# ----------------------------------------------------------------------------------------------------------------
# Loading


def load(path: str | os.PathLike) -> InferenceModel:
  """An exported model directory (`disentangle-jax export`) or a training workdir (its latest checkpoint)."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f"{path}: no such model directory (pass an exported model or a training workdir)")
  if not path.is_dir():
    raise ModelLoadError(f"{path}: is a file; a model is a directory (an export or a training workdir)")
  if (path / EXPORT_META).is_file():
    return load_export(path)
  if checkpoints.is_workdir(path):
    try:
      config, trained, step = checkpoints.restore_inference(path)
    except checkpoints.CheckpointError as e:
      raise ModelLoadError(str(e)) from None
    model = build(config, trained, source=f"{path} (step {step})", step=step)
    _check_generator(model, config.data.get("dir") or str(path / "data"))
    return model
  raise ModelLoadError(f"{path}: neither an exported model (no {EXPORT_META}) nor a training workdir with "
                       "checkpoints")


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
  generator = nnx.merge(model._frozen_def, model._frozen_state).generator  # pylint: disable=protected-access
  got = generate.fingerprint(generator)
  if got != expected:
    g = model.config.generator
    raise ModelLoadError(
        f"{model.source}: the generator rebuilt from the config ({g.kind}, weights {g.weights or 'random init'}, "
        f"seed {model.config.seed}) is not the one that rendered the training data in {data_dir} (fingerprint "
        f"{got} != {expected}): its code or weights changed since training; retrain, or restore them")


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
    raise ModelLoadError(f"{path}: export version {meta.get('version')} is newer than this code reads "
                         f"({EXPORT_VERSION}); update disentangle_jax")
  if not (path / EXPORT_PARAMS).is_dir():
    raise ModelLoadError(f"{path}: the export has no {EXPORT_PARAMS}/ directory")
  config = ml_collections.ConfigDict(meta["config"])
  with ocp.StandardCheckpointer() as ckptr:
    trained = ckptr.restore(path / EXPORT_PARAMS)
  return build(config, trained, source=str(path), attr_encoder_config=meta.get("attr_encoder_config"),
               step=meta.get("step"))
