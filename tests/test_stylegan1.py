"""StyleGAN v1 port against the rosinality fixtures (tests/testdata/stylegan1, see its README), and its converters.

The fixtures hold a full `StyledGenerator` state_dict with random weights and the upstream outputs for it. The
progressive-growing fade (alpha < 1, case `fade`) is not ported: a frozen generator renders at its final
resolution only, so that case is not checked.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pickle
import shutil

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from disentangle_jax import frozen
from disentangle_jax.configs import smoke
from disentangle_jax.third_party import stylegan1
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from disentangle_jax.third_party.common import torch_pickle
from disentangle_jax.third_party.stylegan1 import model as model_lib
from tests import recipe
from tests import torch_writer

convert_lib = importlib.import_module("disentangle_jax.third_party.stylegan1.convert")
DATA = recipe.TESTDATA / "stylegan1"
SD = DATA / "state_dict_g_running.npz"
W_ATOL, IMAGE_ATOL = 5e-5, 2e-3
FEW = 16  # mean-style samples where the test sets w_avg itself
SMOKE = dict(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_max=32)


@pytest.fixture(scope="module")
def cases():
  with np.load(DATA / "cases.npz") as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def state_dict():
  with np.load(SD) as f:
    return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def g64(state_dict, cases):
  """The fixture generator at step 4 (64 px), with the fixture's mean style as truncation centre."""
  config, params = convert_lib.from_rosinality(state_dict, 4, str(SD), FEW)
  params["w_avg"] = cases["mean_style"][0]
  return stylegan1.from_params(config, params)


@pytest.fixture(scope="module")
def render64():
  return jax.jit(lambda m, ws, noise: m.synthesis(ws, noise=noise))


def _noise(cases, prefix="noise_", n=5, batch=slice(None)):
  return [jnp.asarray(cases[f"{prefix}{i}"][batch].transpose(0, 2, 3, 1)) for i in range(n)]


def _nchw(img):
  return np.asarray(img).transpose(0, 3, 1, 2)


# ------------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("case", ["plain", "trunc", "mix", "fade", "mixtrunc", "s6"])
def test_mapping_matches(g64, cases, case):
  for suffix in ("_w", "_w1", "_w2"):
    if case + suffix in cases:
      z = cases[f"{case}_z{suffix[2:]}"]
      ws = np.asarray(stylegan1.mapping(g64, jnp.asarray(z)))
      assert ws.shape == (2, 10, 512)
      for l in range(10):
        np.testing.assert_allclose(ws[:, l], cases[case + suffix], rtol=0, atol=W_ATOL)


def test_mean_style_and_truncation(g64, cases):
  mean = np.asarray(stylegan1.mapping(g64, jnp.asarray(cases["mean_z"]))).mean(0)[:1]
  np.testing.assert_allclose(mean, cases["mean_style"], rtol=0, atol=W_ATOL)
  ws = np.asarray(stylegan1.mapping(g64, jnp.asarray(cases["trunc_z"]), truncation_psi=0.7))
  for l in range(10):
    np.testing.assert_allclose(ws[:, l], cases["trunc_w_truncated"], rtol=0, atol=W_ATOL)
  cut = np.asarray(stylegan1.mapping(g64, jnp.asarray(cases["trunc_z"]), truncation_psi=0.7, truncation_cutoff=4))
  np.testing.assert_allclose(cut[:, 3], cases["trunc_w_truncated"], rtol=0, atol=W_ATOL)
  np.testing.assert_allclose(cut[:, 4], cases["trunc_w"], rtol=0, atol=W_ATOL)


def _case_ws(g, cases, case):
  psi = 0.7 if case in ("trunc", "mixtrunc") else 1.0
  if case in ("mix", "mixtrunc"):
    ws1 = stylegan1.mapping(g, jnp.asarray(cases[f"{case}_z1"]), truncation_psi=psi)
    ws2 = stylegan1.mapping(g, jnp.asarray(cases[f"{case}_z2"]), truncation_psi=psi)
    lo, hi = (1, 2) if case == "mix" else (0, 1)
    return stylegan1.mix_styles(ws1, ws2, lo, hi)
  return stylegan1.mapping(g, jnp.asarray(cases[f"{case}_z"]), truncation_psi=psi)


