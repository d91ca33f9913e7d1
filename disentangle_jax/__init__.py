"""disentangle_jax: face identity disentanglement via latent space mapping, in JAX/Flax."""

from typing import Any


def load(path: Any) -> Any:
  """A trained model from an export (`disentangle-jax export`) or a training workdir; see `inference.load`.

  Imported lazily so `import disentangle_jax` stays light (no JAX, Flax or TensorFlow until a model is loaded).
  """
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  return inference.load(path)


__all__ = ["load"]
