"""The evaluation table as JSON and Markdown: one column per split, the paper's metrics first.

JSON: {"<split>": {metric: value, ..., "examples": n}, ..., "skipped": {metric group: reason}, "nets": {...}}.
Markdown: the same numbers as a table (a dash where a metric was skipped or does not apply), the skipped groups
listed below it with their reasons.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

# (key, row label, better): the paper's table, then the E_id numbers training logs (the net the model trained on).
ROWS = (
  ("arcface/id_to_out", "ArcFace similarity id -> out", "higher"),
  ("arcface/attr_to_out", "ArcFace similarity attr -> out", "lower"),
  ("arcface/id_to_attr", "ArcFace similarity id <-> attr (inputs)", ""),
  ("fid/real", "FID swaps vs real faces", "lower"),
  ("fid/generator", "FID swaps vs generator samples", "lower"),
  ("pose/error", "pose error (deg, mean of yaw/pitch/roll)", "lower"),
  ("pose/yaw", "yaw error (deg)", "lower"),
  ("pose/pitch", "pitch error (deg)", "lower"),
  ("pose/roll", "roll error (deg)", "lower"),
  ("expression/error", "expression error (px at 256)", "lower"),
  ("reconstruction/psnr", "reconstruction PSNR (dB)", "higher"),
  ("reconstruction/ms_ssim", "reconstruction MS-SSIM", "higher"),
  ("similarity/id_to_out", "E_id similarity id -> out (trained against)", "higher"),
  ("similarity/attr_to_out", "E_id similarity attr -> out (trained against)", "lower"),
  ("examples", "pairs evaluated", ""),
)
ARROWS = {"higher": " (higher is better)", "lower": " (lower is better)", "": ""}


def splits(results: dict[str, Any]) -> list[str]:
  """The split names of a result (the entries that hold metrics)."""
  return [k for k, v in results.items() if k not in ("skipped", "nets") and isinstance(v, dict)]


def _cell(value: Any) -> str:
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return "-"
  if isinstance(value, int):
    return str(value)
  return f"{value:.4g}" if abs(value) < 1000 else f"{value:.1f}"


def markdown(results: dict[str, Any], title: str = "Evaluation") -> str:
  """The table (rows: metrics, columns: splits) with the skipped metrics and the measuring networks below it."""
  cols = splits(results)
  lines = [f"# {title}", "", "| metric | " + " | ".join(cols) + " |", "| --- |" + " ---: |" * len(cols)]
  for key, label, better in ROWS:
    if any(key in results[c] for c in cols):
      lines.append(f"| {label}{ARROWS[better]} | " + " | ".join(_cell(results[c].get(key)) for c in cols) + " |")
  if results.get("skipped"):
    lines += ["", "Skipped:"] + [f"- {group}: {why}" for group, why in results["skipped"].items()]
  if results.get("nets"):
    lines += ["", "Measured with:"] + [f"- {k}: {v}" for k, v in results["nets"].items()]
  return "\n".join(lines) + "\n"


def write(out: str | os.PathLike, results: dict[str, Any], title: str = "Evaluation") -> tuple[str, str]:
  """Writes `<out>.json` and `<out>.md` (out's own suffix replaced); returns both paths."""
  out = pathlib.Path(out)
  json_path, md_path = out.with_suffix(".json"), out.with_suffix(".md")
  json_path.parent.mkdir(parents=True, exist_ok=True)
  json_path.write_text(json.dumps(results, indent=2))
  md_path.write_text(markdown(results, title))
  return str(json_path), str(md_path)
