"""StyleGAN2 generator: parity with upstream golden outputs (sets A and B), layouts at full size (set F), gradients."""

import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from disentangle_jax.third_party import stylegan2
from disentangle_jax.third_party.common import keymap
from disentangle_jax.third_party.common import state_dict as state_dict_lib
from tests import recipe
from tests import torch_writer

convert_lib = importlib.import_module("disentangle_jax.third_party.stylegan2.convert")
SMOKE = stylegan2.Config(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32)
A_WEIGHTS = recipe.TESTDATA / "sg2ada_r32_weights"
A_CLAMP = 2.0  # set A was built with conv_clamp=2, which a state_dict does not record


def _nchw(img) -> np.ndarray:
  return np.asarray(img).transpose(0, 3, 1, 2)


def _close(got, want, atol):
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=atol)


@pytest.fixture(scope="module")
def io_a():
  return recipe.io("sg2ada_r32")


@pytest.fixture(scope="module")
def g_a():
  return stylegan2.load(f"{A_WEIGHTS}.npz", conv_clamp=A_CLAMP)


@pytest.fixture(scope="module")
def io_b():
  return recipe.io("rosinality_s64_cm1")


@pytest.fixture(scope="module")
def rosinality_pt(tmp_path_factory, io_b):
  """Set B in the layout upstream convert_weight.py writes: {"g_ema": state_dict, "latent_avg": [w_dim]}."""
  path = tmp_path_factory.mktemp("rosinality") / "ckpt.pt"
  torch_writer.save({"g_ema": recipe.state_dict("rosinality_s64_cm1"), "latent_avg": io_b["latent_avg"]}, str(path))
  return path


@pytest.fixture(scope="module")
def g_b(rosinality_pt):
  return stylegan2.load(rosinality_pt)


# ----------------------------------------------------------------------------------------------- set A (ada)


def test_a_config_inferred(g_a):
  assert g_a.config == dataclasses.replace(
    stylegan2.Config(), resolution=32, z_dim=64, w_dim=64, channel_base=1024, channel_max=128, conv_clamp=A_CLAMP
  )
  assert g_a.config.num_ws == 8


@pytest.mark.parametrize("psi", [1.0, 0.7])
def test_a_mapping_and_synthesis(g_a, io_a, psi):
  tag = f"psi{round(psi * 100):03d}"
  _close(stylegan2.mapping(g_a, io_a["z"], truncation_psi=psi), io_a[f"ws_{tag}"], 1e-5)
  for mode in ("const", "none"):
    _close(_nchw(stylegan2.synthesis(g_a, io_a[f"ws_{tag}"], noise_mode=mode)), io_a[f"img_{tag}_{mode}"], 5e-5)


def test_a_full_generation(g_a, io_a):
  img = jax.jit(lambda m, z: m(z, truncation_psi=0.7))(g_a, io_a["z"])
  _close(_nchw(img), io_a["img_full_psi070_const"], 5e-5)


def test_a_explicit_ws_and_recorded_noise(g_a, io_a):
  _close(_nchw(stylegan2.synthesis(g_a, io_a["ws_explicit"])), io_a["img_ws_explicit_const"], 5e-5)
  names = [str(n).removeprefix("synthesis.") for n in io_a["noise_random_layers"]]
  assert names == [n for n, _ in g_a.config.noise_layers]
  noise = [io_a[f"noise_random.synthesis.{n}"].transpose(0, 2, 3, 1) for n in names]  # [B, 1, r, r] -> NHWC
  _close(_nchw(stylegan2.synthesis(g_a, io_a["ws_psi100"], noise=noise)), io_a["img_psi100_random"], 5e-5)


def test_a_fused_modconv_matches(io_a):
  g = stylegan2.load(f"{A_WEIGHTS}.npz", conv_clamp=A_CLAMP, fused_modconv=True)
  _close(_nchw(stylegan2.synthesis(g, io_a["ws_explicit"])), io_a["img_ws_explicit_const"], 5e-5)


def test_a_torch_file_equals_npz(g_a):
  """The real torch.save file of set A converts to exactly the parameters of the .npz."""
  config, params = stylegan2.convert(f"{A_WEIGHTS}.pt", conv_clamp=A_CLAMP)
  assert config == g_a.config
  jax.tree.map(np.testing.assert_array_equal, params, nnx.to_pure_dict(nnx.state(g_a)))


def test_truncation_cutoff(g_a, io_a):
  full = np.asarray(stylegan2.mapping(g_a, io_a["z"]))
  cut = np.asarray(stylegan2.mapping(g_a, io_a["z"], truncation_psi=0.7, truncation_cutoff=3))
  _close(cut[:, :3], io_a["ws_psi070"][:, :3], 1e-5)
  _close(cut[:, 3:], full[:, 3:], 1e-6)


# ----------------------------------------------------------------------------------------------- set B (rosinality)


