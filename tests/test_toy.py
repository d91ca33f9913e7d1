"""The toy generator: the third_party contract, exact factor read-out, disentangled directions, gradients."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from disentangle_jax import errors
from disentangle_jax import frozen
from disentangle_jax import trees
from disentangle_jax.toy import generator as toy
from disentangle_jax.toy import render

CONFIG = toy.Config(resolution=32, z_dim=16, w_dim=24, mapping_layers=3)
SEED = 3


@pytest.fixture(scope="module")
def g():
  return toy.init(CONFIG, SEED)


@pytest.fixture(scope="module")
def w(g):
  z = jax.random.normal(jax.random.key(0), (8, CONFIG.z_dim))
  return toy.mapping(g, z)[:, 0]


def _unit_step(basis: np.ndarray, k: int) -> np.ndarray:
  """The w step that raises factor k's standardised projection by exactly 1 (and, by orthogonality, no other's)."""
  column = basis[:, k]
  return column / (column @ column)


def _bases(g) -> tuple[np.ndarray, np.ndarray]:
  return np.asarray(g.identity_basis[...]), np.asarray(g.attribute_basis[...])


def _ranges(spec) -> tuple[np.ndarray, np.ndarray]:
  return np.array([lo for _, lo, _ in spec]), np.array([hi for _, _, hi in spec])


def test_shapes_ranges_and_contract(g, w):
  assert toy.Module is toy.Generator and g.config == CONFIG
  assert (CONFIG.num_ws, CONFIG.w_dim, CONFIG.z_dim, CONFIG.resolution) == (1, 24, 16, 32)
  z = jax.random.normal(jax.random.key(1), (8, CONFIG.z_dim))
  ws = toy.mapping(g, z)
  assert ws.shape == (8, 1, 24) and ws.dtype == jnp.float32
  img = np.asarray(toy.synthesis(g, ws, noise_mode="const"))
  assert img.shape == (8, 32, 32, 3) and img.dtype == np.float32
  assert img.min() >= -1.0 and img.max() <= 1.0 and img.std() > 0.1
  f = toy.factors(g, w)
  assert f["identity"].shape == (8, len(toy.IDENTITY_NAMES)) and f["attribute"].shape == (8, len(toy.ATTRIBUTE_NAMES))
  for key, spec in (("identity", render.IDENTITY), ("attribute", render.ATTRIBUTE)):
    lo, hi = _ranges(spec)
    values = np.asarray(f[key])
    assert np.all(values >= lo) and np.all(values <= hi), key
  # ws and w give the same factors; the module method and the jitted function agree.
  np.testing.assert_array_equal(np.asarray(toy.factors(g, w[:, None])["identity"]), np.asarray(f["identity"]))
  np.testing.assert_allclose(np.asarray(g.factors(w)["attribute"]), np.asarray(f["attribute"]), atol=1e-6)
  assert set(toy.IDENTITY_NAMES) >= {"face_width", "face_height", "skin_tone", "hair_colour", "eye_colour"}
  assert set(toy.ATTRIBUTE_NAMES) >= {"yaw", "pitch", "mouth_open", "brow_raise", "light_azimuth"}


def test_factors_spread_over_the_generators_samples(g):
  """Each standardised projection has unit spread, so every factor covers much of its range over samples of z."""
  z = jax.random.normal(jax.random.key(2), (2048, CONFIG.z_dim))
  f = toy.factors(g, toy.mapping(g, z))
  for key, spec in (("identity", render.IDENTITY), ("attribute", render.ATTRIBUTE)):
    lo, hi = _ranges(spec)
    unit = (np.asarray(f[key]) - lo) / (hi - lo)
    assert np.all(np.percentile(unit, 90, axis=0) - np.percentile(unit, 10, axis=0) > 0.4), key


def test_w_is_not_gaussian(g):
  """The fixed nonlinear mapping skews w: a latent discriminator has a non-trivial distribution to learn."""
  z = jax.random.normal(jax.random.key(3), (8192, CONFIG.z_dim))
  w = np.asarray(toy.mapping(g, z)[:, 0], np.float64)
  centred = (w - w.mean(0)) / w.std(0)
  skew, excess_kurtosis = (centred**3).mean(0), (centred**4).mean(0) - 3.0
  assert np.max(np.abs(skew)) > 0.2 or np.max(np.abs(excess_kurtosis)) > 0.5


def test_truncation(g):
  z = jax.random.normal(jax.random.key(4), (3, CONFIG.z_dim))
  w_avg = np.asarray(g.w_avg[...])
  np.testing.assert_allclose(np.asarray(toy.mapping(g, z, truncation_psi=0.0))[:, 0], np.tile(w_avg, (3, 1)), atol=1e-6)
  full = np.asarray(toy.mapping(g, z))
  half = np.asarray(toy.mapping(g, z, truncation_psi=0.5))
  np.testing.assert_allclose(half, w_avg + 0.5 * (full - w_avg), atol=1e-5)
  np.testing.assert_array_equal(np.asarray(toy.mapping(g, z, truncation_psi=0.5, truncation_cutoff=0)), full)


def test_determinism_from_the_seed(g):
  same = trees.flatten(trees.params_of(toy.init(CONFIG, SEED)))
  mine = trees.flatten(trees.params_of(g))
  assert same.keys() == mine.keys()
  for key, value in mine.items():
    np.testing.assert_array_equal(same[key], value, err_msg=str(key))
  other = trees.flatten(trees.params_of(toy.init(CONFIG, SEED + 1)))
  assert not np.array_equal(other[("identity_basis",)], mine[("identity_basis",)])


def test_identity_and_attribute_directions_are_exactly_separate(g, w):
  """A step in the identity subspace leaves every attribute factor unchanged, and vice versa; the rest is null."""
  id_basis, attr_basis = _bases(g)
  np.testing.assert_allclose(id_basis.T @ attr_basis, 0.0, atol=1e-5)
  rng = np.random.default_rng(0)
  base = toy.factors(g, w)
  for moved, kept, basis in (("identity", "attribute", id_basis), ("attribute", "identity", attr_basis)):
    step = jnp.asarray(basis @ rng.standard_normal((basis.shape[1], w.shape[0])), jnp.float32).T  # [B, w_dim]
    f = toy.factors(g, w + step)
    np.testing.assert_allclose(np.asarray(f[kept]), np.asarray(base[kept]), atol=1e-5, err_msg=moved)
    assert np.min(np.abs(np.asarray(f[moved]) - np.asarray(base[moved])).max(axis=1)) > 1e-2, moved
  # A direction orthogonal to every factor direction changes neither the factors nor a single pixel.
  q, _ = np.linalg.qr(np.concatenate([id_basis, attr_basis], axis=1), mode="complete")
  null = jnp.asarray(q[:, -1] * 3.0, jnp.float32)
  np.testing.assert_allclose(
    np.asarray(toy.synthesis(g, (w + null)[:, None])), np.asarray(toy.synthesis(g, w[:, None])), atol=1e-4
  )  # float32 rounding of the projections moves a pixel by ~1e-5, far less than any factor step above does


def test_every_factor_changes_the_image_and_only_its_own_value(g, w):
  """No dead factor: a step along each factor's direction moves that factor alone, and visibly moves pixels."""
  id_basis, attr_basis = _bases(g)
  basis = np.concatenate([id_basis, attr_basis], axis=1)
  names = toy.IDENTITY_NAMES + toy.ATTRIBUTE_NAMES
  # Two standard deviations from w[0] towards and past the middle of each range, where the squash is steepest.
  toward = -np.sign(np.asarray(w[0] - g.w_avg[...]) @ basis)
  moved = np.stack([np.asarray(w[0]) + 2.0 * toward[k] * _unit_step(basis, k) for k in range(len(names))])
  batch = jnp.asarray(np.concatenate([np.asarray(w[:1]), moved, np.asarray(w[:1])]), jnp.float32)  # 16 rows
  f = toy.factors(g, batch)
  values = np.concatenate([np.asarray(f["identity"]), np.asarray(f["attribute"])], axis=1)
  images = np.concatenate([np.asarray(toy.synthesis(g, batch[i : i + 8, None])) for i in (0, 8)])
  for k, name in enumerate(names):
    changed = np.abs(values[1 + k] - values[0])
    assert changed[k] > 1e-2 and np.delete(changed, k).max() < 1e-5, (name, changed)
    diff = np.abs(images[1 + k] - images[0]).max(axis=-1)
    assert np.sum(diff > 0.1) >= 4, f"{name} changes fewer than 4 pixels visibly"


