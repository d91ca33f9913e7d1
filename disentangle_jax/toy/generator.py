"""The toy generator: a frozen G whose every output is explained by known factors, for exact disentanglement checks.

    from disentangle_jax.toy import generator as toy
    g = toy.init(toy.Config(resolution=64), seed=0)
    ws = toy.mapping(g, z)                       # z [B, z_dim] -> ws [B, 1, w_dim], a fixed nonlinear map
    img = toy.synthesis(g, ws)                   # -> [B, H, W, 3] float32 NHWC in [-1, 1], differentiable in ws
    f = toy.factors(g, ws[:, 0])                 # {"identity": [B, 6], "attribute": [B, 5]}, exact

It follows the contract of `third_party/README.md` (kind "toy" in `disentangle_jax.frozen`), so the method trains
on it unchanged. Why it is built this way:

- z -> w is a fixed random MLP (leaky ReLU), so W is not a plain Gaussian and the latent discriminator has a
  distribution to learn, as with StyleGAN.
- w is read by two fixed linear maps onto mutually orthogonal directions: `identity_basis` (face shape, skin, hair,
  eye colour) and `attribute_basis` (pose, expression, light). Moving w along an identity direction leaves every
  attribute factor unchanged and vice versa, exactly; the remaining w_dim - 11 directions change nothing (a
  null space, like StyleGAN's redundant w directions). Each projection is standardised over the w distribution
  and squashed by a sigmoid into its factor's range, so every factor varies over the generator's samples.
- Identity and attributes are also statistically independent, as two different people's faces and poses are:
  the MLP's weights are block-diagonal over three groups of z (identity, attribute, the rest), rotated by a fixed
  orthogonal matrix at the end, and each basis lies in its own group's span. A dense MLP would mix all of z into
  every direction and correlate the two groups (|r| up to 0.6, attributes 45% predictable from identity), so a
  model could guess I_attr's pose from I_id and a swap's score would reward the guess.
- `render.render` draws the factors with soft primitives, so pixels are differentiable in w.

There are no upstream checkpoints: `init` draws everything from a seed, `save` writes the converted layout
(`third_party/common/converted.py`) and `load` reads it back.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from disentangle_jax.third_party.common import config as config_lib
from disentangle_jax.third_party.common import converted
from disentangle_jax.toy import NotConvertibleError
from disentangle_jax.toy import render as render_lib
from disentangle_jax.toy.render import ATTRIBUTE
from disentangle_jax.toy.render import ATTRIBUTE_NAMES
from disentangle_jax.toy.render import IDENTITY
from disentangle_jax.toy.render import IDENTITY_NAMES

NETWORK = "toy_generator"
NOISE_MODES = ("const", "random", "none")  # accepted for API parity with the StyleGANs; the toy has no noise
NUM_IDENTITY, NUM_ATTRIBUTE = len(IDENTITY), len(ATTRIBUTE)
_SQUASH_GAIN = 1.6  # standardised projection -> sigmoid(gain * p): most samples spread over a factor's range
_NEGATIVE_SLOPE = 0.2

__all__ = [
  "ATTRIBUTE",
  "ATTRIBUTE_NAMES",
  "Buffer",
  "Config",
  "Generator",
  "IDENTITY",
  "IDENTITY_NAMES",
  "Module",
  "NETWORK",
  "convert",
  "convert_to",
  "factors",
  "from_params",
  "groups",
  "init",
  "load",
  "mapping",
  "save",
  "synthesis",
]


class Buffer(nnx.Variable):
  """A fixed array derived from the weights (`w_avg`), not a weight itself."""


@dataclasses.dataclass(frozen=True)
class Config(config_lib.ConfigBase):
  """Every size of the toy generator.

  Attributes:
    resolution: output side in pixels (32-64 is the intended range; any >= 16 works).
    z_dim: latent z size.
    w_dim: latent w size; at least the number of factors (11), the rest is a null space.
    mapping_layers: layers of the fixed z -> w MLP (the last one linear).
  """

  resolution: int = 64
  z_dim: int = 32
  w_dim: int = 32
  mapping_layers: int = 3

  def __post_init__(self):
    if int(self.resolution) < 16:
      raise ValueError(f"toy Config.resolution must be >= 16, got {self.resolution}")
    for name in ("z_dim", "mapping_layers"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"toy Config.{name} must be positive, got {getattr(self, name)}")
    if int(self.w_dim) < NUM_IDENTITY + NUM_ATTRIBUTE:
      raise ValueError(
        f"toy Config.w_dim must be >= {NUM_IDENTITY + NUM_ATTRIBUTE} (one direction per factor), got {self.w_dim}"
      )

  @property
  def num_ws(self) -> int:
    """One w drives the whole image (the method broadcasts its single w to every style input anyway)."""
    return 1


def _lrelu(x: Any) -> Any:
  return jnp.where(x >= 0, x, _NEGATIVE_SLOPE * x)


class Generator(nnx.Module):
  """The toy G: `mapping(z)` -> ws, `synthesis(ws)` -> image, `factors(w)` -> the exact factors behind an image.

  Weights are `nnx.Param` like any frozen network's (they stay out of every optimiser because the model keeps
  frozen networks apart); the constructor draws them from `rngs` only so that `nnx.eval_shape` knows their shapes:
  `init` fills them from numpy (the factor directions need the statistics of w, which a constructor cannot see).
  """

  def __init__(self, config: Config, *, rngs: nnx.Rngs):
    self.config = config
    c = config
    dims = [c.z_dim] + [c.w_dim] * c.mapping_layers
    self.mapping_weights = nnx.List(
      [nnx.Param(jax.random.normal(rngs.params(), (dims[i], dims[i + 1]))) for i in range(c.mapping_layers)]
    )
    self.mapping_biases = nnx.List([nnx.Param(jnp.zeros((dims[i + 1],), jnp.float32)) for i in range(c.mapping_layers)])
    self.identity_basis = nnx.Param(jnp.zeros((c.w_dim, NUM_IDENTITY), jnp.float32))
    self.attribute_basis = nnx.Param(jnp.zeros((c.w_dim, NUM_ATTRIBUTE), jnp.float32))
    self.w_avg = Buffer(jnp.zeros((c.w_dim,), jnp.float32))

  def mapping_net(self, z: jax.Array) -> jax.Array:
    """z [B, z_dim] -> w [B, w_dim]: 2nd-moment normalisation, then He-scaled leaky-ReLU layers, the last linear."""
    x = z.astype(jnp.float32)
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=1, keepdims=True) + 1e-8)
    n = len(self.mapping_weights)
    for i, (weight, bias) in enumerate(zip(self.mapping_weights, self.mapping_biases)):
      weight = weight[...].astype(jnp.float32)
      x = x @ weight / math.sqrt(weight.shape[0]) + bias[...].astype(jnp.float32)
      if i < n - 1:
        x = _lrelu(x) * math.sqrt(2.0 / (1.0 + _NEGATIVE_SLOPE**2))
    return x

  def mapping(
    self, z: jax.Array, truncation_psi: float | jax.Array = 1.0, truncation_cutoff: int | None = None
  ) -> jax.Array:
    """z [B, z_dim] -> ws [B, num_ws, w_dim]; truncation lerps towards `w_avg` (skipped if `truncation_cutoff`=0)."""
    c = self.config
    if z.ndim != 2 or z.shape[1] != c.z_dim:
      raise ValueError(f"toy mapping expects z of shape [B, {c.z_dim}], got {z.shape}")
    ws = self.mapping_net(z)[:, None, :]
    if (isinstance(truncation_psi, (int, float)) and truncation_psi == 1) or truncation_cutoff == 0:
      return ws
    w_avg = self.w_avg[...].astype(jnp.float32)
    return w_avg + truncation_psi * (ws - w_avg)

  def factors(self, w: jax.Array) -> dict[str, jax.Array]:
    """w [B, w_dim] (or ws [B, num_ws, w_dim]) -> {"identity": [B, 6], "attribute": [B, 5]} in render units.

    Columns follow `IDENTITY_NAMES` / `ATTRIBUTE_NAMES`; each value lies in its (low, high) of `IDENTITY` /
    `ATTRIBUTE`.
    """
    if w.ndim == 3:
      w = w[:, 0]
    if w.ndim != 2 or w.shape[1] != self.config.w_dim:
      raise ValueError(f"toy factors expects w of shape [B, {self.config.w_dim}], got {w.shape}")
    centred = w.astype(jnp.float32) - self.w_avg[...].astype(jnp.float32)

    def squash(basis: nnx.Param, spec: tuple[tuple[str, float, float], ...]) -> jax.Array:
      low = jnp.asarray([lo for _, lo, _ in spec], jnp.float32)
      high = jnp.asarray([hi for _, _, hi in spec], jnp.float32)
      return low + (high - low) * jax.nn.sigmoid(_SQUASH_GAIN * (centred @ basis[...].astype(jnp.float32)))

    return {"identity": squash(self.identity_basis, IDENTITY), "attribute": squash(self.attribute_basis, ATTRIBUTE)}

  def synthesis(
    self, ws: jax.Array, noise_mode: str = "const", rng: jax.Array | None = None, noise: Any = None, dtype: Any = None
  ) -> jax.Array:
    """ws [B, num_ws, w_dim] -> image [B, H, W, 3] float32 in [-1, 1].

    `noise_mode`, `rng`, `noise` and `dtype` are accepted for parity with the StyleGANs and change nothing: the toy
    has no noise inputs and always renders in float32.
    """
    del rng, noise, dtype
    c = self.config
    if ws.ndim != 3 or ws.shape[1:] != (c.num_ws, c.w_dim):
      raise ValueError(f"toy synthesis expects ws of shape [B, {c.num_ws}, {c.w_dim}], got {ws.shape}")
    if noise_mode not in NOISE_MODES:
      raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    f = self.factors(ws[:, 0].astype(jnp.float32))
    return render_lib.render(f["identity"], f["attribute"], c.resolution)

  def __call__(
    self,
    z: jax.Array,
    truncation_psi: float | jax.Array = 1.0,
    truncation_cutoff: int | None = None,
    noise_mode: str = "const",
  ) -> jax.Array:
    return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode=noise_mode)


Module = Generator


def from_params(config: Config, params: dict[str, Any], source: str) -> Generator:
  """A generator holding `params`, checked entry by entry against the module `config` builds."""
  return converted.build(Generator, config, params, source)


def _numpy_mapping(config: Config, weights: list[np.ndarray], biases: list[np.ndarray], z: np.ndarray) -> np.ndarray:
  """`Generator.mapping_net` in numpy (float64): statistics for `init` without compiling anything."""
  x = z / np.sqrt(np.mean(z * z, axis=1, keepdims=True) + 1e-8)
  for i, (weight, bias) in enumerate(zip(weights, biases)):
    x = x @ weight.astype(np.float64) / math.sqrt(weight.shape[0]) + bias
    if i < config.mapping_layers - 1:
      x = np.where(x >= 0, x, _NEGATIVE_SLOPE * x) * math.sqrt(2.0 / (1.0 + _NEGATIVE_SLOPE**2))
  return x


def groups(config: Config) -> tuple[tuple[slice, slice], ...]:
  """(z slice, w slice) of the identity, attribute and remaining groups of the block-diagonal mapping.

  The spare w dimensions (beyond one per factor) are shared out evenly, so each factor group has a few null
  directions of its own and the last group (the rest) holds what remains; z is split in the same proportions.
  """
  spare = config.w_dim - NUM_IDENTITY - NUM_ATTRIBUTE
  w_sizes = [NUM_IDENTITY + spare // 3, NUM_ATTRIBUTE + spare // 3]
  w_sizes.append(config.w_dim - sum(w_sizes))
  z_sizes = [max(1, round(config.z_dim * n / config.w_dim)) for n in w_sizes[:2]]
  z_sizes.append(config.z_dim - sum(z_sizes))
  out, z0, w0 = [], 0, 0
  for zn, wn in zip(z_sizes, w_sizes):
    out.append((slice(z0, z0 + zn), slice(w0, w0 + wn)))
    z0, w0 = z0 + zn, w0 + wn
  return tuple(out)


def _orthonormal(rng: np.random.Generator, n: int) -> np.ndarray:
  """A Haar-random orthogonal n x n matrix (QR of a Gaussian, signs fixed so LAPACK's convention does not matter)."""
  q, r = np.linalg.qr(rng.standard_normal((n, n)))
  return q * np.sign(np.diag(r))


def init(config: Config, seed: int, w_samples: int = 8192) -> Generator:
  """The toy generator of `seed`: every weight from numpy's PCG64 seeded `seed`, so the same seed is the same G.

  The mapping's weights are block-diagonal over `groups(config)` (each block rescaled to its own fan-in), the last
  layer's output rotated by a random orthogonal matrix so no coordinate of w belongs to one group. The identity
  directions are random orthonormal directions inside the identity group's (rotated) span, the attribute ones
  inside the attribute group's. `w_avg` and the scale of each factor direction come from `w_samples` z of the same
  seed: a factor's projection is standardised over the w distribution, so the sigmoid squash spreads it over its
  range.

  The last bias centres W on zero (`w_avg` ~ 0). An untrained M outputs w near zero, so M starts at the middle of
  every factor's range: with W off centre, it started in the flat tail of some factors' squash (seed 1: eye colour
  at -3.5 standard deviations), where their small pixel gradients could not bring them back.
  """
  if config.z_dim < 3:
    raise ValueError(
      f"toy Config.z_dim must be >= 3 (one z group each for identity, attributes, the rest), got {config.z_dim}"
    )
  rng = np.random.default_rng(seed)
  parts = groups(config)
  dims = [config.z_dim] + [config.w_dim] * config.mapping_layers
  weights, biases = [], []
  for i in range(config.mapping_layers):
    weight = np.zeros((dims[i], dims[i + 1]))
    for z_part, w_part in parts:
      rows = z_part if i == 0 else w_part
      block = rng.standard_normal((rows.stop - rows.start, w_part.stop - w_part.start))
      weight[rows, w_part] = block * math.sqrt(dims[i] / (rows.stop - rows.start))  # undo the full fan-in scaling
    weights.append(weight)
    biases.append(0.2 * rng.standard_normal(dims[i + 1]))
  rotation = _orthonormal(rng, config.w_dim)
  weights[-1], biases[-1] = weights[-1] @ rotation, biases[-1] @ rotation
  weights = [w.astype(np.float32) for w in weights]
  z = rng.standard_normal((w_samples, config.z_dim))
  biases[-1] = biases[-1] - _numpy_mapping(config, weights, biases, z).mean(axis=0)  # centre W (see the docstring)
  biases = [b.astype(np.float32) for b in biases]
  w = _numpy_mapping(config, weights, biases, z)
  w_avg = w.mean(axis=0)

  def directions(part: slice, count: int) -> np.ndarray:
    inside = np.zeros((config.w_dim, count))
    inside[part] = _orthonormal(rng, part.stop - part.start)[:, :count]
    return rotation.T @ inside  # w . (R^T u) = (block output) . u: the direction reads its own group only

  directions = np.concatenate([directions(parts[0][1], NUM_IDENTITY), directions(parts[1][1], NUM_ATTRIBUTE)], axis=1)
  scale = ((w - w_avg) @ directions).std(axis=0)
  basis = (directions / scale).astype(np.float32)  # columns stay mutually orthogonal
  params = {
    "mapping_weights": {str(i): weight for i, weight in enumerate(weights)},
    "mapping_biases": {str(i): bias for i, bias in enumerate(biases)},
    "identity_basis": basis[:, :NUM_IDENTITY],
    "attribute_basis": basis[:, NUM_IDENTITY:],
    "w_avg": w_avg.astype(np.float32),
  }
  return from_params(config, params, f"toy init(seed={seed})")


def save(generator: Generator, dst: str | os.PathLike, source: str = "toy init") -> None:
  """Writes the converted-weights layout (`network.json` + Orbax params), which `load` reads back."""
  converted.write(dst, NETWORK, generator, source)


def convert(src: str | os.PathLike, **_: Any) -> tuple[Config, dict[str, Any]]:
  """There is no upstream toy checkpoint: only directories written by `save` / `convert_to` load."""
  raise NotConvertibleError(
    f"{src}: not a converted toy generator directory (no network.json); the toy generator "
    "has no upstream checkpoints: write one with `toy.generator.save(init(config, seed), dst)`"
  )


def convert_to(src: str | os.PathLike, dst: str | os.PathLike, **overrides: Any) -> Config:
  """Copies a converted toy generator directory `src` to `dst` (the contract's converter; there is no other format)."""
  generator = load(src, **overrides)
  converted.write(dst, NETWORK, generator, src)
  return generator.config


def load(path: str | os.PathLike, **overrides: Any) -> Generator:
  """A directory written by `save` / `convert_to`; `overrides` replace Config fields (e.g. `resolution`)."""
  config, params = converted.read(path, NETWORK, Config, convert)
  config = Config.from_dict({**config.to_dict(), **overrides})
  return from_params(config, params, str(path))


@functools.partial(jax.jit, static_argnames=("truncation_psi", "truncation_cutoff"))
def mapping(
  generator: Generator, z: jax.Array, truncation_psi: float = 1.0, truncation_cutoff: int | None = None
) -> jax.Array:
  """`generator.mapping`, compiled once per truncation setting and input shape."""
  return generator.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)


@functools.partial(jax.jit, static_argnames=("noise_mode", "dtype"))
def synthesis(
  generator: Generator,
  ws: jax.Array,
  noise_mode: str = "const",
  rng: jax.Array | None = None,
  noise: Any = None,
  dtype: Any = None,
) -> jax.Array:
  """`generator.synthesis`, compiled once per input shape."""
  return generator.synthesis(ws, noise_mode=noise_mode, rng=rng, noise=noise, dtype=dtype)


@jax.jit
def factors(generator: Generator, w: jax.Array) -> dict[str, jax.Array]:
  """`generator.factors`: the exact identity and attribute factors behind w (or ws)."""
  return generator.factors(w)
