"""Identity/attribute swaps: grids like the paper's figures, matched pairs, and one file per grid cell.

Cell (i, j) is G(M(E_id(id_i), E_attr(attr_j))): the face of row i with the pose, expression and lighting of
column j. All pairs run through the model in fixed-size batches (one compiled shape, the last batch padded).
Besides the grid, the original's test modes: `pair_by_name` matches identity and attribute files by name (its
`infer_pairs`), and `write_cells` writes every cell as its own file (its `infer_on_dirs` layout).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from disentangle_jax import errors
from disentangle_jax.apps import images as images_lib


class PairingError(errors.UserError, ValueError):
  """Identity and attribute files cannot be matched by name; the message lists the names at fault."""


class Swapper(Protocol):
  def swap(self, id_images: np.ndarray, attr_images: np.ndarray) -> np.ndarray: ...


def swap_matched(model: Swapper, id_images: np.ndarray, attr_images: np.ndarray, batch_size: int = 16) -> np.ndarray:
  """out[k] = swap(id_images[k], attr_images[k]): float [K, H, W, 3] in [-1, 1]."""
  total = len(id_images)
  outs = []
  for start in range(0, total, batch_size):
    a, b = id_images[start : start + batch_size], attr_images[start : start + batch_size]
    k = len(a)
    if k < batch_size and total > batch_size:  # pad the last batch: no second compilation for the remainder
      a = np.concatenate([a, np.repeat(a[-1:], batch_size - k, 0)])
      b = np.concatenate([b, np.repeat(b[-1:], batch_size - k, 0)])
    outs.append(np.asarray(model.swap(a, b))[:k])
  return np.concatenate(outs)


def swap_pairs(model: Swapper, id_images: np.ndarray, attr_images: np.ndarray, batch_size: int = 16) -> np.ndarray:
  """Every (identity, attribute) pair: float [N, M, H, W, 3] in [-1, 1], row i = identity i, column j = attribute j."""
  n, m = len(id_images), len(attr_images)
  ii, jj = np.meshgrid(np.arange(n), np.arange(m), indexing="ij")
  out = swap_matched(model, id_images[ii.ravel()], attr_images[jj.ravel()], batch_size)
  return out.reshape(n, m, *out.shape[1:])


def pair_by_name(
  id_paths: Sequence[str | os.PathLike], attr_paths: Sequence[str | os.PathLike]
) -> list[tuple[str, str, str]]:
  """(name, identity file, attribute file) for each file name (without suffix) found on both sides, sorted by name.

  Raises:
    PairingError: a name appears twice on one side, or on one side only (each such name listed).
  """

  def by_name(paths, side):
    out: dict[str, str] = {}
    for p in paths:
      stem = pathlib.Path(p).stem
      if stem in out:
        raise PairingError(f"two {side} files are named {stem!r}: {out[stem]} and {p}; names must be unique")
      out[stem] = str(p)
    return out

  ids, attrs = by_name(id_paths, "identity"), by_name(attr_paths, "attribute")
  lonely = [f"{n} (identity {ids[n]} has no attribute file)" for n in sorted(ids.keys() - attrs.keys())]
  lonely += [f"{n} (attribute {attrs[n]} has no identity file)" for n in sorted(attrs.keys() - ids.keys())]
  if lonely:
    raise PairingError("--pairs matches identity and attribute files by name; unmatched: " + "; ".join(lonely))
  return [(n, ids[n], attrs[n]) for n in sorted(ids)]


def write_cells(directory: str | os.PathLike, id_images: np.ndarray, attr_images: np.ndarray, outputs: np.ndarray):
  """One file per grid cell, in the original's layout; returns the paths of the outputs.

  `<directory>/attr_<j>/` holds `attr_image.png` (attribute j), and for each identity i `id_<i>.png` and
  `prediction_<i>.png` (the swap of cell (i, j)).
  """
  directory = pathlib.Path(directory)
  written = []
  for j, attr in enumerate(attr_images):
    folder = directory / f"attr_{j}"
    images_lib.write_image(folder / "attr_image.png", attr)
    for i, ident in enumerate(id_images):
      images_lib.write_image(folder / f"id_{i}.png", ident)
      written.append(images_lib.write_image(folder / f"prediction_{i}.png", outputs[i, j]))
  return written


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