def test_b_config_inferred(g_b):
  assert g_b.config == stylegan2.Config(
    resolution=64, z_dim=64, w_dim=64, mapping_layers=8, channel_base=16384, channel_max=512, conv_clamp=None
  )
  assert [g_b.config.channels(r) for r in g_b.config.block_resolutions] == [512, 512, 512, 512, 256]


def test_b_mapping(g_b, io_b):
  ws = stylegan2.mapping(g_b, io_b["z"])
  _close(ws[:, 0], io_b["w"], 5e-5)
  _close(ws, io_b["latent_z_psi100"], 5e-5)
  _close(stylegan2.mapping(g_b, io_b["z"], truncation_psi=0.7), io_b["latent_z_psi070"], 2e-5)


def test_b_generation(g_b, io_b):
  _close(_nchw(stylegan2.synthesis(g_b, io_b["latent_z_psi100"])), io_b["img_z_psi100"], 5e-4)
  ws = stylegan2.mapping(g_b, io_b["z"], truncation_psi=0.7)
  _close(_nchw(stylegan2.synthesis(g_b, ws)), io_b["img_z_psi070"], 5e-4)
  _close(_nchw(stylegan2.synthesis(g_b, io_b["latent_z_psi070"])), io_b["img_w_latent_psi070"], 5e-4)
  _close(_nchw(stylegan2.synthesis(g_b, io_b["wplus_explicit"])), io_b["img_wplus_explicit"], 2e-4)


def test_b_explicit_noise(g_b, io_b):
  noise = [io_b[f"noise_explicit_{i}"][:, 0] for i in range(len(g_b.config.noise_layers))]  # [B, r, r]
  _close(_nchw(stylegan2.synthesis(g_b, io_b["latent_z_psi100"], noise=noise)), io_b["img_z_noise_explicit"], 2e-4)


def test_b_style_mixing(g_b, io_b):
  k = recipe.meta("rosinality_s64_cm1")["inject_index"]
  ws = np.concatenate(
    [np.asarray(stylegan2.mapping(g_b, io_b[z]))[:, sl] for z, sl in (("z", slice(None, k)), ("z2", slice(k, None)))], 1
  )
  _close(ws, io_b["latent_mix"], 5e-5)
  _close(_nchw(stylegan2.synthesis(g_b, ws)), io_b["img_mix"], 2e-4)


def test_b_train_checkpoint_without_latent_avg(tmp_path, io_b):
  """A train.py checkpoint has no latent_avg: w_avg is the mean w of LATENT_AVG_SAMPLES z from an explicit seed."""
  path = tmp_path / "train.pt"
  torch_writer.save({"g_ema": recipe.state_dict("rosinality_s64_cm1"), "args": {"size": np.array(64)}}, str(path))
  _, params = stylegan2.convert(path, latent_avg_seed=3)
  w_avg = params["mapping_net"]["w_avg"]
  _, again = stylegan2.convert(path, latent_avg_seed=3)
  np.testing.assert_array_equal(w_avg, again["mapping_net"]["w_avg"])
  # Both are means of 4096 samples of the same distribution (upstream used other draws).
  np.testing.assert_allclose(w_avg, io_b["latent_avg"], atol=0.1)


# ----------------------------------------------------------------------------------------------- set F (layouts)


def _abstract_params(config):
  module = nnx.eval_shape(lambda: stylegan2.Generator(config, rngs=nnx.Rngs(0)))
  flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(module)))[0]
  return {"/".join(k.key for k in path): tuple(v.shape) for path, v in flat}


@pytest.mark.parametrize(
  "entry,config,rules",
  [
    ("stylegan2_ada_paper256_G", stylegan2.PAPER256, convert_lib.ada_rules),
    ("rosinality_ffhq256_g_ema", stylegan2.ROSINALITY256, convert_lib.rosinality_rules),
  ],
)
def test_full_size_layouts_map_one_to_one(entry, config, rules):
  manifest = recipe.manifest(entry)
  table = rules(config)
  # Exactly the manifest's keys and shapes (the error would list missing / unexpected / mis-shaped keys).
  state_dict_lib.check(
    {k: np.broadcast_to(np.float32(0), s) for k, s in manifest.items()}, keymap.expected(table), entry
  )
  converted = {}
  for r in table:
    if r.path is not None:
      out = jax.eval_shape(r.fn, jax.ShapeDtypeStruct(manifest[r.key], jnp.float32))
      converted["/".join(r.path)] = tuple(out.shape)
  if entry.startswith("rosinality"):
    converted["mapping_net/w_avg"] = (config.w_dim,)  # from the checkpoint's latent_avg
  assert len(converted) == len([r for r in table if r.path is not None]) + entry.startswith("rosinality")
  assert converted == _abstract_params(config)


