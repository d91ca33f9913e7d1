"""A toy world with known ground truth for measuring disentanglement exactly (the dSprites of this method).

No pretrained face network is available offline, so a run on random StyleGAN weights shows nothing recognisable.
Here every image comes from known factors: `generator` is a differentiable cartoon-face renderer usable as G
(config `generator.kind = "toy"`), and `generator.factors(g, w)` reads the identity factors (face shape, skin,
hair, eye colour) and attribute factors (pose, expression, light) of any w exactly. `render` draws the factors.
"""

from disentangle_jax import errors


class NotConvertibleError(errors.UserError, ValueError):
  """A toy network has no upstream checkpoint format: only directories written by this package load."""
