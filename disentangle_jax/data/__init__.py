"""The (w, image) dataset and its input pipelines.

Modules:

  tfds_format  the on-disk format: a TFDS folder of ArrayRecord shards (image PNG, w, z, seed; train/validation)
  generate     renders it with the frozen G, sharded over the devices, resumable, repairs damaged shards
               (`disentangle-jax generate-data`)
  pipeline     the training input: deterministic per-step batches (same-image / cross schedule, real w for D_W)
  folder       batches of real photos from a plain folder (evaluation, inference)
"""
