"""Readers of StyleGAN v1 weights: rosinality style-based-gan-pytorch, NVlabs' TF variables, StyleGAN-Tensorflow2.

Every reader returns `(Config, params)`, params being the nested dict of float32 numpy arrays of
`model.Generator` (see its docstring for the stored parameter form). Formats:

* rosinality `.pt`/`.model`: `torch.save({'generator', 'discriminator', 'g_optimizer', 'd_optimizer',
  'g_running'})` (the EMA `g_running` is used) or a bare `StyledGenerator` state_dict, `.pt` or `.npz`. All nine
  blocks are always stored, so the resolution (progressive step) comes from, in order: the `resolution` argument,
  a `step` entry of the checkpoint, an `<N>px` in the file name (`stylegan-256px-new.model`), or the last block
  whose noise weights or biases are not all zero (untrained blocks keep upstream's zero initialisation).
  The checkpoint has no mean style; `w_avg` is the mean of mapping(z) over 10 x 1024 z drawn from
  `numpy.random.default_rng(MEAN_STYLE_SEED)` (generate.py's recipe, with an explicit seed).
* NVlabs `Gs.vars` exported to `.npz` (`G_mapping/Dense0/weight`, `G_synthesis/4x4/Const/const`, `dlatent_avg`,
  `G_synthesis/noise0`, ...), or the official pickle itself (`karras2019stylegan-ffhq-1024x1024.pkl`, read with
  stand-ins for dnnlib's Network class: no TensorFlow, no code execution), converted with the official numerics
  switched on (eps 1e-8, bias after blur, per-layer noise from the stored maps, truncation cutoff 8).
* the Keras `.h5` of YotamNitzan/StyleGAN-Tensorflow2 (`save_weights` of `StyleGAN_G` or `StyleGAN_G_synthesis`):
  weight names read from the file's `weight_names` attributes and mapped onto the NVlabs names.
* the TF-format checkpoint of the same models (`Model.save_weights(prefix)` without `.h5`: `prefix.index` +
  `prefix.data-*`, as ID-disentanglement's `stylegan_G_256x256_synthesis`), given by its prefix or `.index` file:
  variable names from the checkpoint's object graph, mapped the same way.
"""

from __future__ import annotations

import math
import os
import pathlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from disentangle_jax.third_party.common import keras_h5
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.common import torch_pickle
from disentangle_jax.third_party.common.keymap import Rule
from disentangle_jax.third_party.stylegan1 import model as model_lib

MEAN_STYLE_SEED = 0
MEAN_STYLE_SAMPLES = 10 * 1024
_ROSINALITY_BLOCKS = 9  # StyledGenerator always builds 4 px .. 1024 px
_ROSINALITY_CHANNELS = (512, 512, 512, 512, 256, 128, 64, 32, 16)
_ROSINALITY_FUSED_FROM = 5  # blocks 5-8 use FusedUpsample
_BLUR = (np.outer([1, 2, 1], [1, 2, 1]) / 16).astype(np.float32)

Array = np.ndarray
Transform = Callable[[Array], Array]


# ------------------------------------------------------------------------------------------------- rosinality