@pytest.mark.parametrize("case", ["plain", "trunc", "mix", "mixtrunc"])
def test_images_match(g64, render64, cases, case):
  img = render64(g64, _case_ws(g64, cases, case), _noise(cases))
  assert img.shape == (2, 64, 64, 3) and img.dtype == jnp.float32
  np.testing.assert_allclose(_nchw(img), cases[f"{case}_image"], rtol=0, atol=IMAGE_ATOL)


def test_released_256px_path(state_dict, cases):
  """Step 6 (the released FFHQ 256 model's path), with the fused up-sampling blocks 5 and 6; one image."""
  config, params = convert_lib.from_rosinality(state_dict, 6, str(SD), FEW)
  params["w_avg"] = cases["mean_style"][0]
  g = stylegan1.from_params(config, params)
  assert config == stylegan1.FFHQ256 and config.num_ws == 14
  ws = stylegan1.mapping(g, jnp.asarray(cases["s6_z"][:1]), truncation_psi=0.7)
  img = jax.jit(lambda m, ws, n: m.synthesis(ws, noise=n))(g, ws, _noise(cases, "s6_noise_", 7, slice(0, 1)))
  np.testing.assert_allclose(_nchw(img), cases["s6_image"][:1], rtol=0, atol=IMAGE_ATOL)


def test_every_block_matches(state_dict, cases):
  """Blocks 0-8 one at a time (4 -> 8 px inputs), which covers blocks 7 and 8 (512, 1024 px) and their toRGB."""
  config, params = convert_lib.from_rosinality(state_dict, 8, str(SD), FEW)
  g = stylegan1.from_params(config, params)
  to_rgbs = []
  for i in range(9):
    rgb_w = state_dict[f"generator.to_rgb.{i}.conv.weight_orig"].astype(np.float32)[:, :, 0, 0].T
    to_rgb = model_lib.ToRGB(rgb_w.shape[0], rngs=nnx.Rngs(0))
    to_rgb.w[...] = jnp.asarray(rgb_w)
    to_rgb.b[...] = jnp.asarray(state_dict[f"generator.to_rgb.{i}.conv.bias"].astype(np.float32))
    to_rgbs.append(to_rgb)
  nhwc = lambda a: jnp.asarray(a.transpose(0, 2, 3, 1))
  xs = [jnp.broadcast_to(g.const[...][None], (2,) + g.const.shape)]
  xs += [nhwc(cases[f"block{i}_x"]) for i in range(1, 9)]
  ws = [jnp.asarray(cases[f"block{i}_w"]) for i in range(9)]
  noises = [nhwc(cases[f"block{i}_noise"]) for i in range(9)]

  @jax.jit
  def run(g, to_rgbs, xs, ws, noises):
    outs = []
    for i in range(9):
      y = getattr(g, f"layer{2 * i}")(xs[i], ws[i], noises[i])
      y = getattr(g, f"layer{2 * i + 1}")(y, ws[i], noises[i])
      outs.append((y, to_rgbs[i](y)))
    return outs

  for i, (y, rgb) in enumerate(run(g, to_rgbs, xs, ws, noises)):
    np.testing.assert_allclose(_nchw(y), cases[f"block{i}_out"], rtol=0, atol=IMAGE_ATOL, err_msg=f"block {i}")
    np.testing.assert_allclose(_nchw(rgb), cases[f"block{i}_rgb"], rtol=0, atol=IMAGE_ATOL, err_msg=f"rgb {i}")


def test_manifest_256px_maps_one_to_one():
  """Every key of a released 256 px checkpoint is used or is one of the known unused ones, with matching shapes."""
  entries = json.loads((DATA / "manifest_rosinality_256px.json").read_text())["generator"]
  shapes = {e["key"]: tuple(e["shape"]) for e in entries}
  assert len(shapes) == 139 and sum(math.prod(s) for s in shapes.values()) == 26_255_691
  rules = convert_lib.rosinality_rules(6)
  assert keymap.expected(rules) == shapes
  used = {e["key"] for e in entries if e["used_at_256px_alpha1"]}
  blur = set(convert_lib._blur_keys(6))  # pylint: disable=protected-access  (checked to be the fixed kernel)
  assert {r.key for r in rules if r.path is not None} == used - blur and blur <= used
  abstract = nnx.eval_shape(lambda: stylegan1.Generator(stylegan1.FFHQ256, rngs=nnx.Rngs(0)))
  want = {"/".join(map(str, p)): tuple(v.shape) for p, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param))}
  got = {}
  for r in (r for r in rules if r.path is not None):
    name = "/".join(r.path)
    assert name not in got, f"{r.key} maps onto {name} twice"
    got[name] = r.fn(np.broadcast_to(np.float32(0), shapes[r.key])).shape
  assert got == want


