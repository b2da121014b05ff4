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


def group_learning_rates(g_lr: float, d_lr: float, g_slow_mult: float = 0.1,
                         d_alpha_mult: float = 0.2, **unused) -> dict[str, float]:
  """The base learning rate of each parameter group (takes `**config.optim`)."""
  del unused  # Adam's betas and eps
  return {'g': g_lr, 'g_slow': g_lr * g_slow_mult, 'd': d_lr, 'd_alpha': d_lr * d_alpha_mult}


def make_optimizers(g_lr: float, d_lr: float, g_slow_mult: float = 0.1, d_alpha_mult: float = 0.2,
                    b1: float = 0.0, b2: float = 0.999, eps: float = 1e-8
                    ) -> tuple[optax.GradientTransformation, optax.GradientTransformation]:
  """The generator's and the discriminator's optimizers (`**config.optim`; base rates, no decay)."""
  lrs = group_learning_rates(g_lr, d_lr, g_slow_mult, d_alpha_mult)
  g_tx = optax.multi_transform({k: _adam(lrs[k], b1, b2, eps) for k in ('g', 'g_slow')},
                               generator_labels)
  d_tx = optax.multi_transform({k: _adam(lrs[k], b1, b2, eps) for k in ('d', 'd_alpha')},
                               discriminator_labels)
  return g_tx, d_tx


def lr_factor(step: jax.Array, milestones: Sequence[int], gamma: float = 0.1) -> jax.Array:
  """gamma^(number of milestones ≤ step): the MultiStepLR factor at a global step."""
  step = jnp.asarray(step)
  n = sum((step >= m).astype(jnp.int32) for m in milestones) if milestones else 0
  return jnp.asarray(gamma, jnp.float32) ** n
