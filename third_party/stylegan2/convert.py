"""Upstream StyleGAN2 checkpoints -> (Config, Flax params), inferring every size from the checkpoint itself.

Formats (`convert(path)` tells them apart by content, not by name):

- stylegan2-ada-pytorch network pickle (`network-snapshot-*.pkl`): its `G_ema`. Such a pickle stores each network
  as `torch_utils.persistence._reconstruct_persistent_obj(meta)`, where `meta` carries the class's source code and
  the module's `__dict__` (`_parameters`, `_buffers`, `_modules`, ...). `_SnapshotUnpickler` maps that function to a
  stub that keeps only `meta["state"]` (the source code is never executed or imported) and `dnnlib.EasyDict` to a
  dict; the state_dict is then collected from the stubs the way `Module.state_dict()` walks modules.
- a stylegan2-ada-pytorch `G.state_dict()` / `G_ema.state_dict()`: `torch.save` file (zip or legacy) or `.npz`.
- rosinality stylegan2-pytorch `.pt`: `{"g_ema": state_dict, "latent_avg": [w_dim]}` (convert_weight.py), or a
  train.py checkpoint (`g`, `d`, `g_ema`, optimisers, no `latent_avg`): then `w_avg` is the mean w of
  `LATENT_AVG_SAMPLES` z drawn with numpy from `latent_avg_seed` (0 unless given), as upstream's
  `mean_latent(4096)` does.
- a bare rosinality `g_ema` state_dict (`.pt` / `.npz`): `w_avg` as for a train.py checkpoint.

`conv_clamp` is not stored in an ada state_dict: it is read from a pickle's `init_kwargs`, and otherwise defaults
to `DEFAULT_ADA_CONV_CLAMP` (256, what ada's train.py uses unless `--fp32`); pass `conv_clamp=` to override.
Rosinality's generator has no clamp. Every key and shape is checked against the inferred architecture;
a mismatch raises `CheckpointMismatchError` naming the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import math
import os
import pathlib
import pickle
import re
from typing import Any

import numpy as np

from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.common import torch_pickle
from disentangle_jax.third_party.common.keymap import Rule
from disentangle_jax.third_party.stylegan2.model import Config
from disentangle_jax.trees import Path

DEFAULT_ADA_CONV_CLAMP = 256.0
LATENT_AVG_SAMPLES = 4096


def _fir_kernel(gain: float) -> np.ndarray:
  f = np.array([1.0, 3.0, 3.0, 1.0])
  return (np.outer(f, f) / np.outer(f, f).sum() * gain).astype(np.float32)


# ------------------------------------------------------------------------------------------------- rule tables


def _t(a):
  return a.transpose()


def _conv_oikk(a):  # [O, I, k, k] -> HWIO
  return a.transpose(2, 3, 1, 0)


def ada_rules(config: Config) -> list[Rule]:
  """Every stylegan2-ada-pytorch `Generator` state_dict entry (c_dim = 0, skip architecture) for `config`."""
  c = config
  rules = []
  dims = [c.z_dim] + [c.w_dim] * c.mapping_layers
  for i in range(c.mapping_layers):
    rules.append(Rule(f"mapping.fc{i}.weight", (dims[i + 1], dims[i]), ("mapping_net", f"fc{i}", "weight"), _t))
    rules.append(Rule(f"mapping.fc{i}.bias", (dims[i + 1],), ("mapping_net", f"fc{i}", "bias")))
  rules.append(Rule("mapping.w_avg", (c.w_dim,), ("mapping_net", "w_avg")))
  for res in c.block_resolutions:
    p = f"synthesis.b{res}"
    cout = c.channels(res)
    if res == 4:
      rules.append(Rule(f"{p}.const", (cout, 4, 4), (f"b{res}", "const"), lambda a: a.transpose(1, 2, 0)))
    rules.append(Rule(f"{p}.resample_filter", (4, 4), None))
    for conv in ("conv1",) if res == 4 else ("conv0", "conv1"):
      cin = c.channels(res // 2) if conv == "conv0" else cout
      q, path = f"{p}.{conv}", (f"b{res}", conv)
      rules += [
        Rule(f"{q}.weight", (cout, cin, 3, 3), path + ("weight",), _conv_oikk),
        Rule(f"{q}.noise_strength", (), path + ("noise_strength",)),
        Rule(f"{q}.bias", (cout,), path + ("bias",)),
        Rule(f"{q}.resample_filter", (4, 4), None),
        Rule(f"{q}.noise_const", (res, res), path + ("noise_const",)),
        Rule(f"{q}.affine.weight", (cin, c.w_dim), path + ("affine", "weight"), _t),
        Rule(f"{q}.affine.bias", (cin,), path + ("affine", "bias")),
      ]
    q, path = f"{p}.torgb", (f"b{res}", "torgb")
    rules += [
      Rule(
        f"{q}.weight",
        (c.img_channels, cout, 1, 1),
        path + ("weight",),
        lambda a: a.reshape(a.shape[0], a.shape[1]).transpose(),
      ),
      Rule(f"{q}.bias", (c.img_channels,), path + ("bias",)),
      Rule(f"{q}.affine.weight", (cout, c.w_dim), path + ("affine", "weight"), _t),
      Rule(f"{q}.affine.bias", (cout,), path + ("affine", "bias")),
    ]
  return rules


def rosinality_rules(config: Config) -> list[Rule]:
  """Every rosinality `Generator` state_dict entry for `config` (w_avg comes from `latent_avg`, outside it)."""
  c = config
  if c.z_dim != c.w_dim:
    raise ValueError(f"rosinality's generator has z_dim == w_dim (style_dim); got {c.z_dim} and {c.w_dim}")
  rules = []
  for i in range(c.mapping_layers):
    rules.append(Rule(f"style.{i + 1}.weight", (c.w_dim, c.w_dim), ("mapping_net", f"fc{i}", "weight"), _t))
    rules.append(Rule(f"style.{i + 1}.bias", (c.w_dim,), ("mapping_net", f"fc{i}", "bias")))
  c4 = c.channels(4)
  rules.append(Rule("input.input", (1, c4, 4, 4), ("b4", "const"), lambda a: a[0].transpose(1, 2, 0)))

  def styled(prefix: str, path: Path, cin: int, cout: int, noise_idx: int, res: int, up: bool) -> list[Rule]:
    out = [
      Rule(f"{prefix}.conv.weight", (1, cout, cin, 3, 3), path + ("weight",), lambda a: _conv_oikk(a[0])),
      Rule(f"{prefix}.conv.modulation.weight", (cin, c.w_dim), path + ("affine", "weight"), _t),
      Rule(f"{prefix}.conv.modulation.bias", (cin,), path + ("affine", "bias")),
      Rule(f"{prefix}.noise.weight", (1,), path + ("noise_strength",), lambda a: a.reshape(())),
      Rule(f"{prefix}.activate.bias", (cout,), path + ("bias",)),
      Rule(f"noises.noise_{noise_idx}", (1, 1, res, res), path + ("noise_const",), lambda a: a.reshape(res, res)),
    ]
    if up:
      out.insert(1, Rule(f"{prefix}.conv.blur.kernel", (4, 4), None))
    return out

  def to_rgb(prefix: str, path: Path, cin: int, up: bool) -> list[Rule]:
    out = [
      Rule(f"{prefix}.bias", (1, c.img_channels, 1, 1), path + ("bias",), lambda a: a.reshape(-1)),
      Rule(
        f"{prefix}.conv.weight",
        (1, c.img_channels, cin, 1, 1),
        path + ("weight",),
        lambda a: a.reshape(a.shape[1], a.shape[2]).transpose(),
      ),
      Rule(f"{prefix}.conv.modulation.weight", (cin, c.w_dim), path + ("affine", "weight"), _t),
      Rule(f"{prefix}.conv.modulation.bias", (cin,), path + ("affine", "bias")),
    ]
    if up:
      out.append(Rule(f"{prefix}.upsample.kernel", (4, 4), None))
    return out

  rules += styled("conv1", ("b4", "conv1"), c4, c4, 0, 4, up=False)
  rules += to_rgb("to_rgb1", ("b4", "torgb"), c4, up=False)
  for j, res in enumerate(c.block_resolutions[1:]):
    cin, cout = c.channels(res // 2), c.channels(res)
    rules += styled(f"convs.{2 * j}", (f"b{res}", "conv0"), cin, cout, 2 * j + 1, res, up=True)
    rules += styled(f"convs.{2 * j + 1}", (f"b{res}", "conv1"), cout, cout, 2 * j + 2, res, up=False)
    rules += to_rgb(f"to_rgbs.{j}", (f"b{res}", "torgb"), cout, up=True)
  return rules


_FIXED_KERNELS = {"resample_filter": _fir_kernel(1.0), "kernel": _fir_kernel(4.0)}


def apply_rules(sd: dict[str, np.ndarray], rules: list[Rule], source: str) -> dict[str, Any]:
  """`keymap.apply`, plus a check that the unused buffers (path None) are the fixed FIR kernels this port bakes in."""
  params = keymap.apply(sd, rules, source)
  for r in rules:
    if r.path is None:
      value, want = np.asarray(sd[r.key]), _FIXED_KERNELS[r.key.rsplit(".", 1)[-1]]
      if not np.allclose(value, want, rtol=1e-6, atol=1e-7):
        raise ValueError(f"{source}: {r.key} is not the [1, 3, 3, 1] FIR kernel this port implements: {value}")
  return params


# ------------------------------------------------------------------------------------------------- inference


def _need(sd: dict[str, Any], key: str, source: str) -> np.ndarray:
  if key not in sd:
    raise state_dict_lib.CheckpointMismatchError(source, missing=[key])
  return np.asarray(sd[key])


def _channel_table(channels: dict[int, int], source: str) -> tuple[int, int]:
  """(channel_base, channel_max) reproducing a checkpoint's channels-per-resolution table."""
  channel_max = max(channels.values())
  below = [res for res, ch in channels.items() if ch < channel_max]
  channel_base = channels[min(below)] * min(below) if below else channel_max * max(channels)
  got = {res: min(channel_base // res, channel_max) for res in channels}
  if got != channels:
    raise ValueError(f"{source}: channels per resolution {channels} do not follow min(base // res, max)")
  return channel_base, channel_max


def _count(sd: dict[str, Any], pattern: str) -> list[int]:
  rx = re.compile(pattern)
  return sorted({int(m.group(1)) for k in sd for m in [rx.fullmatch(k)] if m})


def infer_ada_config(sd: dict[str, Any], source: str, **overrides: Any) -> Config:
  """The Config of a stylegan2-ada `Generator` state_dict; `overrides` set what it does not store (conv_clamp)."""
  if any(k.startswith("mapping.embed.") for k in sd):
    raise ValueError(f"{source}: a conditional generator (mapping.embed, c_dim > 0) is not supported")
  layers_ = _count(sd, r"mapping\.fc(\d+)\.weight")
  if not layers_:
    raise state_dict_lib.CheckpointMismatchError(source, missing=["mapping.fc0.weight"])
  resolutions = _count(sd, r"synthesis\.b(\d+)\.conv1\.weight")
  if not resolutions:
    raise state_dict_lib.CheckpointMismatchError(source, missing=["synthesis.b4.conv1.weight"])
  channels = {res: int(_need(sd, f"synthesis.b{res}.conv1.weight", source).shape[0]) for res in resolutions}
  base, cmax = _channel_table(channels, source)
  fields = dict(
    resolution=max(resolutions),
    z_dim=int(_need(sd, "mapping.fc0.weight", source).shape[1]),
    w_dim=int(_need(sd, f"mapping.fc{max(layers_)}.weight", source).shape[0]),
    mapping_layers=max(layers_) + 1,
    channel_base=base,
    channel_max=cmax,
    conv_clamp=DEFAULT_ADA_CONV_CLAMP,
    img_channels=int(_need(sd, f"synthesis.b{max(resolutions)}.torgb.weight", source).shape[0]),
  )
  fields.update(overrides)
  return Config(**fields)


def infer_rosinality_config(sd: dict[str, Any], source: str, **overrides: Any) -> Config:
  """The Config of a rosinality `Generator` state_dict."""
  layers_ = _count(sd, r"style\.(\d+)\.weight")
  if not layers_:
    raise state_dict_lib.CheckpointMismatchError(source, missing=["style.1.weight"])
  num_rgbs = len(_count(sd, r"to_rgbs\.(\d+)\.conv\.weight"))
  resolution = 4 * 2**num_rgbs
  channels = {4: int(_need(sd, "input.input", source).shape[1])}
  for j in range(num_rgbs):
    channels[8 * 2**j] = int(_need(sd, f"convs.{2 * j + 1}.conv.weight", source).shape[1])
  base, cmax = _channel_table(channels, source)
  style_dim = int(_need(sd, "style.1.weight", source).shape[1])
  fields = dict(
    resolution=resolution,
    z_dim=style_dim,
    w_dim=style_dim,
    mapping_layers=len(layers_),
    channel_base=base,
    channel_max=cmax,
    conv_clamp=None,
    img_channels=int(_need(sd, "to_rgb1.conv.weight", source).shape[1]),
  )
  fields.update(overrides)
  return Config(**fields)


# ------------------------------------------------------------------------------------------------- readers


class _EasyDict(dict):
  """Stands for `dnnlib.EasyDict` (a dict with attribute access) inside a network pickle."""


class PersistentStub:
  """Stands for a stylegan2-ada persistent object: its class name and its pickled `__dict__`, nothing else."""

  def __init__(self, meta: dict[str, Any]):
    self.class_name = meta.get("class_name", "?")
    self.state = meta.get("state") or {}

  def __repr__(self) -> str:
    return f"PersistentStub({self.class_name})"


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> PersistentStub:
  if not isinstance(meta, dict) or meta.get("type") != "class":
    raise torch_pickle.CheckpointFormatError(f"unexpected persistent-object record: {type(meta).__name__}")
  return PersistentStub(meta)


class _SnapshotUnpickler(torch_pickle.SafeUnpickler):
  """Reads stylegan2-ada-pytorch network pickles without `torch_utils`, `dnnlib` or the pickled source code."""

  extra_globals = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    # Protocol-2 pickles name builtins by their Python 2 module (a module's `_non_persistent_buffers_set`).
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
  }


def module_state_dict(obj: PersistentStub, prefix: str = "") -> dict[str, np.ndarray]:
  """The state_dict of an unpickled module stub: parameters, persistent buffers, then submodules, recursively."""
  state = obj.state
  out: dict[str, np.ndarray] = {}
  for name, value in (state.get("_parameters") or {}).items():
    if value is not None:
      out[prefix + name] = np.asarray(value)
  skip = set(state.get("_non_persistent_buffers_set") or ())
  for name, value in (state.get("_buffers") or {}).items():
    if value is not None and name not in skip:
      out[prefix + name] = np.asarray(value)
  for name, child in (state.get("_modules") or {}).items():
    if child is None:
      continue
    if not isinstance(child, PersistentStub):
      raise torch_pickle.CheckpointFormatError(f"submodule {prefix}{name} is a {type(child).__name__}, not a module")
    out.update(module_state_dict(child, f"{prefix}{name}."))
  return out


def read_ada_pickle(path: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """(G_ema state_dict, G_ema init_kwargs) of a stylegan2-ada-pytorch network pickle."""
  try:
    with open(path, "rb") as f:
      data = _SnapshotUnpickler(f).load()
  except torch_pickle.CheckpointFormatError as e:
    raise torch_pickle.CheckpointFormatError(f"{path}: {e}") from e
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
    raise torch_pickle.CheckpointFormatError(f"{path}: not a readable stylegan2-ada network pickle ({e})") from e
  if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentStub):
    keys = sorted(data) if isinstance(data, dict) else type(data).__name__
    raise torch_pickle.CheckpointFormatError(f"{path}: no G_ema network in the pickle (found {keys})")
  g = data["G_ema"]
  return module_state_dict(g), dict(g.state.get("_init_kwargs") or {})


def _read(path: str) -> tuple[str, dict[str, np.ndarray], dict[str, Any]]:
  """(layout, state_dict, extra) of any supported file; extra holds `latent_avg` / ada `init_kwargs`."""
  p = pathlib.Path(path)
  if not p.is_file():
    raise FileNotFoundError(f"{path}: no such checkpoint file")
  with open(p, "rb") as f:
    head = f.read(8)
  if p.suffix == ".npz":
    sd = dict(np.load(p, allow_pickle=False))
    return _layout_of(sd, path), sd, {}
  if head[:2] != b"PK" and p.suffix == ".pkl":
    sd, init_kwargs = read_ada_pickle(str(p))
    return "ada", sd, {"init_kwargs": init_kwargs}
  obj = torch_pickle.load(str(p))
  if isinstance(obj, dict) and "G_ema" in obj:
    raise torch_pickle.CheckpointFormatError(f"{path}: holds G_ema modules; rename it to .pkl (a network pickle)")
  if isinstance(obj, dict) and "g_ema" in obj:
    extra = {"latent_avg": np.asarray(obj["latent_avg"])} if obj.get("latent_avg") is not None else {}
    return "rosinality", dict(obj["g_ema"]), extra
  if not isinstance(obj, dict):
    raise torch_pickle.CheckpointFormatError(f"{path}: expected a state_dict, found a {type(obj).__name__}")
  return _layout_of(obj, path), dict(obj), {}


def _layout_of(sd: dict[str, Any], path: str) -> str:
  if any(k.startswith("mapping.fc") for k in sd):
    return "ada"
  if any(k.startswith("style.") for k in sd):
    return "rosinality"
  raise state_dict_lib.CheckpointMismatchError(
    f"{path} (neither a stylegan2-ada nor a rosinality generator)",
    missing=["mapping.fc0.weight (ada) or style.1.weight (rosinality)"],
    unexpected=sorted(sd)[:20],
  )


# ------------------------------------------------------------------------------------------------- public


def convert(path: str | os.PathLike, *, latent_avg_seed: int = 0, **overrides: Any) -> tuple[Config, dict[str, Any]]:
  """Reads any supported StyleGAN2 checkpoint; returns (Config, Flax params as nested numpy dicts).

  Args:
    path: the checkpoint file.
    latent_avg_seed: seed of the z draw that estimates `w_avg` when a rosinality checkpoint has no `latent_avg`.
    **overrides: Config fields the checkpoint does not determine (`conv_clamp`, `fused_modconv`, `compute_dtype`).
  """
  path = str(path)
  layout, sd, extra = _read(path)
  if layout == "ada":
    init_kwargs = extra.get("init_kwargs")
    if init_kwargs and "conv_clamp" not in overrides:  # a pickle says what it was built with (None: no clamp)
      clamp = (init_kwargs.get("synthesis_kwargs") or {}).get("conv_clamp")
      overrides = {**overrides, "conv_clamp": None if clamp is None else float(clamp)}
    config = infer_ada_config(sd, path, **overrides)
    return config, apply_rules(sd, ada_rules(config), path)
  config = infer_rosinality_config(sd, path, **overrides)
  params = apply_rules(sd, rosinality_rules(config), path)
  if "latent_avg" in extra:
    avg = extra["latent_avg"].reshape(-1)
    if avg.shape != (config.w_dim,):
      raise state_dict_lib.CheckpointMismatchError(
        path, misshaped=[("latent_avg", extra["latent_avg"].shape, (config.w_dim,))]
      )
  else:
    avg = mean_w(config, params, latent_avg_seed)
  params["mapping_net"]["w_avg"] = np.asarray(avg, np.float32)
  return config, params


def mean_w(config: Config, params: dict[str, Any], seed: int, samples: int = LATENT_AVG_SAMPLES) -> np.ndarray:
  """Mean mapping output of `samples` z ~ N(0, 1) from numpy's PCG64 seeded `seed` (rosinality's `mean_latent`).

  Plain numpy, in float64: cheap (one pass of `samples` rows through the FC layers) and needs no compilation.
  """
  z = np.random.default_rng(seed).standard_normal((samples, config.z_dim))
  x = z / np.sqrt(np.mean(z * z, axis=1, keepdims=True) + 1e-8)
  for i in range(config.mapping_layers):
    fc = params["mapping_net"][f"fc{i}"]
    weight = np.asarray(fc["weight"], np.float64)
    x = (
      x @ (weight * (config.lr_multiplier / math.sqrt(weight.shape[0]))) + np.asarray(fc["bias"]) * config.lr_multiplier
    )
    x = np.where(x >= 0, x, 0.2 * x) * math.sqrt(2.0)
  return np.mean(x, axis=0).astype(np.float32)
