"""Draws a cartoon face from its factors with soft primitives, in pure jax.numpy, so pixels are differentiable.

Every shape is an ellipse whose approximate signed distance goes through a sigmoid one pixel wide (anti-aliased,
and with a gradient with respect to every position, size and colour); layers are composited back to front:

    background, shoulders, back hair, neck, ears, face (Lambert-shaded ellipsoid), fringe,
    eyes (lid, white, iris, pupil), eyebrows, nose, mouth (lips, opening, teeth)

The head is an ellipsoid seen orthographically: a feature sits at an azimuth and an elevation on it, so yaw and
pitch move features across the face and foreshorten them, as a real head turn does, while the outline stays put.
Coordinates run right (x) and down (y), with the image spanning [-1/_ZOOM, 1/_ZOOM] of them (a tight crop of the face).

The factors arrive in the physical units of `IDENTITY` / `ATTRIBUTE` (`generator.factors` squashes w into them).
Each one is legible at 32 px (it moves or recolours a few pixels at least); nose length, eye spacing and the
mouth's bend, which moved less than a pixel or sat under a landmark the loss compares, are fixed instead. The
features (eyes, brows, nose, mouth) sit on a head of fixed size, so the landmarks the loss compares (all but the
jaw) follow the attributes alone and the identity factors show in the outline, colours and hair.

All ellipses are evaluated in one batched pass ([B, shapes, H, W]) and only the compositing runs layer by layer:
drawing them one at a time makes a graph whose backward pass takes XLA several times longer to compile.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# (name, low, high): the factor's range in the units the renderer uses.
IDENTITY = (
  ("face_width", 0.46, 0.60),  # semi-axis of the face ellipse, in drawing units (the image spans +-1/_ZOOM)
  ("face_height", 0.54, 0.70),  # semi-axis, in drawing units
  ("skin_tone", 0.0, 1.0),  # position along SKIN (pale to dark)
  ("hair_colour", 0.0, 1.0),  # position along HAIR (black, brown, auburn, blonde)
  ("hair_volume", 0.0, 1.0),  # how far the hair stands out around the head
  ("eye_colour", 0.0, 1.0),  # position along IRIS (blue, green, brown)
)
ATTRIBUTE = (
  ("yaw", -0.6, 0.6),  # head turn about the vertical axis, radians (positive: features move right)
  ("pitch", -0.3, 0.3),  # nod, radians (positive: features move down)
  ("mouth_open", 0.0, 1.0),
  ("brow_raise", 0.0, 1.0),
  ("light_azimuth", -1.1, 1.1),  # direction the light comes from, radians (positive: from the right)
)
IDENTITY_NAMES = tuple(name for name, _, _ in IDENTITY)
ATTRIBUTE_NAMES = tuple(name for name, _, _ in ATTRIBUTE)

SKIN = ((0.98, 0.86, 0.76), (0.92, 0.73, 0.60), (0.78, 0.56, 0.40), (0.56, 0.37, 0.25), (0.36, 0.23, 0.15))
HAIR = ((0.07, 0.06, 0.06), (0.30, 0.19, 0.10), (0.58, 0.26, 0.11), (0.88, 0.73, 0.42))
IRIS = ((0.20, 0.45, 0.90), (0.20, 0.65, 0.30), (0.45, 0.25, 0.08))
BACKGROUND_TOP = (0.62, 0.70, 0.80)
BACKGROUND_BOTTOM = (0.38, 0.44, 0.55)
SHIRT = (0.22, 0.30, 0.48)
LIPS = (0.78, 0.36, 0.38)
MOUTH = (0.30, 0.05, 0.08)
TEETH = (0.96, 0.95, 0.92)
EYE_WHITE = (0.97, 0.97, 0.97)
PUPIL = (0.03, 0.03, 0.04)

_HEAD_Y = 0.0  # the face ellipse's centre
# The camera frames the face tightly, as aligned face crops do: the image spans [-1/_ZOOM, 1/_ZOOM] of the drawing's
# coordinates, so eyes, brows and mouth cover enough pixels at 32 px for a pixel loss and a small CNN to read them.
_ZOOM = 1.3
_EYE_ELEVATION = -0.10
_BROW_ELEVATION = -0.30
_NOSE_ELEVATION = 0.16
_MOUTH_ELEVATION = 0.50
_SMILE = 0.25  # the mouth's fixed bend (corners slightly up)
_EYE_AZIMUTH = 0.45  # of each eye on the head, radians
_FEATURE_AXES = (0.50, 0.60)  # semi-axes of the head the features sit on (the face outline varies around it)


def normalised(values: Any, table: tuple[tuple[str, float, float], ...]) -> Any:
  """Factors in the units of `table` (`IDENTITY` / `ATTRIBUTE`) -> [0, 1] over each factor's range (numpy or jax)."""
  low = np.asarray([lo for _, lo, _ in table])
  high = np.asarray([hi for _, _, hi in table])
  return (values - low) / (high - low)


