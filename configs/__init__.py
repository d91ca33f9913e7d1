"""Experiment configs (`get_config(arg)`); installed as `disentangle_jax.configs`."""
