"""FAN-2D (1adrianb/face-alignment 1.5.0) landmark network: frozen NNX port, converters, differentiable decoding.

    from disentangle_jax.third_party import fan
    net = fan.load("weights/fan_2d")             # or a 2DFAN4-*.pth.tar, or fan.init(fan.FAN4, seed=0)
    heatmaps = net.heatmaps(images)               # images: float32 [B, H, W, 3] in [-1, 1] -> [B, 64, 64, 68]
    points = net.landmarks(images)                # [B, 68, 2] (x, y) in the 256x256 input frame, differentiable
    loss_points = points[:, fan.NON_JAW_INDICES]  # what the landmark loss compares
"""

from disentangle_jax.third_party.common.state_dict import CheckpointMismatchError
from disentangle_jax.third_party.common.torch_pickle import CheckpointFormatError
from disentangle_jax.third_party.fan.convert import (convert, convert_to, init, load, read_state_dict,
                                                     to_state_dict)
from disentangle_jax.third_party.fan.decode import hard_argmax, soft_argmax
from disentangle_jax.third_party.fan.model import FAN, FAN4, Config

Module = FAN

# The 68-point (iBUG 300-W) layout: 0-16 jaw contour, 17-26 brows, 27-35 nose, 36-47 eyes, 48-67 mouth.
JAW_INDICES = tuple(range(17))
NON_JAW_INDICES = tuple(range(17, 68))

__all__ = [
    "CheckpointFormatError", "CheckpointMismatchError", "Config", "FAN", "FAN4", "JAW_INDICES", "Module",
    "NON_JAW_INDICES", "convert", "convert_to", "hard_argmax", "init", "load", "read_state_dict", "soft_argmax",
    "to_state_dict",
]
