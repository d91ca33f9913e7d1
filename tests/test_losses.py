"""Losses: MS-SSIM against TensorFlow, R1 against finite differences, and the other terms against their formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from flax import nnx

from disentangle_jax import losses
from disentangle_jax.nets import discriminator as discriminator_lib


def _pair(rng, size, mode):
  a = rng.rand(2, size, size, 3).astype(np.float32)
  if mode == "noisy":
    b = np.clip(a + 0.2 * rng.randn(*a.shape), 0, 1)
  elif mode == "anti":  # anti-correlated: negative contrast-structure terms, clipped by the ReLU as in TF
    b = 1.0 - a + 0.05 * rng.randn(*a.shape)
  else:
    b = rng.rand(*a.shape)
  return a, b.astype(np.float32)


@pytest.mark.parametrize(
  "size,filter_size,mode",
  [(256, 11, "noisy"), (181, 11, "noisy"), (64, 4, "noisy"), (48, 3, "anti"), (35, 2, "random"), (32, 2, "noisy")],
)
def test_ms_ssim_matches_tensorflow(size, filter_size, mode):
  a, b = _pair(np.random.RandomState(size), size, mode)
  expected = tf.image.ssim_multiscale(a, b, 1.0, filter_size=filter_size).numpy()
  got = np.asarray(jax.jit(lambda x, y: losses.ms_ssim(x, y, filter_size=filter_size))(a, b))
  np.testing.assert_allclose(got, expected, atol=1e-5)


def test_ms_ssim_identical_images_is_one_and_differentiable():
  a = np.random.RandomState(0).rand(1, 64, 64, 3).astype(np.float32)
  np.testing.assert_allclose(losses.ms_ssim(a, a, filter_size=4), [1.0], atol=1e-5)
  g = jax.grad(lambda x: jnp.sum(losses.ms_ssim(x, a * 0.5 + 0.2, filter_size=4)))(jnp.asarray(a))
  assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_ms_ssim_refuses_images_too_small_for_the_filter():
  a = np.zeros((1, 64, 64, 3), np.float32)
  with pytest.raises(ValueError, match=r"64x64 px are 4 px at the coarsest.*filter_size <= 4"):
    losses.ms_ssim(a, a, filter_size=11)


@pytest.mark.parametrize("size,expected", [(256, 11), (176, 11), (175, 11), (160, 10), (64, 4), (32, 2), (16, 1)])
def test_fit_filter_size(size, expected):
  assert losses.fit_filter_size(size) == expected


def test_inverse_gaussian_mask_matches_the_original_recipe():
  size, sigma = 64, int(80 * 64 / 256)
  coords = np.arange(size) - (size - 1) / 2
  g = np.exp(-((coords[None] ** 2 + coords[:, None] ** 2) / (2 * sigma**2))) / (2 * np.pi * sigma**2)
  g /= g.sum()
  inv = g.max() + g.min() - g
  np.testing.assert_allclose(losses.inverse_gaussian_mask(size), inv / inv.sum(), rtol=1e-5)
  mask = losses.inverse_gaussian_mask(256)
  assert abs(mask.sum() - 1) < 1e-5 and mask[0, 0] == mask.max() and mask[127, 127] < mask[0, 0] / 3


def test_masked_l1_uses_unit_range_and_mask():
  target = -np.ones((2, 8, 8, 3), np.float32)
  output = np.ones((2, 8, 8, 3), np.float32)
  output[1, :4] = -1.0  # top half correct
  mask = np.zeros((8, 8), np.float32)
  mask[:4] = 1.0 / 32
  np.testing.assert_allclose(losses.masked_l1(target, output, mask), [1.0, 0.0], atol=1e-6)


def test_reconstruction_loss_combines_ms_ssim_and_l1():
  rng = np.random.RandomState(1)
  t = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  o = np.clip(t + 0.3 * rng.randn(*t.shape), -1, 1).astype(np.float32)
  mask = losses.inverse_gaussian_mask(32)
  loss, sim = losses.reconstruction_loss(t, o, mask)
  expected_sim = tf.image.ssim_multiscale((t + 1) / 2, (o + 1) / 2, 1.0, filter_size=2).numpy()
  l1 = np.sum(np.mean(np.abs((t - o) / 2), -1) * mask, axis=(1, 2))
  np.testing.assert_allclose(sim, expected_sim, atol=1e-5)
  np.testing.assert_allclose(loss, 0.84 * (1 - expected_sim) + 0.16 * l1, atol=1e-5)


def test_identity_and_landmark_losses():
  a = np.array([[0.6, 0.8], [1.0, 0.0]], np.float32)
  b = np.array([[0.8, 0.6], [0.0, 1.0]], np.float32)
  np.testing.assert_allclose(losses.identity_loss(a, b), np.mean(np.abs(a - b)), rtol=1e-6)
  t = np.zeros((1, 4, 2), np.float32)
  o = np.array([[[100, 100], [1, 0], [0, 2], [3, 0]]], np.float32)  # point 0 plays the jaw
  np.testing.assert_allclose(losses.landmark_loss(t, o, keep=(1, 2, 3)), (1 + 4 + 9) / 6, rtol=1e-6)
  # No gradient flows into the target.
  g = jax.grad(lambda x: losses.landmark_loss(x, o, keep=(1, 2, 3)))(t)
  assert not np.any(g)


def test_adversarial_losses_are_binary_cross_entropy_on_logits():
  real = np.array([1.5, -0.3, 0.2], np.float32)
  fake = np.array([-2.0, 0.7, 0.1], np.float32)
  bce = tf.keras.losses.BinaryCrossentropy(from_logits=True)
  np.testing.assert_allclose(losses.generator_adversarial_loss(fake), bce(np.ones(3), fake).numpy(), rtol=1e-5)
  expected = bce(np.ones(3), real).numpy() + bce(np.zeros(3), fake).numpy()
  np.testing.assert_allclose(losses.discriminator_loss(real, fake), expected, rtol=1e-5)


def test_r1_matches_finite_differences():
  """R1's value and its gradient with respect to D's parameters (the double backward) against float64 differences."""
  with jax.enable_x64(True):
    d = discriminator_lib.LatentDiscriminator(5, (6, 4), rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(d)
    params = jax.tree.map(lambda x: x.astype(jnp.float64), params)
    w = jnp.asarray(np.random.RandomState(0).randn(3, 5))
    gamma, eps = 10.0, 1e-6

    def d_of(p, x):
      return nnx.merge(graphdef, p)(x)

    # Value: the gradient of D with respect to each w by central differences.
    grads = np.zeros((3, 5))
    for i in range(5):
      e = np.zeros(5)
      e[i] = eps
      grads[:, i] = (np.asarray(d_of(params, w + e)) - np.asarray(d_of(params, w - e))) / (2 * eps)
    expected = 0.5 * gamma * np.mean(np.sum(grads**2, axis=1))
    r1 = lambda p: losses.r1_penalty(lambda x: d_of(p, x), w, gamma)
    np.testing.assert_allclose(r1(params), expected, rtol=1e-7)

    # Gradient with respect to D's parameters, along a random direction.
    analytic = jax.grad(r1)(params)
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.RandomState(1)
    direction = jax.tree.unflatten(tree, [jnp.asarray(rng.randn(*np.shape(x))) for x in leaves])
    shift = lambda s: jax.tree.map(lambda p, v: p + s * v, params, direction)
    numeric = (r1(shift(eps)) - r1(shift(-eps))) / (2 * eps)
    projected = sum(jnp.sum(a * v) for a, v in zip(jax.tree.leaves(analytic), jax.tree.leaves(direction)))
    np.testing.assert_allclose(projected, numeric, rtol=1e-6)
