"""disentangle_jax: face identity disentanglement via latent space mapping, in JAX/Flax."""