def rosinality_expected(n_mlp: int = 8, code_dim: int = 512) -> dict[str, tuple[int, ...]]:
  """Every key and shape of `StyledGenerator(code_dim, n_mlp).state_dict()` (all nine blocks)."""
  out: dict[str, tuple[int, ...]] = {}
  for j in range(n_mlp):
    out[f"style.{2 * j + 1}.linear.weight_orig"] = (code_dim, code_dim)
    out[f"style.{2 * j + 1}.linear.bias"] = (code_dim,)
  for i, c in enumerate(_ROSINALITY_CHANNELS):
    p = f"generator.progression.{i}."
    c_in = _ROSINALITY_CHANNELS[max(i - 1, 0)]
    if i == 0:
      out[p + "conv1.input"] = (1, c, 4, 4)
    elif i < _ROSINALITY_FUSED_FROM:
      out[p + "conv1.1.conv.bias"] = (c,)
      out[p + "conv1.1.conv.weight_orig"] = (c, c_in, 3, 3)
      out[p + "conv1.2.weight"] = out[p + "conv1.2.weight_flip"] = (c, 1, 3, 3)
    else:
      out[p + "conv1.0.weight"] = (c_in, c, 3, 3)
      out[p + "conv1.0.bias"] = (c,)
      out[p + "conv1.1.weight"] = out[p + "conv1.1.weight_flip"] = (c, 1, 3, 3)
    for k in (1, 2):
      out[p + f"noise{k}.weight_orig"] = (1, c, 1, 1)
      out[p + f"adain{k}.style.linear.bias"] = (2 * c,)
      out[p + f"adain{k}.style.linear.weight_orig"] = (2 * c, 512)
    out[p + "conv2.conv.bias"] = (c,)
    out[p + "conv2.conv.weight_orig"] = (c, c, 3, 3)
  for i, c in enumerate(_ROSINALITY_CHANNELS):
    out[f"generator.to_rgb.{i}.conv.weight_orig"] = (3, c, 1, 1)
    out[f"generator.to_rgb.{i}.conv.bias"] = (3,)
  return out


def rosinality_config(step: int, n_mlp: int = 8, code_dim: int = 512) -> model_lib.Config:
  return model_lib.Config(resolution=4 * 2**step, z_dim=code_dim, w_dim=code_dim, mapping_layers=n_mlp)


def rosinality_rules(step: int, n_mlp: int = 8, code_dim: int = 512, lr_mul: float = 0.01) -> list[Rule]:
  """One `Rule` per key of `rosinality_expected`; those a step-`step` generator does not use have no path.

  Unused are the blocks above `step`, the other to_rgb layers and the fixed blur buffers (checked separately).
  """
  m: dict[str, tuple[tuple[str, ...], Transform]] = {}
  for j in range(n_mlp):
    m[f"style.{2 * j + 1}.linear.weight_orig"] = ((f"fc{j}", "w"), lambda a: a.T / lr_mul)
    m[f"style.{2 * j + 1}.linear.bias"] = ((f"fc{j}", "b"), lambda a: a / lr_mul)
  hwio = lambda a: a.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
  for i in range(step + 1):
    p = f"generator.progression.{i}."
    l1, l2 = f"layer{2 * i}", f"layer{2 * i + 1}"
    if i == 0:
      m[p + "conv1.input"] = (("const",), lambda a: a[0].transpose(1, 2, 0))
    elif i < _ROSINALITY_FUSED_FROM:
      m[p + "conv1.1.conv.weight_orig"] = ((l1, "conv_w"), hwio)
      m[p + "conv1.1.conv.bias"] = ((l1, "bias"), lambda a: a)
    else:  # FusedUpsample weight is (in, out, kh, kw)
      m[p + "conv1.0.weight"] = ((l1, "conv_w"), lambda a: a.transpose(2, 3, 0, 1))
      m[p + "conv1.0.bias"] = ((l1, "bias"), lambda a: a)
    m[p + "conv2.conv.weight_orig"] = ((l2, "conv_w"), hwio)
    m[p + "conv2.conv.bias"] = ((l2, "bias"), lambda a: a)
    for k, layer in ((1, l1), (2, l2)):
      m[p + f"noise{k}.weight_orig"] = ((layer, "noise_strength"), lambda a: a.reshape(-1))
      m[p + f"adain{k}.style.linear.weight_orig"] = ((layer, "style_w"), lambda a: a.T)
      m[p + f"adain{k}.style.linear.bias"] = ((layer, "style_b"), lambda a: a)
  m[f"generator.to_rgb.{step}.conv.weight_orig"] = (("to_rgb", "w"), lambda a: a[:, :, 0, 0].T)
  m[f"generator.to_rgb.{step}.conv.bias"] = (("to_rgb", "b"), lambda a: a)
  return [Rule(k, s, *m[k]) if k in m else Rule(k, s, None) for k, s in rosinality_expected(n_mlp, code_dim).items()]