# ----------------------------------------------------------------------------------------------- gradient


def test_gradient_wrt_ws_matches_finite_differences():
  """Directional derivatives of a random projection of the image, in float64 (instance norm on tiny maps is so
  curved that float32 central differences are not accurate enough to check anything)."""
  with jax.enable_x64(True):
    config = stylegan1.Config(resolution=8, z_dim=8, w_dim=8, mapping_layers=2, channel_max=8, compute_dtype="float64")
    g = stylegan1.Generator(config, rngs=nnx.Rngs(3))
    for l in range(config.num_layers):  # upstream init has zero noise strengths: make the noise count
      layer = getattr(g, f"layer{l}")
      layer.noise_strength[...] = 0.5 * jnp.ones_like(layer.noise_strength[...])
    ws = jax.random.normal(jax.random.key(1), (2, config.num_ws, config.w_dim), jnp.float64)
    probe = jax.random.normal(jax.random.key(2), (2, 8, 8, 3), jnp.float64)
    loss = jax.jit(lambda ws: jnp.sum(g.synthesis(ws, noise_mode="const") * probe))
    grad = jax.grad(loss)(ws)
    assert grad.shape == ws.shape and grad.dtype == jnp.float64
    eps = 1e-6
    for seed in range(3):
      v = jax.random.normal(jax.random.key(10 + seed), ws.shape, jnp.float64)
      fd = (loss(ws + eps * v) - loss(ws - eps * v)) / (2 * eps)
      np.testing.assert_allclose(float(jnp.vdot(grad, v)), float(fd), rtol=1e-5)


# ----------------------------------------------------------------------------------------------- converters


def test_reads_the_released_checkpoint_layout(tmp_path, state_dict):
  """`torch.save({'generator', 'discriminator', ..., 'g_running'})`: g_running is used, the step comes from the name."""
  generator = {k: (v + np.float16(0.5) if k.endswith(".bias") else v) for k, v in state_dict.items()}
  path = tmp_path / "stylegan-64px-new.model"
  torch_writer.save(
    {
      "generator": generator,
      "discriminator": {"progression.0.conv.weight": np.zeros(3, np.float32)},
      "g_optimizer": {"state": {}},
      "d_optimizer": {"state": {}},
      "g_running": state_dict,
    },
    str(path),
  )
  config, params = stylegan1.convert(path)
  ref_config, ref_params = convert_lib.from_rosinality(state_dict, 4, str(SD))
  assert config == ref_config
  jax.tree.map(np.testing.assert_array_equal, params, ref_params)


def test_resolution_inference(state_dict, tmp_path):
  """Blocks above the trained step keep upstream's zero noise weights and biases."""
  sd = dict(state_dict)
  for k in sd:
    if any(k.startswith(f"generator.progression.{i}.") for i in (4, 5, 6, 7, 8)) and (".noise" in k or "bias" in k):
      sd[k] = np.zeros_like(sd[k])
  assert convert_lib.from_rosinality(sd, None, "sd", FEW)[0].resolution == 32
  path = tmp_path / "ckpt.npz"
  np.savez(path, **sd)
  assert stylegan1.convert(path, resolution=16)[0].resolution == 16
  with pytest.raises(ValueError, match="not a power of two"):
    stylegan1.convert(path, resolution=48)


