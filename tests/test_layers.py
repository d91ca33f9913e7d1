"""The shared CNN layers of the ported networks (`third_party/common/layers.py`)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from disentangle_jax.third_party.common import layers

_DIMS = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize(
  "size,kernel,stride,padding",
  [
    (9, 1, 1, [(0, 0), (0, 0)]),
    (9, 1, 2, [(0, 0), (0, 0)]),  # odd side: the last row/column is kept, as lax does
    (8, 1, 2, "SAME"),
    (9, 1, 3, "VALID"),
    (9, 1, 1, [(1, 1), (0, 0)]),  # padded 1x1: not a plain matmul, left to lax
    (9, 3, 2, [(1, 1), (1, 1)]),
  ],
)
def test_conv_equals_lax_in_value_and_gradient(size, kernel, stride, padding):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, size, size, 5)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(kernel, kernel, 5, 7)), jnp.float32)
  ref = lambda x, k: jax.lax.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=_DIMS)
  ours = lambda x, k: layers.conv_general_dilated(x, k, (stride, stride), padding, dimension_numbers=_DIMS)
  np.testing.assert_allclose(ours(x, k), ref(x, k), rtol=0, atol=1e-5)
  loss = lambda f: lambda x, k: jnp.sum(jnp.sin(f(x, k)))
  for g_ours, g_ref in zip(jax.grad(loss(ours), (0, 1))(x, k), jax.grad(loss(ref), (0, 1))(x, k)):
    np.testing.assert_allclose(g_ours, g_ref, rtol=0, atol=1e-4)


def test_conv_module_uses_the_matmul_form_for_1x1():
  from flax import nnx  # pylint: disable=import-outside-toplevel

  m = layers.conv(5, 7, 1, stride=2, rngs=nnx.Rngs(0))
  jaxpr = str(jax.make_jaxpr(m)(jnp.zeros((1, 8, 8, 5))))
  assert "dot_general" in jaxpr and "conv_general_dilated" not in jaxpr
  m3 = layers.conv(5, 7, 3, padding=1, rngs=nnx.Rngs(0))
  assert "conv_general_dilated" in str(jax.make_jaxpr(m3)(jnp.zeros((1, 8, 8, 5))))
