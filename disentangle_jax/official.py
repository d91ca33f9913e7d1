"""The authors' released TF2 model (YotamNitzan/ID-disentanglement) as an `InferenceModel`, and its export.

Their trainer saves, in one folder, `AttrEncoder<reason>.h5` (E_attr: Keras InceptionV3), `LatentMappingNetwork
<reason>.h5` (M) and, for training, `W_D<reason>.h5` (D_W), where `<reason>` is empty or a suffix such as
`_best_id_epoch_3`. G is StyleGAN v1 FFHQ-256 from the TF-format checkpoint `stylegan_G_256x256_synthesis` and E_id
is `vggface2.h5`'s 512-d projection (M's input is 512 + 2048 = 2560); both are taken from the folder when it holds
them, else from the config (`configs/paper.py:generator=stylegan1,id_head=proj` by default).

`read(folder)` gives what `model.build` (the one builder) needs to fill E_attr and M from the files;
`disentangle_jax.load(folder)` builds the model, and `disentangle-jax convert official SRC DST` writes its export.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import ml_collections

from disentangle_jax import errors
from disentangle_jax import trees
from disentangle_jax.configs import paper
from disentangle_jax.nets import inception
from disentangle_jax.nets import mapper

CONFIG_ARG = "generator=stylegan1,id_head=proj"


class ReleaseError(errors.UserError, ValueError):
  """A folder that is not (or not only) the original release's weights."""


def _one(folder: pathlib.Path, stem: str, required: bool) -> pathlib.Path | None:
  found = sorted(folder.glob(f"{stem}*.h5"))
  exact = folder / f"{stem}.h5"
  if exact in found:
    return exact
  if len(found) > 1:
    raise ReleaseError(
      f"{folder}: several {stem}*.h5 files ({', '.join(p.name for p in found)}); keep one, or "
      f"name the one to use {stem}.h5"
    )
  if not found and required:
    raise ReleaseError(f"{folder}: no {stem}*.h5: not a folder of the original release's weights")
  return found[0] if found else None


def find(folder: str | os.PathLike) -> dict[str, pathlib.Path | None]:
  """The release files in `folder`: attr_encoder, mapper (required), discriminator, generator, id_encoder."""
  folder = pathlib.Path(folder)
  generators = sorted(p.with_suffix("") for p in folder.glob("stylegan_G_*_synthesis.index"))
  vgg = folder / "vggface2.h5"
  return {
    "attr_encoder": _one(folder, "AttrEncoder", True),
    "mapper": _one(folder, "LatentMappingNetwork", True),
    "discriminator": _one(folder, "W_D", False),
    "generator": generators[-1] if generators else None,
    "id_encoder": vgg if vgg.is_file() else None,
  }


def is_release(folder: str | os.PathLike) -> bool:
  """True if `folder` holds an `AttrEncoder*.h5` and a `LatentMappingNetwork*.h5`."""
  folder = pathlib.Path(folder)
  return folder.is_dir() and any(folder.glob("AttrEncoder*.h5")) and any(folder.glob("LatentMappingNetwork*.h5"))


def config_for(files: dict[str, Any], config: ml_collections.ConfigDict | None = None) -> ml_collections.ConfigDict:
  """`config` (default: the paper config with StyleGAN v1 and E_id's 512-d head) pointed at the folder's G / E_id."""
  if config is None:
    config = paper.get_config(CONFIG_ARG)
  config = ml_collections.ConfigDict(config.to_dict())
  if files["generator"] is not None:
    config.generator.kind, config.generator.weights = "stylegan1", str(files["generator"])
  if files["id_encoder"] is not None:
    config.id_encoder.kind, config.id_encoder.weights = "vggface2", str(files["id_encoder"])
  config.attr_encoder.weights = ""  # E_attr comes from the release, not from an ImageNet start point
  return config


def read(
  folder: str | os.PathLike, config: ml_collections.ConfigDict | None = None
) -> tuple[ml_collections.ConfigDict, dict[str, Any], dict[str, Any]]:
  """(config, trained parameters, E_attr's architecture) of the release in `folder`, for `model.build`.

  E_attr and M come from its files; G and E_id as `config_for` says. `disentangle_jax.load(folder)` builds the
  model from these, and `disentangle-jax convert official SRC DST` exports it.
  """
  files = find(folder)
  attr_config, attr_params = inception.convert(files["attr_encoder"])
  m = mapper.load(files["mapper"])
  config = config_for(files, config)
  config.mapper.hidden = tuple(int(layer.kernel.shape[1]) for layer in list(m.layers)[:-1])
  config.mapper.negative_slope = float(m.negative_slope)
  return config, {"attr_encoder": attr_params, "mapper": trees.params_of(m)}, attr_config.to_dict()
