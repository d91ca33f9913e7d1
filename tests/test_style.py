"""The code is formatted and linted as `pyproject.toml` says (ruff: Google style, 2-space indents, 120 columns).

Run `ruff format . && ruff check --fix .` to fix what these report.
"""

import pathlib
import subprocess
import sys

import pytest

_ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["format", "--check", "--diff"], ["check", "--no-fix"]], ids=["format", "lint"])
def test_ruff(command):
  result = subprocess.run(
    [sys.executable, "-m", "ruff", *command, "."], cwd=_ROOT, capture_output=True, text=True, check=False
  )
  assert result.returncode == 0, f"ruff {' '.join(command)} found problems:\n{result.stdout}\n{result.stderr}"