def _nvlabs_from_rosinality(sd, step) -> dict[str, np.ndarray]:
  """The fixture weights in NVlabs `Gs.vars` layout, by the fixture README's mapping read backwards."""
  f = {k: v.astype(np.float32) for k, v in sd.items()}
  out = {"lod": np.float32(0), "G_synthesis/lod": np.float32(0)}
  for j in range(8):
    out[f"G_mapping/Dense{j}/weight"] = f[f"style.{2 * j + 1}.linear.weight_orig"].T / 0.01
    out[f"G_mapping/Dense{j}/bias"] = f[f"style.{2 * j + 1}.linear.bias"] / 0.01
  rng = np.random.default_rng(0)
  for i in range(step + 1):
    p, r = f"generator.progression.{i}.", 4 * 2**i
    for k in (1, 2):
      layer = 2 * i + k - 1
      scope = convert_lib.nvlabs_scope(layer)
      c = f[p + f"noise{k}.weight_orig"].shape[1]
      if layer == 0:
        bias = rng.normal(size=c).astype(np.float32)  # split the const into const + bias, as official stores it
        out[scope + "/const"] = f[p + "conv1.input"] - bias[None, :, None, None]
      elif k == 1 and i >= 5:
        out[scope + "/weight"] = f[p + "conv1.0.weight"].transpose(2, 3, 0, 1) / 4
        bias = f[p + "conv1.0.bias"]
      else:
        conv = p + ("conv1.1.conv" if k == 1 else "conv2.conv")
        out[scope + "/weight"] = f[conv + ".weight_orig"].transpose(2, 3, 1, 0)
        bias = f[conv + ".bias"]
      out[scope + "/bias"] = bias
      out[scope + "/Noise/weight"] = f[p + f"noise{k}.weight_orig"].reshape(-1) * np.sqrt(2 / c)
      out[scope + "/StyleMod/weight"] = f[p + f"adain{k}.style.linear.weight_orig"].T * np.sqrt(2)
      out[scope + "/StyleMod/bias"] = f[p + f"adain{k}.style.linear.bias"] - np.r_[np.ones(c), np.zeros(c)]
      out[f"G_synthesis/noise{layer}"] = rng.normal(size=(1, 1, r, r)).astype(np.float32)
  for lod in range(step + 1):
    i = step - lod
    rgb = f[f"generator.to_rgb.{i}.conv.weight_orig"]
    out[f"G_synthesis/ToRGB_lod{lod}/weight"] = rgb.transpose(2, 3, 1, 0) * np.sqrt(2)
    out[f"G_synthesis/ToRGB_lod{lod}/bias"] = f[f"generator.to_rgb.{i}.conv.bias"]
  out["dlatent_avg"] = rng.normal(size=512).astype(np.float32)
  return {k: np.asarray(v, np.float32) for k, v in out.items()}


@pytest.fixture(scope="module")
def nvlabs64(state_dict):
  return _nvlabs_from_rosinality(state_dict, 4)


def test_nvlabs_npz_round_trip(tmp_path, nvlabs64, cases, render64):
  """Converted back, the NVlabs-layout weights render the fixture images once rosinality's numerics are selected."""
  path = tmp_path / "gs_vars.npz"
  np.savez(path, **nvlabs64)
  config, params = stylegan1.convert(path)
  assert config == convert_lib.nvlabs_config(64)
  assert (config.instance_norm_eps, config.bias_after_blur, config.noise_per_layer, config.truncation_cutoff) == (
    1e-8,
    True,
    True,
    8,
  )
  np.testing.assert_array_equal(params["w_avg"], nvlabs64["dlatent_avg"])
  np.testing.assert_array_equal(params["noise3"], nvlabs64["G_synthesis/noise3"][0, 0])
  rosinality = dataclasses.replace(config, instance_norm_eps=1e-5, bias_after_blur=False)
  params["w_avg"] = cases["mean_style"][0]
  g = stylegan1.from_params(rosinality, params)
  ws = stylegan1.mapping(g, jnp.asarray(cases["trunc_z"]), truncation_psi=0.7)  # official cutoff: layers 0-7 only
  np.testing.assert_allclose(np.asarray(ws[:, 7]), cases["trunc_w_truncated"], rtol=0, atol=W_ATOL)
  np.testing.assert_allclose(np.asarray(ws[:, 8]), cases["trunc_w"], rtol=0, atol=W_ATOL)
  per_layer = [n for n in _noise(cases) for _ in range(2)]
  img = render64(g, stylegan1.mapping(g, jnp.asarray(cases["plain_z"])), per_layer)
  np.testing.assert_allclose(_nchw(img), cases["plain_image"], rtol=0, atol=IMAGE_ATOL)


