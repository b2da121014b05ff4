"""Adam with per-parameter-group learning rates and the official step decay.

Groups (by parameter path, as the official code picks them by name):
  generator:     'g'        everything else,        lr = g_lr
                 'g_slow'   path contains 'mapping' or 'rho', lr = g_lr · g_slow_mult (0.1)
  discriminator: 'd'        everything else,        lr = d_lr
                 'd_alpha'  path contains 'alpha',  lr = d_lr · d_alpha_mult (0.2)

The decay (×0.1 at the milestone steps) multiplies the updates by a factor computed from the global
step inside the train step, not from each optimizer's own update count: G skips its update during the
D-only iterations, so its Adam count (and bias correction, like PyTorch's per-optimizer step) lags the
global step, while the official schedule is per epoch.
"""
from collections.abc import Sequence

import flax.traverse_util
import jax
import jax.numpy as jnp
import optax

G_SLOW_KEYS = ('mapping', 'rho')
D_ALPHA_KEYS = ('alpha',)


def _labels(params, slow_keys: Sequence[str], slow: str, default: str):
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  labels = {k: slow if any(s in k for s in slow_keys) else default for k in flat}
  return flax.traverse_util.unflatten_dict(labels, sep='/')


def generator_labels(params):
  return _labels(params, G_SLOW_KEYS, 'g_slow', 'g')


def discriminator_labels(params):
  return _labels(params, D_ALPHA_KEYS, 'd_alpha', 'd')


def _adam(lr: float, b1: float, b2: float, eps: float) -> optax.GradientTransformation:
  return optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps), optax.scale(-lr))


def make_optimizers(g_lr: float, d_lr: float, g_slow_mult: float = 0.1, d_alpha_mult: float = 0.2,
                    b1: float = 0.0, b2: float = 0.999, eps: float = 1e-8
                    ) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """The generator's and the discriminator's optimizers (base learning rates, no decay)."""
  g_tx = optax.multi_transform({'g': _adam(g_lr, b1, b2, eps),
                                'g_slow': _adam(g_lr * g_slow_mult, b1, b2, eps)},
                               generator_labels)
  d_tx = optax.multi_transform({'d': _adam(d_lr, b1, b2, eps),
                                'd_alpha': _adam(d_lr * d_alpha_mult, b1, b2, eps)},
                               discriminator_labels)
  return g_tx, d_tx


def lr_factor(step: jax.Array, milestones: Sequence[int], gamma: float = 0.1) -> jax.Array:
  """gamma^(number of milestones ≤ step): the MultiStepLR factor at a global step."""
  step = jnp.asarray(step)
  n = sum((step >= m).astype(jnp.int32) for m in milestones) if milestones else 0
  return jnp.asarray(gamma, jnp.float32) ** n
