r"""The paper's setup: FFHQ StyleGAN at 256x256 and the original implementation's hyper-parameters.

Launch (after converting the pretrained weights into ./weights, see the README):

  disentangle-jax generate-data --config=configs/paper.py --out=data/ffhq256
  disentangle-jax train --config=configs/paper.py --workdir=runs/paper

Presets, comma-separated after a colon: `configs/paper.py:generator=stylegan1,landmarks=facemesh,runlocal`
  generator=stylegan2|stylegan1   which frozen generator renders the faces (v1 is the paper's own choice)
  landmarks=fan|facemesh          which frozen landmark net drives the landmark loss
  id_encoder=vggface2|arcface     E_id: the paper's VGGFace2 ResNet-50, or ArcFace IR-SE50 (512-d; then the
                                  evaluation's ArcFace identity numbers measure the network trained against)
  id_head=pool|proj               VGGFace2's output: the 2048-d pooled feature or the Keras model's 512-d projection
                                  (ArcFace has one 512-d embedding, which both names give)
  runlocal                        a few steps at the full sizes, to check a setup end to end
"""

from __future__ import annotations

import ml_collections

from disentangle_jax import errors

# Where `disentangle-jax convert <kind> SRC DST` puts each E_id's weights in the README's commands.
ID_ENCODER_WEIGHTS = {"vggface2": "weights/vggface2_resnet50", "arcface": "weights/arcface_ir_se50"}


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses "a=1,b=x,flag" into a ConfigDict over `defaults` (a bare name sets a boolean to True)."""
  out = ml_collections.ConfigDict(defaults)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    if key not in out:
      raise errors.ConfigError(f"unknown preset {key!r}; known: {sorted(out.keys())}")
    default = out[key]
    out[key] = True if not value else type(default)(value) if not isinstance(default, bool) else value == "True"
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The paper config; `arg` selects presets (see the module docstring)."""
  preset = parse_arg(arg, generator="stylegan2", landmarks="fan", id_encoder="vggface2", id_head="pool", runlocal=False)
  if preset.id_encoder not in ID_ENCODER_WEIGHTS:
    raise errors.ConfigError(f"unknown id_encoder preset {preset.id_encoder!r}; known: {sorted(ID_ENCODER_WEIGHTS)}")
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Frozen generator G; `weights` is a converted directory or any checkpoint its `load` accepts.
  c.generator = ml_collections.ConfigDict()
  c.generator.kind = preset.generator
  c.generator.weights = f"weights/{preset.generator}_ffhq256"
  c.generator.arch = ml_collections.ConfigDict()  # sizes for random init; empty when the weights define them
  c.generator.noise_mode = "const"

  # Frozen identity encoder E_id.
  c.id_encoder = ml_collections.ConfigDict()
  c.id_encoder.kind = preset.id_encoder
  c.id_encoder.weights = ID_ENCODER_WEIGHTS[preset.id_encoder]
  c.id_encoder.head = preset.id_head
  c.id_encoder.arch = ml_collections.ConfigDict()

  # Trainable attribute encoder E_attr (InceptionV3); `weights` optionally a torchvision ImageNet state_dict.
  c.attr_encoder = ml_collections.ConfigDict()
  c.attr_encoder.kind = "inception_v3"
  c.attr_encoder.weights = "weights/inception_v3_imagenet"
  c.attr_encoder.arch = ml_collections.ConfigDict()
  c.attr_encoder.toy_start = False  # toy world only: `prepare` trains the start point (configs/toy.py)

  # Frozen landmark network for the landmark loss.
  c.landmarks = ml_collections.ConfigDict()
  c.landmarks.kind = preset.landmarks
  c.landmarks.weights = "weights/fan_2d" if preset.landmarks == "fan" else "weights/mediapipe_facemesh"
  c.landmarks.arch = ml_collections.ConfigDict()

  # Trainable mapper M (concat(id, attr) -> w) and latent discriminator D_W.
  c.mapper = ml_collections.ConfigDict()
  c.mapper.hidden = (2048, 1024, 512)
  c.mapper.negative_slope = 0.2
  c.discriminator = ml_collections.ConfigDict()
  c.discriminator.hidden = (256, 128, 64)
  c.discriminator.negative_slope = 0.2

  c.loss = ml_collections.ConfigDict()
  c.loss.identity = 1.0
  c.loss.landmarks = 0.001
  c.loss.reconstruction = 0.02
  c.loss.ms_ssim_weight = 0.84
  c.loss.l1_weight = 0.16
  c.loss.mask_sigma = 80.0  # inverse-Gaussian L1 mask, in pixels at 256px (scaled with the resolution)
  c.loss.adversarial = 1.0
  c.loss.r1_gamma = 10.0

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 5e-5  # E_attr + M on the non-adversarial loss
  c.optim.adversarial_lr_scale = 0.1  # their adversarial update
  c.optim.discriminator_lr_scale = 0.4  # D_W
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-7  # Keras' Adam default, which the original used
  c.optim.adversarial_every = 2  # D_W and the adversarial update run every other step

  c.data = ml_collections.ConfigDict()
  c.data.dir = f"data/{preset.generator}_ffhq256"
  c.data.num_train = 70_000
  c.data.num_validation = 10_000
  c.data.seed = 0
  c.data.truncation_psi = 0.7
  c.data.truncation_cutoff = 8
  c.data.examples_per_shard = 1000
  c.data.generate_batch_size = 16
  c.data.cross_every = 3  # every third batch is a cross batch (I_id != I_attr); the others are same-image
  c.data.shuffle_buffer = 10_000

  c.per_device_batch_size = 6
  c.num_steps = 500_000
  c.log_every = 100
  c.image_every = 2_000
  c.eval_every = 10_000
  c.eval_batches = 50
  c.score_pairs = 256  # held-out pairs of the toy world's exact score (generator.kind='toy' only)
  c.checkpoint_every = 5_000
  c.keep_checkpoints = 3

  # The paper metrics by networks the model never trained against (all off by default; weights are paths).
  # Training's periodic evaluation logs ArcFace similarities and FID on `fid_samples` swaps when the weights are set;
  # `disentangle-jax evaluate` reads all five (its flags override them).
  c.eval = ml_collections.ConfigDict()
  c.eval.arcface_weights = ml_collections.FieldReference(None, field_type=str)  # ArcFace IR-SE50
  c.eval.fid_weights = ml_collections.FieldReference(None, field_type=str)  # FID InceptionV3 (pt_inception)
  c.eval.fid_samples = 256  # swaps (and validation images) per periodic FID
  c.eval.fid_reference = ml_collections.FieldReference(None, field_type=str)  # real faces for `evaluate`'s FID
  c.eval.pose_landmarks_weights = ml_collections.FieldReference(None, field_type=str)  # the net training did not use

  c.compute = ml_collections.ConfigDict()
  c.compute.frozen_dtype = "float32"  # or "bfloat16": E_id, G and the landmark net in bf16
  c.compute.remat_generator = False

  if preset.runlocal:
    c.num_steps = 20
    c.log_every = c.image_every = c.eval_every = c.checkpoint_every = 10
    c.eval_batches = 2
    c.data.num_train = 256
    c.data.num_validation = 64
    c.data.examples_per_shard = 64
    c.data.shuffle_buffer = 256
  return c
