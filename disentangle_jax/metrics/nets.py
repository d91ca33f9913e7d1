"""The networks behind the paper metrics, built from weight paths; each one missing is recorded as skipped, and why.

Injection point: `FACTORIES`, a `Factories` whose fields turn a weight path into what a metric calls. The defaults
import the ported networks lazily, inside the factory, so nothing loads until a metric needs it; tests (and users
with their own networks) replace the fields:

    monkeypatch.setattr(nets, "FACTORIES", nets.Factories(arcface=lambda path: my_embed))

  arcface(path) -> embed(images) [B, 512]      `arcface.load(path)`, through its jitted `arcface.embed`
  fid_inception(path) -> network               `fid_inception.load(path)`: `network.features(images)` [B, 2048];
                                               the network itself, since `fid.fingerprint` of its weights keys
                                               the cached statistics of the real faces
  landmarks(kind, path) -> Landmarker          the evaluating landmark net (FAN or the face mesh)
Images are float32 NHWC in [-1, 1]. The FID statistics and distance are `disentangle_jax.fid`'s, always.

The evaluating landmark net is the one training did not use (`evaluation_landmarks`): a model trained to match
FAN's points is judged by the face mesh, and the other way round, so the pose and expression numbers do not come
from the network the model was fitted to.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import numpy as np

Embed = Callable[[np.ndarray], np.ndarray]

# Metric groups, as named in skip messages and in the table's "skipped" section.
ARCFACE = "arcface identity"
FID = "FID"
POSE = "pose and expression"


@dataclasses.dataclass(frozen=True)
class Landmarker:
  """A landmark net for pose and expression: `points(images)` [B, N, 2 or 3] in pixels of a `frame`-px input."""

  kind: str  # "mediapipe_facemesh" or "fan": selects the pose template
  points: Embed
  frame: float
  keep: tuple[int, ...]  # the expression points (jaw / face oval dropped)


def load_arcface(path: str) -> Embed:
  from disentangle_jax.third_party import arcface  # pylint: disable=import-outside-toplevel

  net = arcface.load(path)
  return lambda images: np.asarray(arcface.embed(net, np.asarray(images, np.float32)))


def load_fid_inception(path: str) -> Any:
  from disentangle_jax.third_party import fid_inception  # pylint: disable=import-outside-toplevel

  return fid_inception.load(path)


def load_landmarker(kind: str, path: str) -> Landmarker:
  if kind == "fan":
    from disentangle_jax.third_party import fan  # pylint: disable=import-outside-toplevel

    net = fan.load(path)
    points = lambda images: np.asarray(fan.landmarks_hard(net, np.asarray(images, np.float32)))
    return Landmarker(kind, points, net.config.input_size, fan.KEEP_INDICES)
  from disentangle_jax.third_party import mediapipe_facemesh as mp  # pylint: disable=import-outside-toplevel

  net = mp.load(path)
  points = lambda images: np.asarray(mp.landmarks(net, np.asarray(images, np.float32)))
  return Landmarker(kind, points, net.config.input_size, mp.KEEP_INDICES)


@dataclasses.dataclass
class Factories:
  """What builds each metric network from its weights (see the module docstring)."""

  arcface: Callable[[str], Embed] = load_arcface
  fid_inception: Callable[[str], Any] = load_fid_inception
  landmarks: Callable[[str, str], Landmarker] = load_landmarker


FACTORIES = Factories()


@dataclasses.dataclass
class MetricNets:
  """The metric networks that could be built; `skipped` maps each metric group left out to the reason."""

  arcface: Embed | None = None
  inception: Any | None = None  # a FID Inception: `features(images)`, weights for `fid.fingerprint`
  landmarks: Landmarker | None = None
  skipped: dict[str, str] = dataclasses.field(default_factory=dict)

  def pool3(self, images: np.ndarray) -> np.ndarray:
    """The FID Inception's pool3 features [B, 2048] of images (float32 NHWC in [-1, 1]) as numpy."""
    return np.asarray(self.inception.features(np.asarray(images, np.float32)))


def evaluation_landmarks(training_kind: str) -> str:
  """The landmark net that judges pose and expression: the one training did not use."""
  return "fan" if training_kind in ("mediapipe_facemesh", "facemesh") else "mediapipe_facemesh"


def _missing(path: str | None, what: str, how: str) -> str | None:
  """Why `path` cannot be used (None when it can)."""
  if not path:
    return f"no {what} weights ({how})"
  if "://" not in str(path) and not os.path.exists(path):
    return f"{what} weights {path}: no such file or folder ({how})"
  return None


def build(
  *,
  arcface: str | None = None,
  fid_inception: str | None = None,
  landmarks_kind: str | None = None,
  landmarks: str | None = None,
  hints: dict[str, str] | None = None,
  factories: Factories | None = None,
) -> MetricNets:
  """The metric networks of the given weight paths (None or "": that metric is skipped, with the reason recorded).

  Args:
    arcface, fid_inception, landmarks: weight paths (anything the network's `load` reads).
    landmarks_kind: which landmark net `landmarks` holds ("fan" or "mediapipe_facemesh"); None: no pose metrics.
    hints: per group (ARCFACE, FID, POSE), how a user supplies the weights, for the skip messages.
    factories: defaults to the module's `FACTORIES` (the injection point).
  """
  f = factories or FACTORIES
  hints = hints or {}
  nets = MetricNets()

  def attempt(group: str, path: str | None, what: str, make: Callable[[], None]) -> None:
    why = _missing(path, what, hints.get(group, "not configured"))
    if why is None:
      try:
        make()
        return
      except ImportError as e:  # a port this installation lacks
        why = f"{what} is not available in this installation ({e})"
    nets.skipped[group] = why

  def make_arcface():
    nets.arcface = f.arcface(arcface)

  def make_fid():
    nets.inception = f.fid_inception(fid_inception)

  def make_landmarks():
    nets.landmarks = f.landmarks(landmarks_kind, landmarks)

  attempt(ARCFACE, arcface, "ArcFace", make_arcface)
  attempt(FID, fid_inception, "FID Inception", make_fid)
  if landmarks_kind is not None:
    attempt(POSE, landmarks, f"{landmarks_kind} landmark", make_landmarks)
  return nets
