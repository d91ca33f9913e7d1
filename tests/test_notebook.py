"""The Colab notebook runs headless, top to bottom, on the toy model the command tests trained."""

from __future__ import annotations

import json
import pathlib

import nbformat
from nbclient import NotebookClient

from tests.test_apps import toy_run  # noqa: F401  pylint: disable=unused-import  (the shared session fixture)

NOTEBOOK = pathlib.Path(__file__).resolve().parents[1] / "notebooks" / "colab.ipynb"


def test_notebook_runs_on_the_toy_model(toy_run, tmp_path):  # noqa: F811  pylint: disable=redefined-outer-name
  nb = nbformat.read(NOTEBOOK, as_version=4)
  params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
  assert len(params) == 1, "the notebook needs exactly one cell tagged 'parameters'"
  # Like papermill: a cell after the parameters overrides them (the test's trained model, a scratch dir).
  index = nb.cells.index(params[0])
  nb.cells.insert(
    index + 1,
    nbformat.v4.new_code_cell(
      f"MODEL = {json.dumps(str(toy_run[0]))}\nWORKDIR = {json.dumps(str(tmp_path))}\nINSTALL = False"
    ),
  )
  NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
  assert not [o for o in outputs if o.get("output_type") == "error"]
  text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
  assert "grid (" in text and "frames: 10" in text and "code (3, " in text
  pngs = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(pngs) >= 3  # the grid, the strip and the similarity plot
  assert (tmp_path / "interpolation.gif").is_file()
