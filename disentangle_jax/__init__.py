"""disentangle_jax: face identity disentanglement via latent space mapping, in JAX/Flax."""

from typing import Any


def load(path: Any, best: str | None = None) -> Any:
  """A trained model from an export (`disentangle-jax export`) or a training workdir (`best="identity"` or
  `"landmarks"`: its best checkpoint by that evaluation metric); see `inference.load`.

  Imported lazily so `import disentangle_jax` stays light (no JAX, Flax or TensorFlow until a model is loaded).
  """
  from disentangle_jax import inference  # pylint: disable=import-outside-toplevel

  return inference.load(path, best=best)


__all__ = ["load"]
