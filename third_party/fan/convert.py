"""face-alignment FAN-2D checkpoints -> this port's parameters, with the architecture read off the checkpoint.

Reads the released `2DFAN4-*.pth.tar` (a bare `torch.save` state_dict in face-alignment 1.5.0), any other
`torch.save` of a FAN state_dict (optionally wrapped as {"state_dict": ...} and/or with DataParallel's `module.`
prefixes, as training scripts save them), an `.npz` of the same keys, or a directory written by `convert_to`.
torch is never imported (`third_party/common/torch_pickle`).

Key mapping. Every Flax variable path maps to one upstream key by joining with dots, except that ConvBlock's
`downsample_bn` / `downsample_conv` are upstream's `downsample.0` / `downsample.2` (a Sequential with a ReLU at
index 1) and the leaf names differ: conv `kernel` [kh, kw, in, out] <- `weight` [out, in, kh, kw], BatchNorm
`scale` / `bias` / `mean` / `var` <- `weight` / `bias` / `running_mean` / `running_var`. `num_batches_tracked`
is unused in eval mode and ignored. The expected key set is derived from the module itself, so a key the module
lacks or a module variable the checkpoint lacks is reported, never skipped.
"""

from __future__ import annotations

import os
import pathlib
import re
import zipfile
import zlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import bundle as bundle_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.common import torch_pickle
from disentangle_jax.third_party.fan import model

NETWORK = "fan"
BUNDLE_METHODS: dict[str, tuple[str, ...]] = {
    "heatmaps": (), "all_heatmaps": (), "landmarks": (), "landmarks_hard": (), "preprocess": ()}

_MODULE_RENAMES = {"downsample_bn": "downsample.0", "downsample_conv": "downsample.2"}
_LEAF_RENAMES = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean",
                 "var": "running_var"}
_IGNORED = ("num_batches_tracked",)


def _flatten(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, prefix + (str(k),)))
    else:
      out[prefix + (str(k),)] = v
  return out


def upstream_key(path: tuple[str, ...]) -> str:
  """The face-alignment state_dict key of the Flax variable at `path`, e.g. ('m0', 'b1_4', 'bn1', 'scale')."""
  *modules, leaf = path
  return ".".join([_MODULE_RENAMES.get(m, m) for m in modules] + [_LEAF_RENAMES[leaf]])


def _to_upstream_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
  if path[-1] == "kernel":
    kh, kw, cin, cout = shape
    return (cout, cin, kh, kw)
  return tuple(shape)


def upstream_shapes(variables: dict[str, Any]) -> dict[str, tuple[int, ...]]:
  """upstream key -> upstream shape for a nested dict of a FAN's variables (arrays or shape structs)."""
  return {upstream_key(p): _to_upstream_shape(p, tuple(v.shape)) for p, v in _flatten(variables).items()}


def layout(config: model.Config) -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """upstream key -> (Flax variable path, upstream shape) for a network of `config`; no weights are computed."""
  flat = _flatten(nnx.to_pure_dict(nnx.state(model.FAN(config, rngs=None), nnx.Variable)))
  return {upstream_key(p): (p, _to_upstream_shape(p, tuple(v.shape))) for p, v in flat.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a FAN state_dict (torch file of either format, or .npz), unwrapping `state_dict` and `module.`."""
  path = str(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such FAN checkpoint file")
  if path.endswith(".npz"):
    try:
      with np.load(path, allow_pickle=False) as f:
        obj: Any = {k: f[k] for k in f.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
      raise torch_pickle.CheckpointFormatError(f"{path}: not a readable .npz archive: {e}") from e
  else:
    obj = torch_pickle.load(path)  # its errors name the file
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]
  if not isinstance(obj, dict) or not obj:
    raise torch_pickle.CheckpointFormatError(
        f"{path}: expected a non-empty dict of tensors (a FAN state_dict), found {type(obj).__name__}")
  out = {}
  for key, value in obj.items():
    key = str(key)
    key = key[len("module."):] if key.startswith("module.") else key
    if not isinstance(value, np.ndarray):
      raise torch_pickle.CheckpointFormatError(
          f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor; is this a FAN state_dict?")
    out[key] = value
  return out


def infer_config(state_dict: dict[str, np.ndarray], source: str) -> model.Config:
  """Reads num_modules (the `l<i>.weight` heads), width (4x conv1's channels) and the landmark count."""
  missing = [k for k in ("conv1.weight", "l0.weight") if k not in state_dict]
  if missing:
    raise state_dict_lib.CheckpointMismatchError(source, missing=missing)
  heads = sorted(int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"l(\d+)\.weight", k)))
  if heads != list(range(len(heads))):
    raise state_dict_lib.CheckpointMismatchError(
        source, missing=[f"l{i}.weight" for i in range(max(heads) + 1) if i not in heads])
  conv1, head = state_dict["conv1.weight"], state_dict["l0.weight"]
  if conv1.ndim != 4 or head.ndim != 4:
    raise state_dict_lib.CheckpointMismatchError(
        source, misshaped=[(k, tuple(state_dict[k].shape), "[out, in, kh, kw]") for k in ("conv1.weight", "l0.weight")
                           if state_dict[k].ndim != 4])
  try:
    return model.Config(num_modules=len(heads), width=4 * int(conv1.shape[0]), num_landmarks=int(head.shape[0]))
  except ValueError as e:
    raise state_dict_lib.CheckpointMismatchError(
        source, misshaped=[("conv1.weight", tuple(conv1.shape), f"a supported FAN size ({e})")]) from e