def test_nvlabs_fused_layers_round_trip(state_dict):
  """The fused Conv0_up weights (>= 128 px, no /4 upstream) convert to the rosinality parameters."""
  _, ref = convert_lib.from_rosinality(state_dict, 6, str(SD), FEW)
  _, params = convert_lib.from_nvlabs(_nvlabs_from_rosinality(state_dict, 6), "synthetic")
  for name in ("layer10", "layer12", "layer13", "to_rgb"):
    for k, v in ref[name].items():
      np.testing.assert_allclose(params[name][k], v, rtol=1e-6, atol=1e-6, err_msg=f"{name}/{k}")
  np.testing.assert_allclose(params["fc3"]["w"], ref["fc3"]["w"], rtol=1e-6)


def _official_reference(v, z, psi, cutoff, fused_res):
  """NVlabs' G_style (networks_stylegan.py) in float64 numpy, NCHW, written from the official definitions."""
  lrelu = lambda x: np.where(x >= 0, x, 0.2 * x)
  x = z / np.sqrt(np.mean(z * z, axis=1, keepdims=True) + 1e-8)
  for j in range(2):
    w = v[f"G_mapping/Dense{j}/weight"]
    x = lrelu(x @ (w * np.sqrt(2) / np.sqrt(w.shape[0]) * 0.01) + v[f"G_mapping/Dense{j}/bias"] * 0.01)
  n_layers = 6
  ws = np.repeat(x[:, None], n_layers, axis=1)
  avg = v["dlatent_avg"]
  ws = np.where((np.arange(n_layers) < cutoff)[None, :, None], avg + psi * (ws - avg), ws)

  def conv(x, w):  # SAME cross-correlation, w [kh, kw, in, out]
    k = w.shape[0]
    p = np.pad(x, ((0, 0), (0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    h, wd = x.shape[2:]
    return sum(np.einsum("bihw,io->bohw", p[:, :, a : a + h, c : c + wd], w[a, c]) for a in range(k) for c in range(k))

  def conv_transpose(x, k):  # stride 2, 'SAME' (padding 1) with a 4x4 kernel k [4, 4, in, out]: scatter-add
    b, _, h, wd = x.shape
    out = np.zeros((b, k.shape[3], 2 * h + 2, 2 * wd + 2))
    for a in range(4):
      for c in range(4):
        out[:, :, a : a + 2 * h : 2, c : c + 2 * wd : 2] += np.einsum("bihw,io->bohw", x, k[a, c])
    return out[:, :, 1:-1, 1:-1]

  def blur(x):
    f = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    c = x.shape[1]
    return conv(x, np.einsum("ac,io->acio", f, np.eye(c)))

  def epilogue(x, l, scope):
    x = x + v[f"G_synthesis/noise{l}"] * v[scope + "/Noise/weight"][None, :, None, None]
    x = lrelu(x + v[scope + "/bias"][None, :, None, None])
    x = x - x.mean(axis=(2, 3), keepdims=True)
    x = x / np.sqrt(np.mean(x * x, axis=(2, 3), keepdims=True) + 1e-8)
    style = ws[:, l] @ (v[scope + "/StyleMod/weight"] / np.sqrt(ws.shape[2])) + v[scope + "/StyleMod/bias"]
    c = x.shape[1]
    return x * (style[:, :c, None, None] + 1) + style[:, c:, None, None]

  he = lambda w: w * np.sqrt(2) / np.sqrt(np.prod(w.shape[:3]))
  x = epilogue(np.repeat(v["G_synthesis/4x4/Const/const"], len(z), axis=0), 0, "G_synthesis/4x4/Const")
  x = epilogue(conv(x, he(v["G_synthesis/4x4/Conv/weight"])), 1, "G_synthesis/4x4/Conv")
  for l in (2, 4):
    scope, res = convert_lib.nvlabs_scope(l), 4 * 2 ** (l // 2)
    w = he(v[scope + "/weight"])
    if res >= fused_res:
      w = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
      x = conv_transpose(x, w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1])
    else:
      x = conv(x.repeat(2, axis=2).repeat(2, axis=3), w)
    x = epilogue(blur(x), l, scope)
    scope = convert_lib.nvlabs_scope(l + 1)
    x = epilogue(conv(x, he(v[scope + "/weight"])), l + 1, scope)
  rgb = v["G_synthesis/ToRGB_lod0/weight"]
  return ws, conv(x, rgb / np.sqrt(rgb.shape[2])) + v["G_synthesis/ToRGB_lod0/bias"][None, :, None, None]


@pytest.mark.parametrize("fused_res", [128, 16])
def test_official_numerics_match_independent_reference(fused_res):
  """A tiny random NVlabs-layout generator (stored noise, eps 1e-8, bias after blur, StyleMod +1, cutoff) against
  a float64 re-implementation of the official code; fused_res=16 runs the 16 px layer as the fused transposed conv
  (official 'auto' fuses from 128 px, too large for a unit test)."""
  config = convert_lib.nvlabs_config(16, 8, 8, 2, channel_max=8)
  rng = np.random.default_rng(7)
  v = {k: rng.normal(size=s) for k, s in convert_lib.nvlabs_expected(config).items()}
  v["G_mapping/Dense0/weight"] /= 0.01  # stored at 1 / lr_mul scale, as official init
  v["G_mapping/Dense1/weight"] /= 0.01
  _, params = convert_lib.from_nvlabs(v, "synthetic")
  config = dataclasses.replace(config, fused_up_min_res=fused_res)
  if fused_res == 16:  # what from_nvlabs does for the layers it fuses
    params["layer4"]["conv_w"] = 4 * params["layer4"]["conv_w"]
  g = stylegan1.from_params(config, params)
  z = rng.normal(size=(2, 8))
  ws_ref, img_ref = _official_reference(v, z, 0.7, 3, fused_res)
  run = jax.jit(
    lambda g, z: (lambda ws: (ws, g.synthesis(ws, noise_mode="const")))(
      stylegan1.mapping(g, z, truncation_psi=0.7, truncation_cutoff=3)
    )
  )
  ws, img = run(g, jnp.asarray(z, jnp.float32))
  np.testing.assert_allclose(np.asarray(ws), ws_ref, rtol=0, atol=W_ATOL)
  np.testing.assert_allclose(_nchw(img), img_ref, rtol=0, atol=IMAGE_ATOL)


def _write_keras_h5(path, variables, synthesis_only=False):
  """`save_weights` of StyleGAN-Tensorflow2's StyleGAN_G: groups G_mapping and G_synthesis, Keras weight names."""

  def keras_name(name):
    if name == "dlatent_avg":
      return "Truncation/dlatent_avg:0"
    if name.startswith("G_synthesis/noise"):
      return name + "/noise:0"
    if name.endswith("/bias") and not name.split("/")[-2].startswith(("Dense", "StyleMod", "ToRGB")):
      return name + "/bias:0"
    if name.endswith("/weight") and not name.endswith(("Noise/weight", "Conv0_up/weight")):
      return name[: -len("weight")] + "kernel:0"
    return name + ":0"

  groups = {"G_mapping": [], "G_synthesis": []}
  for name, value in variables.items():
    if name in ("lod", "G_synthesis/lod") or "ToRGB_lod" in name and "lod0" not in name:
      continue
    group = "G_synthesis" if name.startswith("G_synthesis") else "G_mapping"
    if group == "G_mapping" and synthesis_only:
      continue
    groups[group].append((keras_name(name), value))
  with h5py.File(path, "w") as f:
    names = [g for g in groups if groups[g]]
    f.attrs["layer_names"] = [n.encode() for n in names]
    f.attrs["backend"] = b"tensorflow"
    for g in names:
      group = f.create_group(g)
      group.attrs["weight_names"] = [n.encode() for n, _ in groups[g]]
      for n, value in groups[g]:
        group.create_dataset(n, data=value)


def test_keras_h5_matches_nvlabs(tmp_path, nvlabs64):
  path = tmp_path / "stylegan.h5"
  _write_keras_h5(path, nvlabs64)
  config, params = stylegan1.convert(path)
  ref_config, ref = convert_lib.from_nvlabs(nvlabs64, "ref")
  assert config == ref_config
  jax.tree.map(np.testing.assert_array_equal, params, ref)
  synth = tmp_path / "stylegan_G_64x64_synthesis"
  _write_keras_h5(synth, nvlabs64, synthesis_only=True)
  config, params = stylegan1.convert(synth)
  assert config.resolution == 64
  jax.tree.map(np.testing.assert_array_equal, params["layer5"], ref["layer5"])


class _Network:
  """Pickled as `dnnlib.tflib.network.Network` with NVlabs' state layout (no upstream code involved)."""

  def __init__(self, name, variables, components=None):
    self.name, self.variables, self.components = name, variables, components or {}

  def __getstate__(self):
    return {
      "version": 3,
      "name": self.name,
      "static_kwargs": {"resolution": 64},
      "components": self.components,
      "build_module_src": "raise RuntimeError('never executed')",
      "build_func_name": "G_style",
      "variables": list(self.variables.items()),
    }


def test_nvlabs_pickle_matches_npz(tmp_path, nvlabs64):
  """The official `(G, D, Gs)` pickle layout: Gs's own variables plus those of its G_mapping / G_synthesis."""
  own = {k: v for k, v in nvlabs64.items() if "/" not in k}
  parts = {
    p: {k[len(p) + 1 :]: v for k, v in nvlabs64.items() if k.startswith(p + "/")} for p in ("G_mapping", "G_synthesis")
  }
  gs = _Network(
    "Gs",
    own,
    {"mapping": _Network("G_mapping", parts["G_mapping"]), "synthesis": _Network("G_synthesis", parts["G_synthesis"])},
  )
  d = _Network("D", {"4x4/Conv/weight": np.zeros((3, 3, 4, 4), np.float32)})
  path = tmp_path / "karras2019stylegan-ffhq-64x64.pkl"
  with torch_writer.fake_modules({"dnnlib": {}, "dnnlib.tflib": {}, "dnnlib.tflib.network": {"Network": _Network}}):
    path.write_bytes(pickle.dumps((gs, d, gs), protocol=3))
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps((gs, d, _Network("Gs", {"x": print})), protocol=3))
  config, params = stylegan1.convert(path)
  ref_config, ref = convert_lib.from_nvlabs(nvlabs64, "ref")
  assert config == ref_config
  jax.tree.map(np.testing.assert_array_equal, params, ref)
  with pytest.raises(torch_pickle.CheckpointFormatError, match="builtins.print"):
    stylegan1.convert(evil)


def test_corrupt_checkpoints_name_the_fault(tmp_path, state_dict, nvlabs64):
  sd = dict(state_dict)
  del sd["generator.progression.2.noise1.weight_orig"]
  sd["generator.progression.3.conv2.conv.bias"] = np.zeros(7, np.float16)
  sd["extra.key"] = np.zeros(1, np.float16)
  with pytest.raises(state_dict_lib.CheckpointMismatchError) as err:
    convert_lib.from_rosinality(sd, 4, "ckpt.pt", FEW)
  for text in ("generator.progression.2.noise1.weight_orig", "generator.progression.3.conv2.conv.bias", "extra.key"):
    assert text in str(err.value)
  bad = dict(nvlabs64)
  del bad["G_synthesis/16x16/Conv1/StyleMod/bias"]
  with pytest.raises(state_dict_lib.CheckpointMismatchError, match="16x16/Conv1/StyleMod/bias"):
    convert_lib.from_nvlabs(bad, "gs.npz")
  path = tmp_path / "other.pt"
  torch_writer.save({"model": {"w": np.zeros(2, np.float32)}}, str(path))
  with pytest.raises(ValueError, match="top-level keys: \\['model'\\]"):
    stylegan1.convert(path)
  truncated = tmp_path / "truncated.pt"
  truncated.write_bytes(path.read_bytes()[:200])
  with pytest.raises(torch_pickle.CheckpointFormatError):
    stylegan1.convert(truncated)


# ----------------------------------------------------------------------------------------------- API


def test_random_init_api_and_noise_modes():
  config = stylegan1.Config(**SMOKE)
  assert config.num_ws == 8 and stylegan1.Config.from_dict(config.to_dict()) == config
  with pytest.raises(ValueError, match=r"unknown .*stylegan1\.model\.Config fields"):
    stylegan1.Config.from_dict({**config.to_dict(), "bogus": 1})
  g = stylegan1.init(config, seed=0)
  z = jax.random.normal(jax.random.key(0), (3, 32))
  for l in range(config.num_layers):  # nonzero noise strengths so the noise modes differ
    layer = getattr(g, f"layer{l}")
    layer.noise_strength[...] = jnp.ones_like(layer.noise_strength[...])
  # bfloat16: by config (weights as stored) and per call with the state cast to bfloat16, as training does.
  bf16 = stylegan1.from_params(dataclasses.replace(config, compute_dtype="bfloat16"), nnx.to_pure_dict(nnx.state(g)))
  graphdef, state = nnx.split(g)
  cast = nnx.merge(graphdef, jax.tree.map(lambda a: a.astype(jnp.bfloat16), state))

  @jax.jit
  def render(g, bf16, cast, z):
    ws = g.mapping(z, truncation_psi=0.5)
    return (
      ws,
      g.synthesis(ws, noise_mode="const"),
      g.synthesis(ws, noise_mode="none"),
      g.synthesis(ws, noise_mode="random", rng=jax.random.key(1)),
      g.synthesis(ws, noise_mode="random", rng=jax.random.key(1)),
      g(z, truncation_psi=0.5),
      bf16.synthesis(ws),
      cast.synthesis(ws.astype(jnp.bfloat16), dtype="bfloat16"),
    )

  ws, const, none, r1, r1_again, full, by_config, by_call = render(g, bf16, cast, z)
  assert ws.shape == (3, 8, 32) and const.shape == (3, 32, 32, 3) and const.dtype == jnp.float32
  assert not np.allclose(const, none) and not np.allclose(r1, const)
  np.testing.assert_array_equal(r1, r1_again)
  np.testing.assert_array_equal(full, const)
  for img16 in (by_config, by_call):
    assert img16.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(img16 - const))) < 0.1 * float(jnp.max(jnp.abs(const)))
  with pytest.raises(ValueError, match="explicit rng"):
    g.synthesis(ws, noise_mode="random")
  with pytest.raises(ValueError, match="shape"):
    g.synthesis(ws[:, :3])


