"""The paper-style evaluation metrics, each a small function of already-computed embeddings, features or landmarks.

`pose` and `expression` measure attribute preservation from landmarks; `identity` and `fid_score` turn ArcFace
embeddings and Inception features into the table's numbers; `nets` builds (or is handed) the networks that compute
those inputs, so every metric can be tested with fake networks; `periodic` adds ArcFace and FID to training's
periodic evaluation.
"""
