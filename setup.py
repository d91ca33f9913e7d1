"""Installs disentangle_jax.

The ported frozen networks in third_party/ install as disentangle_jax.third_party and configs/ as
disentangle_jax.configs, so nothing named third_party or configs lands at the top of site-packages.
"""

import pathlib

import setuptools

_ROOT = pathlib.Path(__file__).parent


def _packages() -> list[str]:
  """Lists disentangle_jax's packages plus third_party/'s, renamed under disentangle_jax.third_party."""
  own = setuptools.find_packages(include=["disentangle_jax", "disentangle_jax.*"])
  ported = setuptools.find_packages(where="third_party")
  return (
    own
    + ["disentangle_jax.configs", "disentangle_jax.third_party"]
    + [f"disentangle_jax.third_party.{p}" for p in ported]
  )


setuptools.setup(
  name="disentangle_jax",
  version="0.1.0",
  description="Face identity disentanglement via latent space mapping, in JAX/Flax.",
  long_description=(_ROOT / "README.md").read_text(encoding="utf-8"),
  long_description_content_type="text/markdown",
  python_requires=">=3.10",
  packages=_packages(),
  package_dir={"disentangle_jax.third_party": "third_party", "disentangle_jax.configs": "configs"},
  package_data={"": ["*.json"]},
  install_requires=[
    "absl-py",
    "clu>=0.0.10",
    "dm-pix>=0.4",
    "flax>=0.11",
    "h5py",
    "imageio>=2.30",
    "imageio-ffmpeg",
    "importlib_resources",
    "jax>=0.6",
    "ml-collections>=0.1.1",
    "numpy>=1.26",
    "optax>=0.2",
    "orbax-checkpoint>=0.11",
    "pillow",
    "scipy",  # the matrix square root of the Frechet distance (disentangle_jax/fid.py)
    "tensorboard",
    "tensorflow>=2.16",
    "tensorflow-datasets>=4.9.6",
  ],
  extras_require={
    # ruff pinned to one minor version: its formatter's output changes between them.
    "test": [
      "pytest>=7",
      "pytest-xdist",
      "ruff==0.17.*",
      "scikit-image",
      "matplotlib",
      "nbclient",
      "nbformat",
      "ipykernel",
    ],
  },
  entry_points={"console_scripts": ["disentangle-jax=disentangle_jax.main:run"]},
)
