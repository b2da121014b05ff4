"""The jitted GAN step: D update, then G update scored by the updated D (the official order).

Per step, as the official loop does it:
  1. G forward in train mode on fresh z (BatchNorm statistics and spectral-norm vectors update every
     step, also in the D-only iterations).
  2. D(real) and D(fake.detach()) as two applies threading D's spectral state; hinge loss; Adam.
  3. The G loss scores the same fakes with the updated D (a third apply, so a third power iteration);
     its gradient is pulled back through the step-1 forward. G's parameters, its optimizer state and
     the third apply's spectral state are kept only when the iteration index within the epoch is
     ≥ d_only_iters (official: idx > 30), chosen with `jnp.where` on a traced flag.
"""
from collections.abc import Mapping, Sequence
import functools
from typing import Any

import flax.traverse_util
import jax
import jax.numpy as jnp
import optax

from lama_jax.training import losses
from lama_jax.training import optimizers
from lama_jax import models
from lama_jax.models.mask import masks_to_layout
from lama_jax.training.state import TrainState


def _tree_select(pred: jax.Array, new, old):
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), new, old)


def _mean_of(params, match) -> dict[str, jax.Array]:
  flat = flax.traverse_util.flatten_dict(params, sep='/')
  return {k: v for k, v in flat.items() if match(k)}


def scalar_summaries(g_params, d_params) -> dict[str, jax.Array]:
  """Means of the ReZero/ISLA-Norm α's and the BGN ρ's, by role."""
  groups = {
      'G/alpha_res': lambda k: k.startswith('res') and k.endswith('/alpha') and k.count('/') == 1,
      'G/alpha_norm': lambda k: k.startswith('res') and k.endswith('/alpha') and k.count('/') == 2,
      'G/alpha_mask': lambda k: k.startswith('mask_regress') and k.endswith('/alpha'),
      'G/alpha_lama': lambda k: k.startswith('lama') and k.endswith('alpha'),
      'G/rho': lambda k: k.endswith('/rho'),
  }
  out = {}
  for name, match in groups.items():
    leaves = list(_mean_of(g_params, match).values())
    if leaves:
      out[name] = jnp.mean(jnp.stack([jnp.mean(x) for x in leaves]))
  d_alpha = list(_mean_of(d_params, lambda k: k.endswith('/alpha')).values())
  if d_alpha:
    out['D/alpha'] = jnp.mean(jnp.stack([jnp.mean(x) for x in d_alpha]))
  return out


def _d_update(state: TrainState, images: jax.Array, fake: jax.Array, boxes: jax.Array,
              labels: jax.Array, factor: jax.Array, *, discriminator: models.Discriminator,
              d_tx: optax.GradientTransformation, lambda_obj: float, lambda_img: float):
  """Step 2: D's hinge loss on real and (detached) fake images, and its Adam update.

  Returns:
    (loss, loss terms, mean D outputs, D's spectral state after its two applies, new D parameters,
    new D optimizer state).
  """
  def d_loss_fn(d_params):
    (r_im, r_obj, valid), s1 = discriminator.apply(
        {'params': d_params, **state.d_state}, images, boxes, labels, train=True,
        mutable=['spectral'])
    (f_im, f_obj, _), s2 = discriminator.apply(
        {'params': d_params, **s1}, fake, boxes, labels, train=True, mutable=['spectral'])
    loss, terms = losses.d_hinge_loss(r_im, r_obj, f_im, f_obj, valid, lambda_obj, lambda_img)
    outs = {'d_out_real': r_im.mean(), 'd_out_fake': f_im.mean(),
            'd_out_robj': losses.masked_mean(r_obj, valid),
            'd_out_fobj': losses.masked_mean(f_obj, valid)}
    return loss, (terms, outs, s2)

  (loss, (terms, outs, d_state)), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
      state.d_params)
  updates, opt_state = d_tx.update(grads, state.d_opt_state, state.d_params)
  updates = jax.tree.map(lambda u: u * factor, updates)
  return loss, terms, outs, d_state, optax.apply_updates(state.d_params, updates), opt_state