def _blur_keys(step: int) -> list[str]:
  keys = []
  for i in range(1, step + 1):
    k = "conv1.2" if i < _ROSINALITY_FUSED_FROM else "conv1.1"
    keys += [f"generator.progression.{i}.{k}.weight", f"generator.progression.{i}.{k}.weight_flip"]
  return keys


def _trained_step(sd: dict[str, Array]) -> int:
  """The last block whose noise weights or conv biases are not all zero (upstream initialises them to zero)."""
  step = 0
  for i in range(_ROSINALITY_BLOCKS):
    p = f"generator.progression.{i}."
    if any(
      np.any(v != 0)
      for k, v in sd.items()
      if k.startswith(p) and (".noise" in k or k.endswith("conv.bias") or k.endswith("conv1.0.bias"))
    ):
      step = i
  return step


def _step_from_name(path: str) -> int | None:
  match = re.search(r"(\d+)px", pathlib.Path(path).name)
  if not match:
    return None
  res = int(match.group(1))
  step = int(math.log2(res)) - 2 if res >= 4 else -1
  if 4 * 2**step != res or not 0 <= step < _ROSINALITY_BLOCKS:
    raise ValueError(f"{path}: file name says {res}px, which is not a StyleGAN v1 resolution (4 .. 1024)")
  return step


def mean_style(
  params: dict[str, Any], config: model_lib.Config, seed: int = MEAN_STYLE_SEED, samples: int = MEAN_STYLE_SAMPLES
) -> np.ndarray:
  """mean over `samples` z ~ N(0, I) of mapping(z), in numpy (float64 accumulation of float32 layers)."""
  z = np.random.default_rng(seed).standard_normal((samples, config.z_dim)).astype(np.float32)
  x = z / np.sqrt(np.mean(z * z, axis=1, keepdims=True) + 1e-8)
  for j in range(config.mapping_layers):
    fc = params[f"fc{j}"]
    scale = np.float32(math.sqrt(2.0 / fc["w"].shape[0]) * config.mapping_lr_mul)
    x = x @ (fc["w"] * scale) + fc["b"] * np.float32(config.mapping_lr_mul)
    x = np.where(x >= 0, x, x * np.float32(0.2))
  return x.astype(np.float64).mean(0).astype(np.float32)


def _with_buffers(params: dict[str, Any], config: model_lib.Config, noise: list[Array] | None) -> dict[str, Any]:
  """Adds the "const" noise maps: the checkpoint's own, or `model.const_noise(config)` when it stores none."""
  for i, n in enumerate(model_lib.const_noise(config) if noise is None else noise):
    params[f"noise{i}"] = n
  return params


def from_rosinality(
  sd: dict[str, Array], step: int | None, source: str, mean_samples: int = MEAN_STYLE_SAMPLES
) -> tuple[model_lib.Config, dict[str, Any]]:
  """A `StyledGenerator` state_dict (numpy) -> (Config, params) at progressive step `step` (None: trained blocks).

  `w_avg` is the mapping's mean over `mean_samples` z from `MEAN_STYLE_SEED`.
  """
  sd = {k[len("module.") :] if k.startswith("module.") else k: v for k, v in sd.items()}
  n_mlp = sum(1 for k in sd if re.fullmatch(r"style\.\d+\.linear\.weight_orig", k))
  first = sd.get("style.1.linear.weight_orig")
  code_dim = int(first.shape[1]) if first is not None and first.ndim == 2 else 512
  step = _trained_step(sd) if step is None else step
  if not 0 <= step < _ROSINALITY_BLOCKS:
    raise ValueError(f"{source}: progressive step {step} is outside 0..8 (4 .. 1024 px)")
  config = rosinality_config(step, n_mlp, code_dim)
  params = keymap.apply(sd, rosinality_rules(step, n_mlp, code_dim, config.mapping_lr_mul), source)
  for k in _blur_keys(step):
    if not np.allclose(np.asarray(sd[k], np.float32), _BLUR[None], atol=1e-6):
      raise ValueError(f"{source}: blur buffer {k} is not the [1,2,1] x [1,2,1] / 16 kernel this port implements")
  params["w_avg"] = mean_style(params, config, samples=mean_samples)
  return config, _with_buffers(params, config, None)


