"""Identity/attribute swap grids like the paper's figures: identities down the side, attributes across the top.

Cell (i, j) is G(M(E_id(id_i), E_attr(attr_j))): the face of row i with the pose, expression and lighting of
column j. All N x M pairs run through the model in fixed-size batches (one compiled shape, the last batch padded).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from disentangle_jax.apps import images as images_lib


class Swapper(Protocol):
  def swap(self, id_images: np.ndarray, attr_images: np.ndarray) -> np.ndarray: ...


def swap_pairs(model: Swapper, id_images: np.ndarray, attr_images: np.ndarray, batch_size: int = 16) -> np.ndarray:
  """Every (identity, attribute) pair: float [N, M, H, W, 3] in [-1, 1], row i = identity i, column j = attribute j."""
  n, m = len(id_images), len(attr_images)
  ii, jj = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
  ii, jj = ii.ravel(), jj.ravel()
  outs = []
  for start in range(0, n * m, batch_size):
    sel = slice(start, start + batch_size)
    a, b = id_images[ii[sel]], attr_images[jj[sel]]
    k = len(a)
    if k < batch_size and n * m > batch_size:  # pad the last batch: no second compilation for the remainder
      a = np.concatenate([a, np.repeat(a[-1:], batch_size - k, 0)])
      b = np.concatenate([b, np.repeat(b[-1:], batch_size - k, 0)])
    outs.append(np.asarray(model.swap(a, b))[:k])
  out = np.concatenate(outs)
  return out.reshape(n, m, *out.shape[1:])


def compose_grid(
  id_images: np.ndarray, attr_images: np.ndarray, outputs: np.ndarray, pad: int = 4, background: int = 255
) -> np.ndarray:
  """The figure: an (N+1) x (M+1) uint8 grid, top-left empty, attributes on the top row, identities on the left.

  Args:
    id_images: [N, H, W, 3] float in [-1, 1] or uint8.
    attr_images: [M, H, W, 3].
    outputs: [N, M, H, W, 3], e.g. from `swap_pairs`.
    pad: pixels between cells; the header row and column are set apart by twice that.
  """
  id_u8, attr_u8, out_u8 = (_u8(x) for x in (id_images, attr_images, outputs))
  n, m, h, w = out_u8.shape[:4]
  if id_u8.shape != (n, h, w, 3) or attr_u8.shape != (m, h, w, 3):
    raise ValueError(
      f"grid shapes disagree: identities {id_u8.shape}, attributes {attr_u8.shape}, "
      f"outputs {out_u8.shape} (expected [N, H, W, 3], [M, H, W, 3], [N, M, H, W, 3])"
    )
  gap = 2 * pad
  height = (n + 1) * h + (n - 1) * pad + gap
  width = (m + 1) * w + (m - 1) * pad + gap
  grid = np.full((height, width, 3), background, np.uint8)
  for i in range(n + 1):
    for j in range(m + 1):
      if i == 0 and j == 0:
        continue
      cell = attr_u8[j - 1] if i == 0 else id_u8[i - 1] if j == 0 else out_u8[i - 1, j - 1]
      y, x = cell_origin(i, j, h, w, pad)
      grid[y : y + h, x : x + w] = cell
  return grid


def cell_origin(row: int, col: int, h: int, w: int, pad: int = 4) -> tuple[int, int]:
  """Top-left pixel of grid cell (row, col); row 0 / column 0 are the headers."""
  y = 0 if row == 0 else h + 2 * pad + (row - 1) * (h + pad)
  x = 0 if col == 0 else w + 2 * pad + (col - 1) * (w + pad)
  return y, x


def _u8(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x)
  return x if x.dtype == np.uint8 else images_lib.to_uint8(x)
