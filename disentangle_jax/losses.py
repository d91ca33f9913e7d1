"""The method's losses: identity, landmarks, masked reconstruction (MS-SSIM + L1), adversarial on W, and R1.

Conventions follow the original TF2 implementation (YotamNitzan/ID-disentanglement, `trainer.py`):
- images enter in the project's [-1, 1] range and are moved to [0, 1] for the pixel losses, as the original compares
  `(G(w) + 1) / 2` with its [0, 1] inputs (so MS-SSIM uses `max_val = 1` and the L1 is in [0, 1] units);
- the identity loss is the mean absolute difference of the two L2-normalised embeddings;
- the landmark loss is the mean squared coordinate difference, with the jaw contour left out;
- the L1 term weights each pixel by an inverse-Gaussian mask that sums to one per image (sigma 80 at 256 px, scaled
  with the resolution), so the face centre counts less than the hair, the ears and the background that the
  identity loss does not see. The original reduces it with a *sum* over its batch of 6; here it is the batch mean,
  so the loss does not depend on the batch size or the number of devices (the original's L1 term is 6x ours);
- the adversarial losses are the non-saturating logistic ones (binary cross-entropy on logits), and R1 is
  `0.5 * gamma * E ||grad_w D(w_real)||^2`, computed by `jax.grad`.

MS-SSIM (Wang et al. 2003) is built on `dm_pix.ssim` with the five standard scales and weights and reproduces
`tf.image.ssim_multiscale` (including its ReLU on every per-scale term and its symmetric padding of odd sizes before
each 2x2 average pool). Like TensorFlow it needs the coarsest scale to be at least `filter_size` pixels, that is an
image of at least `16 * 11 = 176` px with the default 11-tap filter: below that TensorFlow fails. The reconstruction
loss therefore shrinks the filter to `min(11, size // 16)` taps for small images (32 px -> 2 taps, 64 px -> 4),
which keeps all five scales and their weights but makes the local statistics coarser; `ms_ssim` itself never
adapts silently and raises for an image too small for the filter it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ----------------------------------------------------------------------------------------------------------------
# MS-SSIM


def _gaussian_filter_fn(filter_size: int, filter_sigma: float) -> Callable[[jax.Array], jax.Array]:
  """A separable 'valid' Gaussian blur of NHWC images: the window `tf.image.ssim` and `dm_pix.ssim` both use.

  Each pass is a weighted sum of `filter_size` shifted slices (the same taps for every channel), which XLA fuses
  into elementwise loops, forward and backward. As depthwise convolutions the blurs made the reconstruction loss's
  gradient seven times slower on a CPU (58 ms against 8 for 16 images of 32 px) and the costliest part of the toy
  world's train step.
  """
  coords = np.arange(filter_size, dtype=np.float64) - (filter_size - 1) / 2.0
  taps = np.exp(-0.5 * (coords / filter_sigma) ** 2)
  taps = [float(t) for t in (taps / taps.sum()).astype(np.float32)]

  def blur_axis(z: jax.Array, axis: int) -> jax.Array:
    size = z.shape[axis] - filter_size + 1
    out = None
    for k, tap in enumerate(taps):
      term = jax.lax.slice_in_dim(z, k, k + size, axis=axis) * jnp.asarray(tap, z.dtype)
      out = term if out is None else out + term
    return out

  def blur(z: jax.Array) -> jax.Array:
    return blur_axis(blur_axis(z, 2), 1)  # along W, then H, as the two convolutions did

  return blur


def _ssim_and_cs(
  a: jax.Array, b: jax.Array, max_val: float, filter_size: int, filter_sigma: float, k1: float, k2: float
) -> tuple[jax.Array, jax.Array]:
  """Per-channel SSIM and contrast-structure term, each averaged over space: ([B, C], [B, C]).

  `dm_pix.ssim` returns the SSIM map (luminance x contrast-structure); dividing by the luminance term computed with
  the same window gives the contrast-structure map that every scale but the coarsest contributes.
  """
  blur = _gaussian_filter_fn(filter_size, filter_sigma)
  ssim_map = pix.ssim(
    a,
    b,
    max_val=max_val,
    filter_size=filter_size,
    filter_sigma=filter_sigma,
    k1=k1,
    k2=k2,
    return_map=True,
    filter_fn=blur,
  )
  mu_a, mu_b = blur(a), blur(b)
  c1 = (k1 * max_val) ** 2
  luminance = (2.0 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
  cs_map = ssim_map / luminance
  return jnp.mean(ssim_map, axis=(1, 2)), jnp.mean(cs_map, axis=(1, 2))


def _downsample(x: jax.Array) -> jax.Array:
  """2x2 average pool; an odd size first repeats its last row / column (TensorFlow's symmetric padding)."""
  pad_h, pad_w = x.shape[1] % 2, x.shape[2] % 2
  if pad_h or pad_w:
    x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def ms_ssim(
  a: jax.Array,
  b: jax.Array,
  *,
  max_val: float = 1.0,
  power_factors: Sequence[float] = MS_SSIM_WEIGHTS,
  filter_size: int = 11,
  filter_sigma: float = 1.5,
  k1: float = 0.01,
  k2: float = 0.03,
) -> jax.Array:
  """Multi-scale SSIM of NHWC image batches [B, H, W, C] -> [B], as `tf.image.ssim_multiscale` computes it.

  Raises ValueError when the coarsest scale (`size / 2**(scales - 1)`, rounded up) is smaller than `filter_size`.
  """
  if a.shape != b.shape or a.ndim != 4:
    raise ValueError(f"ms_ssim needs two NHWC batches of the same shape, got {a.shape} and {b.shape}")
  scales = len(power_factors)
  coarsest = min(a.shape[1:3])
  for _ in range(scales - 1):
    coarsest = (coarsest + 1) // 2
  if coarsest < filter_size:
    raise ValueError(
      f"ms_ssim: images of {a.shape[1]}x{a.shape[2]} px are {coarsest} px at the coarsest of {scales} scales, "
      f"smaller than filter_size={filter_size}; use filter_size <= {coarsest} (see `fit_filter_size`)"
    )
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  terms = []
  for scale in range(scales):
    if scale:
      a, b = _downsample(a), _downsample(b)
    ssim, cs = _ssim_and_cs(a, b, max_val, filter_size, filter_sigma, k1, k2)
    terms.append(jax.nn.relu(ssim if scale == scales - 1 else cs))
  stacked = jnp.stack(terms, axis=-1)  # [B, C, scales]
  per_channel = jnp.prod(stacked ** jnp.asarray(power_factors, jnp.float32), axis=-1)
  return jnp.mean(per_channel, axis=-1)


def fit_filter_size(size: int, filter_size: int = 11, scales: int = len(MS_SSIM_WEIGHTS)) -> int:
  """The largest filter (at most `filter_size`) that MS-SSIM with `scales` scales allows on `size`-px images."""
  coarsest = size
  for _ in range(scales - 1):
    coarsest = (coarsest + 1) // 2
  if coarsest < 1:
    raise ValueError(f"images of {size} px are too small for {scales}-scale MS-SSIM")
  return max(1, min(filter_size, coarsest))


# ----------------------------------------------------------------------------------------------------------------
# Losses of E_attr + M


def to_unit_range(images: jax.Array) -> jax.Array:
  """[-1, 1] -> [0, 1], the range the original's pixel losses work in."""
  return (images.astype(jnp.float32) + 1.0) * 0.5


def identity_loss(target_embedding: jax.Array, output_embedding: jax.Array) -> jax.Array:
  """Mean |E_id(I_id) - E_id(G(w))| over the batch and the embedding (both already L2-normalised)."""
  return jnp.mean(jnp.abs(jax.lax.stop_gradient(target_embedding) - output_embedding))


def landmark_loss(target: jax.Array, output: jax.Array, keep: Sequence[int] | None = None) -> jax.Array:
  """Mean squared coordinate difference [B, P, D] -> scalar, over the points in `keep` (the jaw left out)."""
  if keep is not None:
    idx = np.asarray(keep, dtype=np.int32)
    target, output = target[:, idx], output[:, idx]
  return jnp.mean(jnp.square(jax.lax.stop_gradient(target) - output))


def inverse_gaussian_mask(size: int, sigma_at_256: float = 80.0) -> np.ndarray:
  """[size, size] weights summing to 1: `max + min - gaussian`, so the border weighs more than the centre.

  The original builds a normalised Gaussian with `sigma = int(80 * size / 256)` centred at `(size - 1) / 2`,
  inverts it as `max(g) + min(g) - g` (keeping the centre above zero) and normalises the result to sum to one.
  """
  sigma = max(1, int(sigma_at_256 * size / 256))
  coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
  g1 = np.exp(-0.5 * (coords / sigma) ** 2)
  g = np.outer(g1, g1)
  g /= g.sum()
  inv = g.max() + g.min() - g
  return (inv / inv.sum()).astype(np.float32)


def masked_l1(target: jax.Array, output: jax.Array, mask: jax.Array) -> jax.Array:
  """Per-image L1 in [0, 1] units, mean over channels, weighted by `mask` [H, W] (summing to 1): [B]."""
  per_pixel = jnp.mean(jnp.abs(to_unit_range(target) - to_unit_range(output)), axis=-1)
  return jnp.sum(per_pixel * mask, axis=(1, 2))


def reconstruction_loss(
  target: jax.Array,
  output: jax.Array,
  mask: jax.Array,
  *,
  ms_ssim_weight: float = 0.84,
  l1_weight: float = 0.16,
  filter_size: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Per-image `ms_ssim_weight * (1 - MS-SSIM) + l1_weight * masked L1` and MS-SSIM itself, both [B].

  `filter_size` defaults to `fit_filter_size` of the image size (11 from 176 px up; see the module docstring).
  """
  if filter_size is None:
    filter_size = fit_filter_size(min(target.shape[1:3]))
  sim = ms_ssim(to_unit_range(target), to_unit_range(output), max_val=1.0, filter_size=filter_size)
  return ms_ssim_weight * (1.0 - sim) + l1_weight * masked_l1(target, output, mask), sim


# ----------------------------------------------------------------------------------------------------------------
# Adversarial losses on W


def generator_adversarial_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating: mean softplus(-D(w_fake)), i.e. cross-entropy with label 'real'."""
  return jnp.mean(jax.nn.softplus(-fake_logits))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Logistic: mean softplus(-D(w_real)) + mean softplus(D(w_fake)) (StyleGAN's D_logistic)."""
  return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def r1_penalty(discriminator: Callable[[jax.Array], jax.Array], real_w: jax.Array, gamma: float) -> jax.Array:
  """`0.5 * gamma * mean_i ||d D(w_i) / d w_i||^2` on real latents, by `jax.grad` of the summed logits."""
  grads = jax.grad(lambda w: jnp.sum(discriminator(w)))(real_w)
  return 0.5 * gamma * jnp.mean(jnp.sum(jnp.square(grads.reshape(grads.shape[0], -1)), axis=-1))
