"""`disentangle-jax convert NETWORK SRC DST`: upstream weights -> a converted-weights directory (Orbax + config).

Each ported network's package provides `convert_to(src, dst)`, which infers the architecture from the checkpoint
itself, checks every key and shape, and writes `third_party/common/converted.py`'s layout. SRC must be a file and
DST a new (or empty) directory; both are checked before anything is read. A file that is not the network's
checkpoint (truncated, another format, another architecture) is refused in one line naming it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence

from absl import app

from disentangle_jax.cli import _paths

NETWORKS: dict[str, str] = {
  "stylegan2": "disentangle_jax.third_party.stylegan2",
  "stylegan1": "disentangle_jax.third_party.stylegan1",
  "vggface2": "disentangle_jax.third_party.vggface2",
  "arcface": "disentangle_jax.third_party.arcface",
  "fan": "disentangle_jax.third_party.fan",
  "mediapipe_facemesh": "disentangle_jax.third_party.mediapipe_facemesh",
  "blazeface": "disentangle_jax.third_party.mediapipe_facemesh",
  "inception_v3": "disentangle_jax.nets.inception",
  "fid_inception": "disentangle_jax.third_party.fid_inception",
  "official": "disentangle_jax.export",  # SRC: a folder of the original TF2 release's weights; DST: an export
}


def main(argv: Sequence[str]) -> None:
  if len(argv) != 4 or argv[1] not in NETWORKS:
    raise app.UsageError(f"usage: disentangle-jax convert {{{'|'.join(NETWORKS)}}} SRC DST")
  _, network, src, dst = argv
  if network == "official":
    if not os.path.isdir(src):
      raise app.UsageError(f"{src}: not a directory (convert official takes the release's weights folder)")
  elif network == "stylegan1" and os.path.isfile(f"{src}.index"):
    pass  # a TF-format checkpoint, given by its prefix
  else:
    _paths.check_input_files([src], "checkpoint")
  _paths.check_output_dir(dst)
  module = importlib.import_module(NETWORKS[network])
  # A release folder loads like any model (`disentangle_jax.load`), so converting it is exporting it.
  convert_to = getattr(module, {"blazeface": "convert_to_blazeface", "official": "export"}.get(network, "convert_to"))
  convert_to(src, dst)
  print(f"converted {network} weights from {src} into {dst}")