def _rosinality_from_checkpoint(obj: Any, path: str, resolution: int | None) -> tuple[model_lib.Config, dict]:
  step = None
  if isinstance(obj, dict) and "g_running" in obj:
    if isinstance(obj.get("step"), (int, np.integer)):
      step = int(obj["step"])
    sd = obj["g_running"]
  elif isinstance(obj, dict) and any(str(k).startswith(("style.", "generator.", "module.")) for k in obj):
    sd = obj
  else:
    keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(
      f"{path}: neither a rosinality training checkpoint (no 'g_running' entry) nor a "
      f"StyledGenerator state_dict; top-level keys: {keys}"
    )
  if not isinstance(sd, dict):
    raise ValueError(f"{path}: 'g_running' is a {type(sd).__name__}, not a state_dict")
  if resolution is not None:
    step = _step_of_resolution(resolution, path)
  elif step is None:
    step = _step_from_name(path)
  return from_rosinality(dict(sd), step, path)


def _step_of_resolution(resolution: int, source: str) -> int:
  step = int(math.log2(resolution)) - 2 if resolution >= 4 else -1
  if resolution < 4 or 4 * 2**step != resolution:
    raise ValueError(f"{source}: resolution {resolution} is not a power of two >= 4")
  return step


# ---------------------------------------------------------------------------------------------------- NVlabs


