"""The toy-world score: exact on an oracle swap, at its floor on swaps that copy one input."""

import types

import jax.numpy as jnp
import numpy as np
import pytest

from disentangle_jax.toy import generator as toy_lib
from disentangle_jax.toy import score as score_lib


@pytest.fixture(scope="module")
def generator():
  return toy_lib.init(toy_lib.Config(resolution=32, z_dim=32, w_dim=32), seed=0)


def _model(generator, combine):
  """A stand-in `InferenceModel`: `encode` recovers each image's w by construction and returns `combine(w_id, w_attr)`.

  The toy G's images are a function of w alone, so the stand-in looks the w of an image up by its pixels.
  """
  seen: dict[bytes, np.ndarray] = {}
  synthesis = toy_lib.synthesis

  def remembering_synthesis(g, ws, **kwargs):
    images = synthesis(g, ws, **kwargs)
    for image, w in zip(np.asarray(images), np.asarray(ws[:, 0])):
      seen[image.tobytes()] = w
    return images

  def w_of(images):
    return jnp.asarray(np.stack([seen[image.tobytes()] for image in np.asarray(images)]))

  def encode(id_images, attr_images):
    return None, combine(w_of(id_images), w_of(attr_images))

  def render(w):
    return synthesis(generator, w[:, None])

  return types.SimpleNamespace(frozen=types.SimpleNamespace(generator=generator), encode=encode, render=render), (
    remembering_synthesis
  )


def _score(generator, combine, monkeypatch):
  model, synthesis = _model(generator, combine)
  monkeypatch.setattr(toy_lib, "synthesis", synthesis)
  return score_lib.score(model, num_pairs=48, batch_size=16)


def test_an_oracle_swap_scores_exactly(generator, monkeypatch):
  attribute = np.asarray(generator.attribute_basis[...], np.float64)
  projection = attribute @ np.linalg.solve(attribute.T @ attribute, attribute.T)  # onto the attribute directions

  def oracle(w_id, w_attr):  # w_id's identity directions, w_attr's attribute directions
    return jnp.asarray(np.asarray(w_id) + (np.asarray(w_attr) - np.asarray(w_id)) @ projection.T, jnp.float32)

  result = _score(generator, oracle, monkeypatch)
  for group, table in score_lib.GROUPS.items():
    assert result[f"{group}/r2"] > 0.999 and result[f"{group}/accuracy"] == 1.0
    assert all(result[f"{group}/r2/{name}"] > 0.999 for name, _, _ in table)
  assert result["reconstruction/psnr"] > 60  # swap(I, I) of the oracle is I, up to float32 rounding


def test_copying_one_input_scores_at_the_floor_of_the_other_group(generator, monkeypatch):
  copy_id = _score(generator, lambda w_id, w_attr: w_id, monkeypatch)
  assert copy_id["identity/accuracy"] == 1.0 and copy_id["identity/r2"] > 0.999
  assert copy_id["attribute/accuracy"] == 0.0 and copy_id["attribute/r2"] < 0.2
  per_factor = [copy_id[f"attribute/r2/{name}"] for name in toy_lib.ATTRIBUTE_NAMES]
  assert max(per_factor) < 0.2 and copy_id["attribute/r2"] == pytest.approx(np.mean(per_factor))
  mean = _score(generator, lambda w_id, w_attr: jnp.broadcast_to(generator.w_avg[...], w_id.shape), monkeypatch)
  assert abs(mean["identity/r2"]) < 0.3 and abs(mean["attribute/r2"]) < 0.3  # the mean w: no better than the mean


def test_r2_and_accuracy_by_hand():
  target = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
  assert score_lib.r2(target, target) == 1.0
  assert score_lib.r2(np.array([[1.0, 1.0]] * 3), target) == pytest.approx(0.5)  # 0 on column 0, 1 on the constant
  assert score_lib.closer_accuracy(np.zeros((2, 1)), np.array([[0.1], [1.0]]), np.array([[1.0], [0.1]])) == 0.5


def test_the_score_refuses_another_generator():
  model = types.SimpleNamespace(frozen=types.SimpleNamespace(generator=object()))
  with pytest.raises(TypeError, match="toy generator"):
    score_lib.score(model)