def palette(colours: tuple[tuple[float, float, float], ...], t: jax.Array) -> jax.Array:
  """Piecewise-linear colour along `colours` at t in [0, 1]: [...] -> [..., 3]."""
  table = jnp.asarray(colours, jnp.float32)
  pos = jnp.clip(t, 0.0, 1.0) * (len(colours) - 1)
  nodes = jnp.arange(len(colours), dtype=jnp.float32)
  weights = jnp.maximum(0.0, 1.0 - jnp.abs(pos[..., None] - nodes))  # hat functions: a partition of unity
  return weights @ table


def ellipse_sdf(x: jax.Array, y: jax.Array, cx: jax.Array, cy: jax.Array, rx: jax.Array, ry: jax.Array) -> jax.Array:
  """Approximate signed distance to an axis-aligned ellipse (negative inside); arrays broadcast.

  The implicit function q - 1 (q the normalised radius) divided by its gradient's norm: exact on the outline, so the
  sigmoid edge is one pixel wide all around even for elongated ellipses. The small constants keep the square roots
  differentiable at the centre.
  """
  u, v = (x - cx) / rx, (y - cy) / ry
  q = jnp.sqrt(u * u + v * v + 1e-8)
  grad = jnp.sqrt((u / rx) ** 2 + (v / ry) ** 2 + 1e-8)
  return (q - 1.0) * q / grad


@dataclasses.dataclass(frozen=True)
class _Layer:
  """How one shape is coloured and clipped (static): colour = base * (ambient + lit * shade)."""

  ambient: float
  lit: float
  clip: int = -1  # index of an earlier shape whose coverage this one is clipped to (-1: none)
  cut: bool = False  # kept only above a curve (computed for these shapes alone: most have none)


class _Shapes:
  """Collects ellipses (per-sample parameters [B, 1, 1]) and their layers, in drawing order."""

  def __init__(self, batch: int):
    self.batch = batch
    self.params: list[list[jax.Array]] = []
    self.colours: list[jax.Array] = []
    self.layers: list[_Layer] = []

  def add(
    self,
    colour: jax.Array | tuple[float, float, float],
    cx: Any,
    cy: Any,
    rx: Any,
    ry: Any,
    *,
    ambient: float = 1.0,
    lit: float = 0.0,
    clip: int = -1,
    bend: Any = 0.0,
    lift: Any = 0.0,
    cut: Any = None,
    cut_bend: Any = 0.0,
  ) -> int:
    """Adds an ellipse; returns its index (for `clip`).

    The ellipse is evaluated at (x, y + bend * u^2 + lift), u = (x - cx) / rx: a positive bend curves its ends up
    (a smile, an arched brow). With `cut`, it is kept only above the curve y = cut + cut_bend * u^2 (same bent y).
    """
    shape = (self.batch, 1, 1)
    self.params.append(
      [
        jnp.broadcast_to(jnp.asarray(p, jnp.float32), shape)
        for p in (cx, cy, rx, ry, bend, lift, 0.0 if cut is None else cut, cut_bend)
      ]
    )
    colour = jnp.asarray(colour, jnp.float32)
    self.colours.append(jnp.broadcast_to(colour.reshape(-1, 3), (self.batch, 3)))
    self.layers.append(_Layer(ambient, lit, clip, cut is not None))
    return len(self.layers) - 1

  def composite(self, x: jax.Array, y: jax.Array, background: jax.Array, shade: jax.Array, soft: float) -> jax.Array:
    """Every shape's coverage in one batched pass, then layer-by-layer "over" onto `background` [B, H, W, 3]."""
    cx, cy, rx, ry, bend, lift, cut, cut_bend = (jnp.stack(p, axis=1) for p in zip(*self.params))  # [B, S, 1, 1]
    x, y = x[:, None], y[:, None]  # [1, 1, 1, W], [1, 1, H, 1]
    u2 = ((x - cx) / rx) ** 2
    y_bent = y + bend * u2 + lift
    coverage = jax.nn.sigmoid(-ellipse_sdf(x, y_bent, cx, cy, rx, ry) / soft)  # [B, S, H, W]
    # One unstack per array, not a slice per layer: a slice's gradient is a zero-padded copy of the whole array, so
    # S slices made the backward pass add S full [B, S, H, W] arrays; an unstack's gradient is one stack.
    coverage, cut, cut_bend, u2, y_bent = (jnp.unstack(a, axis=1) for a in (coverage, cut, cut_bend, u2, y_bent))
    image, alphas = background, []
    for s, layer in enumerate(self.layers):
      alpha = coverage[s] if layer.clip < 0 else coverage[s] * alphas[layer.clip]
      if layer.cut:
        alpha = alpha * jax.nn.sigmoid((cut[s] + cut_bend[s] * u2[s] - y_bent[s]) / soft)
      alphas.append(alpha)
      colour = self.colours[s][:, None, None, :]  # [B, 1, 1, 3]
      colour = colour * (layer.ambient + layer.lit * shade) if layer.lit else colour * layer.ambient
      image = image + (colour - image) * alpha[..., None]
    return image