def test_smoke_config_builds_through_frozen_factory():
  cfg = smoke.get_config("generator=stylegan1")
  g = frozen.generator(cfg.generator, seed=0)
  assert g.config == stylegan1.Config(**SMOKE)
  ws = stylegan1.mapping(g, jnp.zeros((2, 32)) + 1.0, truncation_psi=0.7, truncation_cutoff=8)
  assert stylegan1.synthesis(g, ws, noise_mode=cfg.generator.noise_mode).shape == (2, 32, 32, 3)


def test_convert_to_and_load(tmp_path, nvlabs64):
  """The CLI's `convert_to` writes a directory that `load` (and `frozen.generator`) read back unchanged."""
  small = stylegan1.Config(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channel_max=16)
  variables = {
    k: np.random.default_rng(len(k)).normal(size=s).astype(np.float32)
    for k, s in convert_lib.nvlabs_expected(convert_lib.nvlabs_config(16, 16, 16, 2)).items()
  }
  src = tmp_path / "gs.npz"
  np.savez(src, **variables)
  dst = tmp_path / "converted"
  stylegan1.convert_to(src, dst)
  direct, loaded = stylegan1.load(src), stylegan1.load(dst)
  assert loaded.config == direct.config and loaded.config.resolution == small.resolution
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(loaded)), nnx.to_pure_dict(nnx.state(direct)))
  ws = stylegan1.mapping(loaded, jnp.ones((1, 16)), truncation_psi=0.7)
  assert stylegan1.synthesis(loaded, ws).shape == (1, 16, 16, 3)
  assert stylegan1.load(dst, compute_dtype="bfloat16").config.compute_dtype == "bfloat16"
  with pytest.raises(FileExistsError):
    stylegan1.convert_to(src, dst)
  shutil.rmtree(dst)