def test_gradients_from_pixels_to_w(g, w):
  weights = jax.random.normal(jax.random.key(5), (w.shape[0], 32, 32, 3))

  def loss(w_):
    return jnp.sum(g.synthesis(w_[:, None]) * weights[: w_.shape[0]])

  grad = np.asarray(jax.jit(jax.grad(loss))(w))
  assert np.all(np.isfinite(grad)) and np.all(np.abs(grad).max(axis=1) > 0)
  # Every factor direction receives gradient (the null space, by construction, none).
  id_basis, attr_basis = _bases(g)
  along = grad @ np.concatenate([id_basis, attr_basis], axis=1)
  assert np.all(np.abs(along).max(axis=0) > 1e-3)

  # Finite differences of the loss against the gradient, along two coordinates of w and two factor directions;
  # the eight evaluations w[0] +- eps d form one batch of the shape the other tests compiled already.
  directions = np.stack(
    [np.eye(CONFIG.w_dim)[0], np.eye(CONFIG.w_dim)[19], _unit_step(attr_basis, 0), _unit_step(id_basis, 2)]
  )
  eps = 2e-3 / np.linalg.norm(directions, axis=1, keepdims=True)
  steps = np.concatenate([eps * directions, -eps * directions])
  images = np.asarray(toy.synthesis(g, (w[:1] + jnp.asarray(steps, jnp.float32))[:, None]), np.float64)
  losses = np.sum(images * np.asarray(weights[:1], np.float64), axis=(1, 2, 3))
  numeric = (losses[:4] - losses[4:]) / (2 * eps[:, 0])
  analytic = directions @ grad[0]
  np.testing.assert_allclose(numeric, analytic, rtol=2e-2, atol=2e-2)


