"""The paper-style evaluation metrics, each a small function of already-computed embeddings, features or landmarks.

`pose` and `expression` measure attribute preservation from landmarks; `identity` turns ArcFace embeddings into
the table's cosines (FID is `disentangle_jax.fid`'s, on the FID Inception's features); `nets` builds (or is handed)
the networks that compute those inputs; `periodic` adds ArcFace and FID to training's periodic evaluation.
"""