def to_params(state_dict: dict[str, np.ndarray], config: model.Config, source: str) -> dict[str, Any]:
  """Checks every key and shape against `config`'s network and returns the nested Flax parameter dict."""
  lay = layout(config)
  state_dict_lib.check(state_dict, {k: shape for k, (_, shape) in lay.items()}, source, ignore=_IGNORED)
  params: dict[str, Any] = {}
  for key, (path, _) in lay.items():
    value = np.asarray(state_dict[key], dtype=np.float32)
    if path[-1] == "kernel":
      value = np.ascontiguousarray(value.transpose(2, 3, 1, 0))
    node = params
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = value
  return params


def to_state_dict(params: dict[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of `to_params`: Flax parameters -> a face-alignment state_dict (for export and for tests)."""
  out = {}
  for path, value in _flatten(params).items():
    value = np.asarray(value, dtype=np.float32)
    out[upstream_key(path)] = np.ascontiguousarray(value.transpose(3, 2, 0, 1)) if path[-1] == "kernel" else value
  return out


def convert(path: str | os.PathLike) -> tuple[model.Config, dict[str, Any]]:
  """Any supported FAN checkpoint (not a converted directory) -> (Config, Flax parameter dict)."""
  state_dict = read_state_dict(path)
  config = infer_config(state_dict, str(path))
  return config, to_params(state_dict, config, str(path))


def convert_to(src: str | os.PathLike, dst: str | os.PathLike) -> None:
  """`disentangle-jax convert fan SRC DST`: writes the converted-weights layout of `third_party/common/converted`."""
  config, params = convert(src)
  converted.save(dst, NETWORK, config.to_dict(), params, source=str(src))


def _bundle(module: model.FAN) -> bundle_lib.Bundle:
  return bundle_lib.Bundle(module, module.config, BUNDLE_METHODS)


def build(config: model.Config, params: dict[str, Any], source: str) -> model.FAN:
  """A FAN of `config` holding `params` (checked: every variable present, shaped as the module needs)."""
  graphdef, state = nnx.split(model.FAN(config, rngs=None))
  wanted = {"/".join(p): tuple(v.shape) for p, v in _flatten(nnx.to_pure_dict(state)).items()}
  given = {"/".join(p): np.asarray(v) for p, v in _flatten(params).items()}
  state_dict_lib.check(given, wanted, source)
  nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, params))
  return nnx.merge(graphdef, state)


def load(path: str | os.PathLike, input_size: int | None = None) -> bundle_lib.Bundle:
  """A jitted FAN bundle from a converted directory or any checkpoint `convert` reads.

  `input_size` overrides the network input side (the weights do not fix it; upstream uses 256).
  """
  if converted.is_converted(path):
    config_dict, params = converted.load(path, NETWORK)
    config = model.Config.from_dict(config_dict)
  else:
    config, params = convert(path)
  if input_size is not None:
    config = model.Config(**{**config.to_dict(), "input_size": input_size})
  return _bundle(build(config, params, str(pathlib.Path(path))))


def init(config: model.Config, seed: int) -> bundle_lib.Bundle:
  """A randomly initialised FAN (PyTorch's default conv init, identity BatchNorm) drawn from `seed`, jitted."""
  return _bundle(model.FAN(config, rngs=nnx.Rngs(seed)))
