"""The method's own networks: the trainable encoders, the mapper M and the latent discriminator D_W."""
