"""Command-line commands of `disentangle-jax`, one module each (see `disentangle_jax/main.py`)."""
