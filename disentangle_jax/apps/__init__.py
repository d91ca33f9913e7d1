"""What users do with a trained model: swap grids, interpolations, video, real-photo alignment and image IO.

Each module has one job and works on numpy images; the model itself comes from `disentangle_jax.load`.
"""
