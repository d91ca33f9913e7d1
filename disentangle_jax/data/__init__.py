"""The (w, image) dataset: rendering it with G (`generate`), its TFDS format, and the input pipelines."""