def nvlabs_scope(layer: int) -> str:
  """The official variable scope of styled layer `layer` (4x4/Const, 4x4/Conv, {R}x{R}/Conv0_up, {R}x{R}/Conv1)."""
  res = 4 * 2 ** (layer // 2)
  if layer < 2:
    return f"G_synthesis/4x4/{'Const' if layer == 0 else 'Conv'}"
  return f"G_synthesis/{res}x{res}/{'Conv1' if layer % 2 else 'Conv0_up'}"


def nvlabs_config(
  resolution: int,
  z_dim: int = 512,
  w_dim: int = 512,
  mapping_layers: int = 8,
  channel_max: int = 512,
  channel_base: int = 16384,
) -> model_lib.Config:
  """The official numerics (eps 1e-8, bias after blur, per-layer stored noise, truncation cutoff 8)."""
  return model_lib.Config(
    resolution=resolution,
    z_dim=z_dim,
    w_dim=w_dim,
    mapping_layers=mapping_layers,
    channel_max=channel_max,
    channel_base=channel_base,
    instance_norm_eps=1e-8,
    bias_after_blur=True,
    noise_per_layer=True,
    truncation_cutoff=8,
  )


def nvlabs_expected(config: model_lib.Config, with_synthesis_only: bool = False) -> dict[str, tuple[int, ...]]:
  """Official `Gs.vars` names and shapes a generator of `config` needs (ToRGB at lod 0 only)."""
  out: dict[str, tuple[int, ...]] = {}
  if not with_synthesis_only:
    dims = [config.z_dim] + [config.w_dim] * config.mapping_layers
    for j in range(config.mapping_layers):
      out[f"G_mapping/Dense{j}/weight"] = (dims[j], dims[j + 1])
      out[f"G_mapping/Dense{j}/bias"] = (dims[j + 1],)
    out["dlatent_avg"] = (config.w_dim,)
  for l in range(config.num_layers):
    res = config.layer_res(l)
    c = config.channels(res)
    s = nvlabs_scope(l)
    out[f"G_synthesis/noise{l}"] = (1, 1, res, res)
    if l == 0:
      out[s + "/const"] = (1, c, 4, 4)
    else:
      c_in = config.channels(res // 2) if l % 2 == 0 else c
      out[s + "/weight"] = (3, 3, c_in, c)
    out[s + "/bias"] = (c,)
    out[s + "/Noise/weight"] = (c,)
    out[s + "/StyleMod/weight"] = (config.w_dim, 2 * c)
    out[s + "/StyleMod/bias"] = (2 * c,)
  c = config.channels(config.resolution)
  out["G_synthesis/ToRGB_lod0/weight"] = (1, 1, c, 3)
  out["G_synthesis/ToRGB_lod0/bias"] = (3,)
  return out


def _nvlabs_ignored(key: str) -> bool:
  return key in ("lod", "G_synthesis/lod") or bool(re.fullmatch(r"G_synthesis/ToRGB_lod[1-9]\d*/(weight|bias)", key))


def from_nvlabs(variables: dict[str, Array], source: str) -> tuple[model_lib.Config, dict[str, Any]]:
  """NVlabs `Gs.vars` (name -> array) -> (Config, params). A synthesis-only set (no G_mapping) keeps w_avg 0."""
  v = {k: np.asarray(a, np.float32) for k, a in variables.items()}
  res_keys = [int(m.group(1)) for k in v if (m := re.fullmatch(r"G_synthesis/(\d+)x\1/Conv1/weight", k))]
  resolution = max(res_keys, default=4)
  n_dense = sum(1 for k in v if re.fullmatch(r"G_mapping/Dense\d+/weight", k))
  synthesis_only = n_dense == 0
  const = v.get("G_synthesis/4x4/Const/const")
  channel_max = int(const.shape[1]) if const is not None and const.ndim == 4 else 512  # nf at 4 px is the maximum
  # nf(stage) = min(fmap_base / 2**stage, fmap_max): below the maximum, the last block's width fixes the base
  # (FFHQ-256: 64 channels at 256 px, base 16384; a smaller fmap_base gives narrower late blocks).
  rgb = v.get("G_synthesis/ToRGB_lod0/weight")
  last = int(rgb.shape[2]) if rgb is not None and rgb.ndim == 4 else channel_max
  channel_base = last * resolution if last < channel_max else 16384
  if synthesis_only:
    style = v.get("G_synthesis/4x4/Const/StyleMod/weight")
    w_dim = int(style.shape[0]) if style is not None and style.ndim == 2 else 512
    config = nvlabs_config(resolution, w_dim, w_dim, 8, channel_max, channel_base)
  else:
    d0, dl = v.get("G_mapping/Dense0/weight"), v.get(f"G_mapping/Dense{n_dense - 1}/weight")
    z_dim = int(d0.shape[0]) if d0 is not None and d0.ndim == 2 else 512
    w_dim = int(dl.shape[1]) if dl is not None and dl.ndim == 2 else 512
    config = nvlabs_config(resolution, z_dim, w_dim, n_dense, channel_max, channel_base)
  expected = nvlabs_expected(config, synthesis_only)
  state_dict_lib.check({k: a for k, a in v.items() if not _nvlabs_ignored(k)}, expected, source)

  params: dict[str, Any] = {}
  if not synthesis_only:
    for j in range(config.mapping_layers):
      params[f"fc{j}"] = {"w": v[f"G_mapping/Dense{j}/weight"], "b": v[f"G_mapping/Dense{j}/bias"]}
    params["w_avg"] = v["dlatent_avg"]
  else:
    dims = [config.z_dim] + [config.w_dim] * config.mapping_layers
    for j in range(config.mapping_layers):
      params[f"fc{j}"] = {"w": np.zeros((dims[j], dims[j + 1]), np.float32), "b": np.zeros((dims[j + 1],), np.float32)}
    params["w_avg"] = np.zeros((config.w_dim,), np.float32)
  sqrt2 = np.float32(math.sqrt(2.0))
  for l in range(config.num_layers):
    s = nvlabs_scope(l)
    c = config.channels(config.layer_res(l))
    layer: dict[str, Array] = {}
    if l == 0:  # the const layer's bias comes right after the const (plus noise): fold it into the const
      params["const"] = (v[s + "/const"][0] + v[s + "/bias"][:, None, None]).transpose(1, 2, 0)
    else:
      w = v[s + "/weight"]
      layer["conv_w"] = 4 * w if config.layer_kind(l) == "fused" else w  # official sums the 4 shifts without /4
      layer["bias"] = v[s + "/bias"]
    layer["noise_strength"] = v[s + "/Noise/weight"] / np.float32(math.sqrt(2.0 / c))
    layer["style_w"] = v[s + "/StyleMod/weight"] / sqrt2  # official gain 1: W / sqrt(w_dim)
    layer["style_b"] = v[s + "/StyleMod/bias"] + np.concatenate([np.ones(c), np.zeros(c)]).astype(np.float32)
    params[f"layer{l}"] = layer
  params["to_rgb"] = {"w": v["G_synthesis/ToRGB_lod0/weight"][0, 0] / sqrt2, "b": v["G_synthesis/ToRGB_lod0/bias"]}
  noise = [v[f"G_synthesis/noise{l}"][0, 0] for l in range(config.num_layers)]
  return config, _with_buffers(params, config, noise)


class _TFNetwork:
  """Stand-in for `dnnlib.tflib.network.Network`: keeps the pickled state (name, variables, components) only."""

  state: dict[str, Any]

  def __setstate__(self, state: dict[str, Any]) -> None:
    self.state = state


class _NVlabsUnpickler(torch_pickle.SafeUnpickler):
  """Unpickles NVlabs' TF pickles without TensorFlow or dnnlib: networks become `_TFNetwork`, arrays numpy."""

  extra_globals = {("dnnlib.tflib.network", "Network"): _TFNetwork, ("dnnlib.util", "EasyDict"): dict}


def _tf_network_vars(net: Any, source: str, prefix: str = "") -> dict[str, Array]:
  state = getattr(net, "state", None)
  if not isinstance(state, dict) or "variables" not in state:
    raise ValueError(f"{source}: a pickled network without variables: not an NVlabs StyleGAN pickle")
  out = {prefix + str(name): np.asarray(value) for name, value in state["variables"]}
  for component in state.get("components", {}).values():
    out.update(_tf_network_vars(component, source, prefix + str(component.state["name"]) + "/"))
  return out


def read_nvlabs_pickle(path: str) -> dict[str, Array]:
  """`Gs.vars` of an NVlabs StyleGAN pickle (`(G, D, Gs)`, or a single network): name -> numpy array."""
  with open(path, "rb") as f:
    try:
      obj = _NVlabsUnpickler(f).load()
    except torch_pickle.CheckpointFormatError as e:
      raise torch_pickle.CheckpointFormatError(f"{path}: {e}") from e
  if isinstance(obj, tuple) and len(obj) == 3 and all(isinstance(n, _TFNetwork) for n in obj):
    obj = obj[2]  # Gs, the long-term average generator
  if not isinstance(obj, _TFNetwork):
    raise ValueError(f"{path}: expected a pickled (G, D, Gs) tuple of networks, got {type(obj).__name__}")
  version = obj.state.get("version", 0)
  if version >= 4:
    raise ValueError(f"{path}: network pickle version {version} is StyleGAN2; convert it with stylegan2")
  return _tf_network_vars(obj, path)


# ----------------------------------------------------------------------------------------------- Keras .h5


def _keras_to_nvlabs_name(name: str) -> str:
  """`G_mapping/Dense0/kernel:0` -> `G_mapping/Dense0/weight` and the like (see the module docstring)."""
  name = re.sub(r":\d+$", "", name)
  for root in ("G_mapping/", "G_synthesis/", "Truncation/"):
    idx = name.rfind(root)
    if idx > 0:
      name = name[idx:]
      break
  if name.endswith("dlatent_avg"):
    return "dlatent_avg"
  if name.endswith("/kernel"):
    name = name[: -len("/kernel")] + "/weight"
  if name.endswith("/bias/bias"):
    name = name[: -len("/bias")]
  if re.fullmatch(r"G_synthesis/noise\d+/noise", name):
    name = name[: -len("/noise")]
  return name


def read_keras_h5(path: str) -> dict[str, Array]:
  """Every weight of a Keras `save_weights` HDF5 file, keyed by the NVlabs variable name it holds."""
  return _nvlabs_names([(w, a) for layer in keras_h5.read(path) for w, a in layer.weights], path)


def _nvlabs_names(weights: list[tuple[str, Array]], source: str) -> dict[str, Array]:
  """(Keras variable name, array) pairs -> NVlabs name -> array; two variables onto one name is an error."""
  out: dict[str, Array] = {}
  for weight, array in weights:
    name = _keras_to_nvlabs_name(weight)
    if name in out:
      raise ValueError(f"{source}: weights {weight!r} and another both map onto {name!r}")
    out[name] = array
  return out


def tf_checkpoint_prefix(path: str) -> str | None:
  """The prefix of a TF-format checkpoint (`Model.save_weights(prefix)`: `prefix.index` + `prefix.data-*`)."""
  prefix = path[: -len(".index")] if path.endswith(".index") else path
  return prefix if os.path.isfile(prefix + ".index") else None


def read_tf_checkpoint(prefix: str) -> dict[str, Array]:
  """Every variable of a TF-format Keras checkpoint, keyed by the NVlabs name it holds.

  Object-based checkpoints key tensors by object path (`layer_with_weights-3/bias/.ATTRIBUTES/VARIABLE_VALUE`),
  which depends on layer order only; the variable names (`G_synthesis/8x8/Conv1/bias/bias`) are in the stored
  object graph, read here, so the mapping is the same as for the `.h5` files.
  """
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from tensorflow.core.protobuf import trackable_object_graph_pb2  # pylint: disable=import-outside-toplevel

  try:
    reader = tf.train.load_checkpoint(prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  except Exception as e:  # pylint: disable=broad-except  (TF raises several unrelated types for a bad file)
    raise torch_pickle.CheckpointFormatError(f"{prefix}: not a readable TF-format checkpoint ({e})") from e
  weights = []
  for node in graph.nodes:
    for attr in node.attributes:
      if attr.name != "VARIABLE_VALUE" or not attr.full_name.startswith(("G_synthesis/", "G_mapping/", "Truncation")):
        continue
      try:
        weights.append((attr.full_name, np.asarray(reader.get_tensor(attr.checkpoint_key))))
      except Exception as e:  # pylint: disable=broad-except
        raise torch_pickle.CheckpointFormatError(
          f"{prefix}: variable {attr.full_name!r} ({attr.checkpoint_key}) is unreadable ({e})"
        ) from e
  if not weights:
    raise torch_pickle.CheckpointFormatError(f"{prefix}: no StyleGAN variables (G_synthesis/..., G_mapping/...)")
  return _nvlabs_names(weights, prefix)


# ---------------------------------------------------------------------------------------------- dispatching


def convert(path: str | os.PathLike, resolution: int | None = None) -> tuple[model_lib.Config, dict[str, Any]]:
  """Any supported StyleGAN v1 file -> (Config, params); `resolution` picks a rosinality checkpoint's step."""
  path = str(path)
  prefix = tf_checkpoint_prefix(path)
  if prefix is not None:
    return from_nvlabs(read_tf_checkpoint(prefix), prefix)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path}: no such StyleGAN v1 checkpoint")
  with open(path, "rb") as f:
    head = f.read(1 << 16)
  if head.startswith(b"\x89HDF"):
    return from_nvlabs(read_keras_h5(path), path)
  if not head.startswith(b"PK") and b"dnnlib.tflib.network" in head:
    return from_nvlabs(read_nvlabs_pickle(path), path)
  if path.endswith(".npz"):
    with np.load(path) as data:
      arrays = {k: data[k] for k in data.files}
    if any(k.startswith(("G_mapping/", "G_synthesis/")) for k in arrays):
      return from_nvlabs(arrays, path)
    return _rosinality_from_checkpoint(arrays, path, resolution)
  return _rosinality_from_checkpoint(torch_pickle.load(path), path, resolution)