def train_step(state: TrainState, batch: dict[str, jax.Array], key: jax.Array, *,
               generator: models.Generator, discriminator: models.Discriminator,
               g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
               steps_per_epoch: int, d_only_iters: int, milestones: Sequence[int],
               lr_gamma: float, base_lrs: dict[str, float], lambda_obj: float, lambda_img: float,
               batch_sharding: Any = None) -> tuple[TrainState, dict[str, jax.Array]]:
  """One GAN step on a global batch; see the module docstring. Returns the new state and metrics."""
  images, boxes, labels = batch['image'], batch['boxes'], batch['labels']
  b, o = labels.shape
  key = jax.random.fold_in(key, state.step)
  k_zo, k_zi, k_noise = jax.random.split(key, 3)
  if 'z_obj' in batch:  # noise given with the batch: reproducing a recorded iteration (parity tests)
    z_obj, z_im = batch['z_obj'], batch['z_im']
  else:
    z_obj = jax.random.normal(k_zo, (b, o, generator.z_dim), jnp.float32)
    z_im = jax.random.normal(k_zi, (b, generator.z_dim), jnp.float32)
  if batch_sharding is not None:
    z_obj = jax.lax.with_sharding_constraint(z_obj, batch_sharding)
    z_im = jax.lax.with_sharding_constraint(z_im, batch_sharding)

  # 1. G forward (train mode), kept as a VJP for step 3.
  # Ground-truth masks (the mask-to-image experiment of Sec. 3) replace the layout-to-mask stage.
  gt_masks = (masks_to_layout(boxes, batch['masks'], generator.image_size) if 'masks' in batch
              else None)

  def g_forward(g_params):
    (fake, mask, raw), new_state = generator.apply(
        {'params': g_params, **state.g_state}, z_obj, boxes, labels, z_im, train=True,
        rngs={'noise': k_noise}, mutable=['batch_stats', 'spectral'], masks=gt_masks)
    return fake, (mask, raw, new_state)

  fake, g_vjp, (mask, raw_mask, g_state) = jax.vjp(g_forward, state.g_params, has_aux=True)

  # 2. D update on real and detached fake images.
  factor = optimizers.lr_factor(state.step, milestones, lr_gamma)
  d_loss, d_terms, d_outs, d_state, d_params, d_opt_state = _d_update(
      state, images, jax.lax.stop_gradient(fake), boxes, labels, factor, discriminator=discriminator,
      d_tx=d_tx, lambda_obj=lambda_obj, lambda_img=lambda_img)

  # 3. G update: the same fakes scored by the updated D.
  def g_loss_fn(fake_images):
    (f_im, f_obj, valid), s3 = discriminator.apply(
        {'params': d_params, **d_state}, fake_images, boxes, labels, train=True,
        mutable=['spectral'])
    loss, terms = losses.g_hinge_loss(f_im, f_obj, valid, lambda_obj, lambda_img)
    return loss, (terms, s3)

  (g_loss, (g_terms, d_state_g)), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_vjp(fake_grad)
  g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
  g_updates = jax.tree.map(lambda u: u * factor, g_updates)
  g_params = optax.apply_updates(state.g_params, g_updates)

  update_g = (state.step % steps_per_epoch) >= d_only_iters
  new_state = state.replace(
      step=state.step + 1,
      g_params=_tree_select(update_g, g_params, state.g_params),
      g_state=g_state,
      g_opt_state=_tree_select(update_g, g_opt_state, state.g_opt_state),
      d_params=d_params,
      d_state=_tree_select(update_g, d_state_g, d_state),
      d_opt_state=d_opt_state)

  metrics = {'D/d_loss': d_loss, 'G/g_loss': g_loss, 'G/g_updated': update_g.astype(jnp.float32)}
  metrics.update({f'D/{k}': v for k, v in {**d_terms, **d_outs}.items()})
  metrics['D/d_out_gap'] = d_outs['d_out_real'] - d_outs['d_out_fake']
  metrics['D/d_out_obj_gap'] = d_outs['d_out_robj'] - d_outs['d_out_fobj']
  metrics.update({f'G/{k}': v for k, v in g_terms.items()})
  metrics['G/g_out_fake'] = -g_terms['g_loss_fake']
  metrics['G/g_out_obj'] = -g_terms['g_loss_obj']
  metrics.update(scalar_summaries(new_state.g_params, new_state.d_params))
  metrics.update({f'LR/{k}': lr * factor for k, lr in base_lrs.items()})
  return new_state, metrics


def make_train_step(generator: models.Generator, discriminator: models.Discriminator,
                    g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
                    steps_per_epoch: int, schedule: Mapping[str, Any], loss: Mapping[str, float],
                    base_lrs: dict[str, float], batch_sharding: Any = None):
  """Binds the static parts of `train_step`; the result takes (state, batch, key).

  Args:
    generator, discriminator, g_tx, d_tx: the models and their optimizers.
    steps_per_epoch: iterations per epoch (the schedule is in epochs, as the official one).
    schedule: `config.schedule` (milestone_epochs, gamma, d_only_iters).
    loss: `config.loss` (lambda_obj, lambda_img).
    base_lrs: the groups' base learning rates (`optimizers.group_learning_rates`), for logging.
    batch_sharding: the batch's sharding, to place the drawn z alike.
  """
  return functools.partial(
      train_step, generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      steps_per_epoch=steps_per_epoch, d_only_iters=schedule['d_only_iters'],
      milestones=tuple(int(e * steps_per_epoch) for e in schedule['milestone_epochs']),
      lr_gamma=schedule['gamma'], base_lrs=base_lrs, batch_sharding=batch_sharding, **loss)
