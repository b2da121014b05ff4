"""Hinge losses of the official recipe, with object scores averaged over valid objects only."""

import jax
import jax.numpy as jnp


def masked_mean(x: jax.Array, valid: jax.Array) -> jax.Array:
  """Mean of `x` over the entries where `valid`; 0 when none is (sum(x·valid) / max(Σvalid, 1))."""
  valid = valid.astype(x.dtype)
  return (x * valid).sum() / jnp.maximum(valid.sum(), 1.0)


def d_hinge_loss(real_im: jax.Array, real_obj: jax.Array, fake_im: jax.Array, fake_obj: jax.Array,
                 valid: jax.Array, lambda_obj: float = 1.0, lambda_img: float = 0.1
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """d = λ_obj·(relu(1 − D_obj(real)) + relu(1 + D_obj(fake))) + λ_img·(image terms), each a mean.

  Args:
    real_im, fake_im: [B] image scores.
    real_obj, fake_obj: [B, O] object scores.
    valid: [B, O] bool, objects that are not padding.
    lambda_obj, lambda_img: loss weights (official 1 and 0.1).

  Returns:
    The loss and its terms, for logging.
  """
  terms = {
      'd_loss_real': jax.nn.relu(1.0 - real_im).mean(),
      'd_loss_fake': jax.nn.relu(1.0 + fake_im).mean(),
      'd_loss_robj': masked_mean(jax.nn.relu(1.0 - real_obj), valid),
      'd_loss_fobj': masked_mean(jax.nn.relu(1.0 + fake_obj), valid),
  }
  loss = (lambda_obj * (terms['d_loss_robj'] + terms['d_loss_fobj']) +
          lambda_img * (terms['d_loss_real'] + terms['d_loss_fake']))
  return loss, terms


def g_hinge_loss(fake_im: jax.Array, fake_obj: jax.Array, valid: jax.Array,
                 lambda_obj: float = 1.0, lambda_img: float = 0.1
                 ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """g = −(λ_obj·mean D_obj(fake) + λ_img·mean D_img(fake))."""
  terms = {'g_loss_fake': -fake_im.mean(), 'g_loss_obj': -masked_mean(fake_obj, valid)}
  return lambda_obj * terms['g_loss_obj'] + lambda_img * terms['g_loss_fake'], terms
