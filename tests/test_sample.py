"""`disentangle-jax sample`: an image grid from a random-init tiny generator and from converted weights."""

import numpy as np
from PIL import Image

from disentangle_jax.cli import _flags
from disentangle_jax.cli import sample
from tests import recipe


def _run(argv):
  _flags.reset()
  sample.main(_flags.FLAGS(["disentangle-jax sample"] + argv))


def test_random_tiny_generator_grid(tmp_path, capsys):
  out = tmp_path / "grid.png"
  _run([f"--out={out}", "--num=5", "--seed=1", "--psi=0.7"])
  image = np.asarray(Image.open(out))
  assert image.shape == (2 * 32, 3 * 32, 3)  # 5 images, 3 columns: the sixth cell stays black
  assert image[:32].std() > 0 and not image[32:, 64:].any()
  assert "random-init tiny generator" in capsys.readouterr().out


def test_grid_from_checkpoint(tmp_path):
  out = tmp_path / "grid.png"
  _run([f"--generator={recipe.TESTDATA / 'sg2ada_r32_weights.npz'}", f"--out={out}", "--num=2", "--psi=1"])
  assert np.asarray(Image.open(out)).shape == (32, 64, 3)


def test_grid_layout():
  images = np.stack([np.full((2, 2, 3), v, np.float32) for v in (-1.0, 0.0, 1.0)])
  g = sample.grid(images, columns=2)
  assert g.shape == (4, 4, 3)
  assert g[0, 0, 0] == 0 and g[0, 2, 0] == 128 and g[2, 0, 0] == 255 and g[2, 2, 0] == 0
