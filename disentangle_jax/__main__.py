"""`python -m disentangle_jax <command>`: the same as the `disentangle-jax` console script."""

from disentangle_jax import main

main.run()
