r"""Tiny end-to-end config for a CPU: every network small and randomly initialised, 32x32 faces.

The real architectures (StyleGAN, VGGFace2, FAN, InceptionV3) at tiny widths; the toy world (`configs/toy.py`, the
default) builds on it:

  disentangle-jax train --config=configs/smoke.py --workdir=runs/smoke

It renders its own small dataset with the random generator if absent, then trains a few hundred steps in a few
minutes, writing TensorBoard metrics, image grids and checkpoints into the workdir. The pictures are not faces
(no pretrained weights); the losses going down shows the whole method runs.
Presets as in paper.py: `configs/smoke.py:generator=stylegan1,landmarks=facemesh,id_encoder=arcface`.
"""

from __future__ import annotations

import ml_collections

from disentangle_jax.configs import paper


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = paper.parse_arg(arg, generator="stylegan2", landmarks="fan", id_encoder="vggface2", id_head="pool")
  c = paper.get_config(",".join(f"{k}={v}" for k, v in preset.items()))
  c.generator.weights = ""  # random init at the sizes below
  if preset.generator == "stylegan2":
    c.generator.arch = ml_collections.ConfigDict(
      dict(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_base=256, channel_max=32)
    )
  else:
    c.generator.arch = ml_collections.ConfigDict(
      dict(resolution=32, z_dim=32, w_dim=32, mapping_layers=2, channel_max=32)
    )
  c.id_encoder.weights = ""
  if preset.id_encoder == "vggface2":
    c.id_encoder.arch = ml_collections.ConfigDict(dict(width=8, layers=(1, 1, 1, 1), input_size=64, proj_dim=16))
  else:  # ArcFace at 16 px: the 32 px faces get the identity crop, as 256 px ones do for the real 112 px network
    c.id_encoder.arch = ml_collections.ConfigDict(
      dict(stem_width=8, widths=(8, 16, 24, 32), units=(1, 1, 1, 1), se_reduction=4, embedding_dim=16, input_size=16)
    )
  c.attr_encoder.weights = ""
  c.attr_encoder.arch = ml_collections.ConfigDict(dict(width_multiplier=0.125, input_size=75))
  c.landmarks.weights = ""
  if preset.landmarks == "fan":
    c.landmarks.arch = ml_collections.ConfigDict(dict(num_modules=1, width=16, input_size=64))
  else:
    c.landmarks.weights = "weights/mediapipe_facemesh"  # real weights: the net is small enough for a CPU
  # The official code's batch- and unit-specific semantics (configs/paper.py) are left out here: the L1 term is
  # the batch mean, landmarks are in the net's own pixels, Adam is optax's, images render from the stored w, the
  # cross step is the last of three, and no best checkpoints are kept (the toy world tunes its weights on these).
  c.landmarks.units_px = 0
  c.loss.l1_reduction = "mean"
  c.optim.adam = "optax"
  c.data.render_from = "w"
  del c.data["cross_phase"]
  c.keep_best_checkpoints = 0
  c.mapper.hidden = (64, 64, 32)
  c.discriminator.hidden = (32, 16, 8)
  c.loss.mask_sigma = 80.0

  c.data.dir = ""  # default: <workdir>/data
  c.data.num_train = 512
  c.data.num_validation = 64
  c.data.examples_per_shard = 128
  c.data.generate_batch_size = 32
  c.data.shuffle_buffer = 512

  c.per_device_batch_size = 2
  c.num_steps = 300
  c.log_every = 25
  c.image_every = 100
  c.eval_every = 150
  c.eval_batches = 2
  c.checkpoint_every = 100
  c.keep_checkpoints = 2
  return c