def test_frozen_builds_and_validates_the_toy_kind():
  from disentangle_jax import config_check  # pylint: disable=import-outside-toplevel

  section = ml_collections.ConfigDict(dict(kind="toy", weights="", arch=dict(CONFIG.to_dict())))
  built = frozen.generator(section, SEED)
  assert isinstance(built, toy.Generator) and built.config == CONFIG
  np.testing.assert_array_equal(
    np.asarray(built.attribute_basis[...]), np.asarray(toy.init(CONFIG, SEED).attribute_basis[...])
  )
  config_check.validate(ml_collections.ConfigDict({"generator": {"kind": "toy"}}))


def test_save_load_round_trip(g, w, tmp_path):
  toy.save(g, tmp_path / "toy")
  loaded = toy.load(tmp_path / "toy")
  assert loaded.config == CONFIG
  np.testing.assert_array_equal(np.asarray(toy.synthesis(loaded, w[:, None])), np.asarray(toy.synthesis(g, w[:, None])))
  section = ml_collections.ConfigDict(dict(kind="toy", weights=str(tmp_path / "toy"), arch={}))
  via_frozen = frozen.generator(section, seed=99)  # weights given: the seed is not used
  np.testing.assert_array_equal(np.asarray(via_frozen.w_avg[...]), np.asarray(g.w_avg[...]))
  assert toy.convert_to(tmp_path / "toy", tmp_path / "copy") == CONFIG
  assert toy.load(tmp_path / "copy", resolution=48).config.resolution == 48
  with pytest.raises(errors.UserError, match="no upstream checkpoints"):
    toy.load(tmp_path / "missing")
  with pytest.raises(FileExistsError):
    toy.save(g, tmp_path / "toy")


def test_bad_configs_and_inputs_are_named(g):
  with pytest.raises(ValueError, match="w_dim"):
    toy.Config(w_dim=8)
  with pytest.raises(ValueError, match=r"unknown .*toy\.generator\.Config fields"):
    toy.Config.from_dict({"resolution": 32, "channel_base": 4})
  with pytest.raises(ValueError, match="ws of shape"):
    g.synthesis(jnp.zeros((2, CONFIG.w_dim)))
  with pytest.raises(ValueError, match="z of shape"):
    g.mapping(jnp.zeros((2, CONFIG.z_dim + 1)))
  with pytest.raises(ValueError, match="noise_mode"):
    g.synthesis(jnp.zeros((1, 1, CONFIG.w_dim)), noise_mode="loud")
  module = toy.Module(CONFIG, rngs=nnx.Rngs(0))  # the contract's constructor (weights only sized; `init` fills them)
  assert isinstance(module, toy.Generator) and module.config == CONFIG