def test_full_size_config_inference():
  for entry, config, infer in [
    ("stylegan2_ada_paper256_G", stylegan2.PAPER256, convert_lib.infer_ada_config),
    ("rosinality_ffhq256_g_ema", stylegan2.ROSINALITY256, convert_lib.infer_rosinality_config),
  ]:
    fake = {k: np.broadcast_to(np.float32(0), s) for k, s in recipe.manifest(entry).items()}
    assert infer(fake, entry) == config
  assert stylegan2.PAPER256.num_ws == 14 and stylegan2.FFHQ256 is stylegan2.PAPER256


# ----------------------------------------------------------------------------------------------- behaviour


@pytest.fixture(scope="module")
def g_smoke():
  g = stylegan2.init(SMOKE, seed=3)
  for name, _ in SMOKE.noise_layers:  # upstream initialises noise strengths to 0; make noise visible
    block, conv = name.split(".")
    getattr(getattr(g, block), conv).noise_strength[...] = 0.5
  return g


def test_smoke_config_init_is_seeded():
  a, b, c = (stylegan2.init(SMOKE, seed=s) for s in (3, 3, 4))
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(a)), nnx.to_pure_dict(nnx.state(b)))
  assert not np.allclose(a.b4.const[...], c.b4.const[...])
  assert SMOKE.num_ws == 8 and stylegan2.Config.from_dict(SMOKE.to_dict()) == SMOKE
  # w_avg is the mean w of many z: truncation towards it is what psi < 1 means.
  z = np.random.default_rng(0).standard_normal((2048, SMOKE.z_dim)).astype(np.float32)
  np.testing.assert_allclose(stylegan2.mapping(a, z)[:, 0].mean(0), a.mapping_net.w_avg[...], atol=0.1)


def test_noise_modes(g_smoke):
  g = g_smoke
  ws = stylegan2.mapping(g, jax.random.normal(jax.random.key(0), (2, SMOKE.z_dim)), truncation_psi=0.7)
  img = stylegan2.synthesis(g, ws)
  assert img.shape == (2, 32, 32, 3) and img.dtype == jnp.float32
  with pytest.raises(ValueError, match="rng"):
    g.synthesis(ws, noise_mode="random")
  a = stylegan2.synthesis(g, ws, noise_mode="random", rng=jax.random.key(1))
  np.testing.assert_array_equal(a, stylegan2.synthesis(g, ws, noise_mode="random", rng=jax.random.key(1)))
  assert not np.allclose(a, stylegan2.synthesis(g, ws, noise_mode="random", rng=jax.random.key(2)))
  assert not np.allclose(img, stylegan2.synthesis(g, ws, noise_mode="none"))
  with pytest.raises(ValueError, match="noise_mode"):
    g.synthesis(ws, noise_mode="fresh")
  with pytest.raises(ValueError, match="b8.conv0"):
    g.synthesis(ws, noise=[jnp.zeros((4, 4))] * len(SMOKE.noise_layers))


def test_bfloat16_compute_is_close_to_float32(g_smoke):
  ws = stylegan2.mapping(g_smoke, jax.random.normal(jax.random.key(0), (2, SMOKE.z_dim)))
  ref = stylegan2.synthesis(g_smoke, ws)
  low = stylegan2.synthesis(g_smoke, ws, dtype="bfloat16")
  assert low.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(low - ref))) < 0.05 * float(jnp.max(jnp.abs(ref)))


def test_gradient_wrt_ws_matches_finite_differences(g_smoke):
  ws = stylegan2.mapping(g_smoke, jax.random.normal(jax.random.key(0), (1, SMOKE.z_dim)))
  probe = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))
  f = jax.jit(lambda ws: jnp.sum(g_smoke.synthesis(ws) * probe))
  grad = jax.jit(jax.grad(lambda ws: jnp.sum(g_smoke.synthesis(ws) * probe)))(ws)
  assert float(jnp.min(jnp.linalg.norm(grad[0], axis=-1))) > 0  # every w (the last toRGB's too) reaches the image
  # Along the gradient (a well-conditioned direction) and along the largest single coordinate.
  eps = 3e-3
  largest = np.unravel_index(np.argmax(np.abs(np.asarray(grad))), grad.shape)
  for direction in (grad / jnp.linalg.norm(grad), jnp.zeros_like(ws).at[largest].set(1.0)):
    fd = (f(ws + eps * direction) - f(ws - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.vdot(grad, direction)), float(fd), rtol=5e-3)


def test_bad_shapes_are_clear_errors(g_smoke):
  with pytest.raises(ValueError, match=r"\[B, 32\]"):
    g_smoke.mapping(jnp.zeros((2, 31)))
  with pytest.raises(ValueError, match=r"\[B, 8, 32\]"):
    g_smoke.synthesis(jnp.zeros((2, 7, 32)))
  with pytest.raises(ValueError, match="power of two"):
    stylegan2.Config(resolution=48)
