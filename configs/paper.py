r"""The paper's setup as the authors' TF2 code trains it: StyleGAN v1 FFHQ-256 and their hyper-parameters.

Every value below is the official implementation's (YotamNitzan/ID-disentanglement; a comment cites the file and
line), so that `train` with this config takes their training step: `tests/test_official_step.py` checks one step
of each kind, loss by loss and weight by weight, against their `Trainer.train_epoch`. The README's table "where we
differ from the official code, and why" lists what remains different on purpose (e.g. FAN in place of their
unpublished landmark regressor).

Launch (after converting the pretrained weights into ./weights, see the README):

  disentangle-jax generate-data --config=configs/paper.py --out=data/stylegan1_ffhq256
  disentangle-jax train --config=configs/paper.py --workdir=runs/paper

Presets, comma-separated after a colon: `configs/paper.py:generator=stylegan2,landmarks=facemesh,runlocal`
  generator=stylegan1|stylegan2   the frozen generator (v1: the official one; v2: the modern variant)
  landmarks=fan|facemesh          the frozen landmark net driving the landmark loss (both in the official units)
  id_encoder=vggface2|arcface     E_id: the paper's VGGFace2 ResNet-50, or ArcFace IR-SE50 (512-d; then the
                                  evaluation's ArcFace identity numbers measure the network trained against)
  id_head=proj|pool               VGGFace2's output: the Keras model's 512-d `dim_proj` (official) or the 2048-d pool
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
  preset = parse_arg(arg, generator="stylegan1", landmarks="fan", id_encoder="vggface2", id_head="proj", runlocal=False)
  if preset.id_encoder not in ID_ENCODER_WEIGHTS:
    raise errors.ConfigError(f"unknown id_encoder preset {preset.id_encoder!r}; known: {sorted(ID_ENCODER_WEIGHTS)}")
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Frozen generator G; `weights` is a converted directory or any checkpoint its `load` accepts. The official G is
  # StyleGAN v1 FFHQ-256 read from the TF checkpoint `stylegan_G_256x256_synthesis` (main.py:78), const noise
  # (arglib.py:32, `--const_noise` on by default; model/stylegan.py:167).
  c.generator = ml_collections.ConfigDict()
  c.generator.kind = preset.generator
  c.generator.weights = f"weights/{preset.generator}_ffhq256"
  c.generator.arch = ml_collections.ConfigDict()  # sizes for random init; empty when the weights define them
  c.generator.noise_mode = "const"

  # Frozen identity encoder E_id: the Keras VGGFace2 model's `dim_proj` output (model/id_encoder.py:19, the layer
  # before the classifier), L2-normalised (:94): 512-d, so M's input is 512 + 2048 = 2560 (latent_mapping.py:13).
  c.id_encoder = ml_collections.ConfigDict()
  c.id_encoder.kind = preset.id_encoder
  c.id_encoder.weights = ID_ENCODER_WEIGHTS[preset.id_encoder]
  if preset.id_encoder == "vggface2" and preset.id_head == "proj":
    c.id_encoder.weights = "weights/vggface2.h5"  # the Keras model the official code loads (it has `dim_proj`)
  c.id_encoder.head = preset.id_head
  c.id_encoder.arch = ml_collections.ConfigDict()

  # Trainable attribute encoder E_attr: Keras' InceptionV3(include_top=False, pooling='avg') from its ImageNet
  # weights (model/attr_encoder.py:14), fed [-1, 1] images resized to 299 (:22-23). `weights`: the file Keras
  # downloads for it (or a torchvision state_dict / converted directory; '' for a random init).
  c.attr_encoder = ml_collections.ConfigDict()
  c.attr_encoder.kind = "inception_v3"
  c.attr_encoder.weights = "weights/inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
  c.attr_encoder.arch = ml_collections.ConfigDict()
  c.attr_encoder.toy_start = False  # toy world only: `prepare` trains the start point (configs/toy.py)

  # Frozen landmark network for the landmark loss. Their regressor reports (x, y) in its 160 px input
  # (model/landmarks.py:31-32, postprocess x 160) and drops the 17 jaw points (:114); `units_px = 160` rescales
  # every net's coordinates to that frame (FAN: x 160 / 256), so the loss weight keeps the official value.
  c.landmarks = ml_collections.ConfigDict()
  c.landmarks.kind = preset.landmarks
  c.landmarks.weights = "weights/fan_2d" if preset.landmarks == "fan" else "weights/mediapipe_facemesh"
  c.landmarks.arch = ml_collections.ConfigDict()
  c.landmarks.units_px = 160

  # Trainable mapper M (concat(id, attr) -> w; model/latent_mapping.py:15-21) and latent discriminator D_W
  # (model/discriminator.py:14-18).
  c.mapper = ml_collections.ConfigDict()
  c.mapper.hidden = (2048, 1024, 512)
  c.mapper.negative_slope = 0.2
  c.discriminator = ml_collections.ConfigDict()
  c.discriminator.hidden = (256, 128, 64)
  c.discriminator.negative_slope = 0.2

  c.loss = ml_collections.ConfigDict()
  c.loss.identity = 1.0  # trainer.py:57 (lambda_id)
  c.loss.landmarks = 0.001  # trainer.py:59, in the 160 px units above
  c.loss.reconstruction = 0.02  # trainer.py:55 (lambda_pixel)
  c.loss.ms_ssim_weight = 0.84  # trainer.py:196
  c.loss.l1_weight = 0.16  # trainer.py:196
  c.loss.l1_reduction = "sum"  # trainer.py:33: MeanAbsoluteError(Reduction.SUM): summed over the batch of 6
  c.loss.mask_sigma = 80.0  # trainer.py:38: inverse-Gaussian L1 mask, sigma in pixels at 256 px
  c.loss.adversarial = 1.0  # trainer.py:53 (lambda_gan, not --unified)
  c.loss.r1_gamma = 10.0  # trainer.py:60

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 5e-5  # trainer.py:23, E_attr + M on the non-adversarial loss
  c.optim.adversarial_lr_scale = 0.1  # trainer.py:26, their adversarial update
  c.optim.discriminator_lr_scale = 0.4  # trainer.py:27, D_W
  c.optim.attr_encoder_lr_scale = 1.0  # trainer.py:23: E_attr at M's rate (one optimiser for both)
  c.optim.adam = "keras"  # trainer.py:25-27: tf.keras Adam (eps added to the uncorrected sqrt(v))
  c.optim.b1 = 0.9  # Keras' Adam defaults
  c.optim.b2 = 0.999
  c.optim.eps = 1e-7
  c.optim.adversarial_every = 2  # trainer.py:110-117: D_W and the adversarial update on even steps

  c.data = ml_collections.ConfigDict()
  c.data.dir = f"data/{preset.generator}_ffhq256"
  c.data.num_train = 70_000  # arglib.py:105
  c.data.num_validation = 10_000
  c.data.seed = 0
  c.data.truncation_psi = 0.7  # utils/generate_fake_data.py:70
  c.data.truncation_cutoff = 8  # model/stylegan.py:69 (Truncation's default, the first 8 of 14 rows)
  c.data.render_from = "ws"  # utils/generate_fake_data.py:44-45: images from all 14 rows of the truncated ws
  c.data.examples_per_shard = 1000
  c.data.generate_batch_size = 16
  c.data.cross_every = 3  # arglib.py:98: one cross batch (I_id != I_attr) in three
  c.data.cross_phase = 0  # trainer.py:72: the cross steps are 0, 3, 6, ...
  c.data.shuffle_buffer = 10_000

  c.per_device_batch_size = 6  # arglib.py:35
  c.num_steps = 500_000
  c.log_every = 100
  c.image_every = 2_000
  c.eval_every = 1_000  # arglib.py:119 (--test_frequency)
  c.eval_batches = 50  # arglib.py:121 (--test_size)
  c.score_pairs = 256  # held-out pairs of the toy world's exact score (generator.kind='toy' only)
  c.checkpoint_every = 5_000
  c.keep_checkpoints = 3
  c.keep_best_checkpoints = 2  # trainer.py:377-387: best by landmark error and by identity preservation
  c.early_stop_evaluations = 0  # trainer.py:89 / arglib.py:123 (--not_improved_exit, default: never)

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