def _factors(identity: jax.Array, attribute: jax.Array) -> dict[str, jax.Array]:
  """Factor columns by name, each [B, 1, 1] (broadcasting over image rows and columns)."""
  f = {name: identity[:, i, None, None] for i, name in enumerate(IDENTITY_NAMES)}
  f.update({name: attribute[:, i, None, None] for i, name in enumerate(ATTRIBUTE_NAMES)})
  return f


def _place(
  f: dict[str, jax.Array],
  azimuth: jax.Array | float,
  elevation: jax.Array | float,
  depth: float = 1.0,
  outline: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """A point on the head ellipsoid -> (x, y, x foreshortening, y foreshortening) in the image.

  Eyes, brows, nose and mouth sit on a head of fixed size (`_FEATURE_AXES`), so their positions (the landmarks)
  follow the attributes alone, as a landmark loss that transfers pose and expression assumes; points with
  `outline` (the ears) sit on the identity's face outline instead. `depth` > 1 lifts the point off the surface
  (the nose tip), so it swings further with yaw.
  """
  a, b = (f["face_width"], f["face_height"]) if outline else _FEATURE_AXES
  az, el = azimuth + f["yaw"], elevation + f["pitch"]
  return (
    a * depth * jnp.sin(az) * jnp.cos(el),
    _HEAD_Y + b * jnp.sin(el),
    jnp.maximum(jnp.cos(az), 0.05),
    jnp.maximum(jnp.cos(el), 0.05),
  )


def _eye(f: dict[str, jax.Array], side: float) -> tuple[jax.Array, ...]:
  """(eye x, eye y, white semi-axes rx, ry, x and y foreshortening, pupil x): the gaze follows the head."""
  ex, ey, fx, fy = _place(f, side * _EYE_AZIMUTH, _EYE_ELEVATION)
  return ex, ey, 0.13 * fx, 0.09 * fy, fx, fy, ex + 0.015 * jnp.sin(f["yaw"])


_BROW_BEND = -0.03  # the brow's ends sit this much lower than its middle line (an arch)


def _brow(f: dict[str, jax.Array], side: float) -> tuple[jax.Array, ...]:
  """(brow x, brow y, semi-axes rx, ry)."""
  bx, by, bfx, bfy = _place(f, side * _EYE_AZIMUTH * 1.05, _BROW_ELEVATION - 0.26 * f["brow_raise"])
  return bx, by, 0.14 * bfx, 0.065 * bfy


def _nose(f: dict[str, jax.Array]) -> tuple[jax.Array, ...]:
  """(tip x, tip y, x and y foreshortening): the tip lifted off the surface so it swings with yaw."""
  return _place(f, 0.0, _NOSE_ELEVATION, depth=1.12)


def _mouth(f: dict[str, jax.Array]) -> tuple[jax.Array, ...]:
  """(x, y, opening half width, opening half height, bend, lift, lips rx, lips ry, lips bend)."""
  mx, my, mfx, mfy = _place(f, 0.0, _MOUTH_ELEVATION)
  half_width = 0.34 * _FEATURE_AXES[0] * mfx
  opening = (0.01 + 0.19 * f["mouth_open"]) * mfy
  bend, lift = 0.07 * _SMILE, -0.021 * _SMILE
  lips_rx = half_width + 0.015
  return mx, my, half_width, opening, bend, lift, lips_rx, opening + 0.028, bend * (lips_rx / half_width) ** 2


_JAW_POINTS = 9
KEYPOINT_NAMES = (
  *(f"jaw_{i}" for i in range(_JAW_POINTS)),
  *(f"{side}_{part}" for side in ("left", "right") for part in ("pupil", "eye_outer", "eye_inner")),
  *(f"{side}_brow_{end}" for side in ("left", "right") for end in ("outer", "inner")),
  "nose_tip",
  "mouth_left",
  "mouth_right",
  "mouth_top",
  "mouth_bottom",
  "mouth_centre",
)
NUM_KEYPOINTS = len(KEYPOINT_NAMES)
JAW_INDICES = tuple(range(_JAW_POINTS))  # the face outline: fixed by the identity alone, dropped by the landmark loss


def keypoints(identity: jax.Array, attribute: jax.Array, resolution: int) -> jax.Array:
  """The exact image positions of points `render` draws: [B, NUM_KEYPOINTS, 2] pixel (x, y), in `KEYPOINT_NAMES`.

  Pixel (i, j)'s centre is the point (i, j), so x runs from -0.5 to resolution - 0.5 across the image. "left" is the
  image's left. The points come from the same geometry the drawing uses (yaw and pitch move features over the head
  ellipsoid and foreshorten them): eye points are the pupil centre and the ends of the eye white, brow points the
  ends of the arched brow, mouth points the lips' ends, top and bottom and the middle of the opening. The jaw points
  lie on the lower half of the face ellipse, from the image's right side through the chin to its left side.

  Args:
    identity: [B, len(IDENTITY)] in the units of `IDENTITY`.
    attribute: [B, len(ATTRIBUTE)] in the units of `ATTRIBUTE`.
    resolution: the image side in pixels.
  """
  f = _factors(identity, attribute)
  a, b = f["face_width"], f["face_height"]  # [B, 1, 1], like every coordinate below
  points = [(a * math.cos(t), _HEAD_Y + b * math.sin(t)) for t in np.linspace(0.0, np.pi, _JAW_POINTS)]
  for side in (-1.0, 1.0):
    ex, ey, rx, _, _, _, gx = _eye(f, side)
    points += [(gx, ey), (ex + side * rx, ey), (ex - side * rx, ey)]
  for side in (-1.0, 1.0):
    bx, by, brx, _ = _brow(f, side)
    points += [(bx + side * brx, by - _BROW_BEND), (bx - side * brx, by - _BROW_BEND)]
  nx, ny, _, _ = _nose(f)
  points.append((nx, ny))
  mx, my, _, _, _, lift, lips_rx, lips_ry, lips_bend = _mouth(f)
  corner_y = my - lips_bend - lift
  points += [(mx - lips_rx, corner_y), (mx + lips_rx, corner_y), (mx, my - lips_ry - lift), (mx, my + lips_ry - lift)]
  points.append((mx, my - lift))
  batch = identity.shape[0]
  xy = jnp.stack([jnp.stack([jnp.broadcast_to(c, (batch, 1, 1))[:, 0, 0] for c in p], -1) for p in points], 1)
  return (xy * _ZOOM + 1.0) * (0.5 * resolution) - 0.5


def render(identity: jax.Array, attribute: jax.Array, resolution: int) -> jax.Array:
  """Factors -> image [B, resolution, resolution, 3] float32 in [-1, 1].

  Args:
    identity: [B, len(IDENTITY)] in the units of `IDENTITY`.
    attribute: [B, len(ATTRIBUTE)] in the units of `ATTRIBUTE`.
    resolution: the image side in pixels.
  """
  f = _factors(identity, attribute)
  soft = 1.0 / (resolution * _ZOOM)  # half a pixel in the drawing's units
  coords = ((jnp.arange(resolution, dtype=jnp.float32) + 0.5) / resolution * 2.0 - 1.0) / _ZOOM
  x, y = coords[None, None, :], coords[None, :, None]  # [1, 1, W], [1, H, 1]
  batch = identity.shape[0]

  a, b = f["face_width"], f["face_height"]
  cx, cy = jnp.zeros_like(a), jnp.full_like(a, _HEAD_Y)
  yaw, pitch = f["yaw"], f["pitch"]

  # Lambert shading of the head ellipsoid (also used beyond its outline, where it is clamped).
  light = jnp.concatenate([jnp.sin(f["light_azimuth"]), jnp.full_like(a, -0.45), jnp.cos(f["light_azimuth"])], -1)
  light = light / jnp.linalg.norm(light, axis=-1, keepdims=True)  # [B, 1, 3]
  nu, nv = (x - cx) / (a * 1.02), (y - cy) / (b * 1.02)
  nz = jnp.sqrt(jnp.clip(1.0 - nu * nu - nv * nv, 0.0, 1.0) + 1e-4)
  norm = jnp.sqrt(nu * nu + nv * nv + nz * nz)
  lambert = (nu * light[..., 0:1] + nv * light[..., 1:2] + nz * light[..., 2:3]) / norm
  shade = (0.32 + 0.85 * jax.nn.softplus(4.0 * lambert) / 4.0)[..., None]  # [B, H, W, 1], soft max(., 0)

  skin = palette(SKIN, f["skin_tone"][:, 0, 0])
  hair = palette(HAIR, f["hair_colour"][:, 0, 0])
  iris = palette(IRIS, f["eye_colour"][:, 0, 0])

  # Background: a vertical gradient.
  t = ((y + 1.0) / 2.0)[..., None]
  sky = jnp.asarray(BACKGROUND_TOP, jnp.float32) * (1.0 - t) + jnp.asarray(BACKGROUND_BOTTOM, jnp.float32) * t
  background = jnp.broadcast_to(sky, (batch, resolution, resolution, 3))

  shapes = _Shapes(batch)
  shapes.add(SHIRT, cx, 1.28, 0.95, 0.42)
  vol = f["hair_volume"]
  back_cx = cx - 0.10 * a * jnp.sin(yaw)
  hair_rx, hair_ry = a + 0.04 + 0.16 * vol, 0.9 * b + 0.12 * vol  # added to the face: width and volume apart
  hair_cy = cy - 0.16 * b
  shapes.add(hair, back_cx, hair_cy + 0.1 * b * vol, hair_rx, hair_ry, ambient=0.6, lit=0.4)
  shapes.add(skin, cx, cy + 0.95 * b, 0.48 * a, 0.45, ambient=0.72)
  for side in (-1.0, 1.0):  # ears at the sides of the head, hidden behind the face
    ex, ey, _, _ = _place(f, side * 1.45, 0.0, outline=True)
    shapes.add(skin, ex, ey, 0.09 * a, 0.16 * b, ambient=0.85)
  face = shapes.add(skin, cx, cy, a, b, ambient=0.0, lit=1.0)
  # Fringe: the hair ellipse above a hairline that curves down at the temples, and follows the nod.
  shapes.add(
    hair,
    back_cx,
    hair_cy,
    hair_rx,
    hair_ry,
    ambient=0.0,
    lit=1.0,
    cut=cy + b * jnp.sin(-0.76 + 0.5 * pitch),
    cut_bend=0.45 * b * (hair_rx / a) ** 2,
  )

  # Eyes: a lid shadow, the white, the iris and pupil (clipped to the white), gaze following the head; eyebrows.
  for side in (-1.0, 1.0):
    ex, ey, rx, ry, fx, _, gx = _eye(f, side)
    shapes.add(skin, ex, ey - 0.004, rx + 0.012, ry + 0.012, ambient=0.0, lit=0.6)
    white = shapes.add(EYE_WHITE, ex, ey, rx, ry, ambient=0.75, lit=0.25)
    shapes.add(iris, gx, ey, 0.085 * fx, 0.085, clip=white)
    shapes.add(PUPIL, gx, ey, 0.028 * fx, 0.028, clip=white)
    bx, by, brx, bry = _brow(f, side)
    shapes.add(hair * 0.25 + 0.02, bx, by, brx, bry, bend=_BROW_BEND, clip=face)

  # Nose: a shadow on the side away from the light, the tip lifted off the surface so it swings with yaw.
  nx, ny, nfx, nfy = _nose(f)
  shadow_dx = -0.03 * jnp.sin(f["light_azimuth"])
  shapes.add(skin, nx + shadow_dx, ny - 0.06, 0.04 * nfx, 0.12 * nfy, ambient=0.0, lit=0.62, clip=face)
  shapes.add(skin, nx, ny, 0.05 * nfx, 0.035 * nfy, ambient=0.0, lit=1.05, clip=face)
  for side in (-1.0, 1.0):
    shapes.add(skin, nx + side * 0.026 * nfx, ny + 0.022 * nfy, 0.013 * nfx, 0.009 * nfy, ambient=0.35, clip=face)

  # Mouth: lips, the opening, teeth along its top; a fixed slight smile bends the whole mouth (corners up).
  mx, my, half_width, opening, bend, lift, lips_rx, lips_ry, lips_bend = _mouth(f)
  shapes.add(LIPS, mx, my, lips_rx, lips_ry, ambient=0.0, lit=1.0, clip=face, bend=lips_bend, lift=lift)
  shapes.add(MOUTH, mx, my, half_width, opening, clip=face, bend=bend, lift=lift)
  # The same ellipse as the opening (so not clipped to it again), above a line near its top.
  shapes.add(TEETH, mx, my, half_width, opening, clip=face, bend=bend, lift=lift, cut=my - 0.35 * opening)

  img = shapes.composite(x, y, background, shade, soft)
  return jnp.clip(img, 0.0, 1.0) * 2.0 - 1.0
