"""The GAN's train state and its creation, replicated over the mesh."""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from lama_jax import models


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (models and optimizers are static, outside)."""
  step: jax.Array  # int32 scalar: number of train steps done
  g_params: Any
  g_state: Any  # {'batch_stats': ..., 'spectral': ...}
  g_opt_state: optax.OptState
  d_params: Any
  d_state: Any  # {'spectral': ...}
  d_opt_state: optax.OptState

  def generator_variables(self) -> dict:
    """G.apply-ready variables (what the checkpoint's 'generator' item holds)."""
    return {'params': self.g_params, **self.g_state}


def init_state(generator: models.Generator, discriminator: models.Discriminator,
               g_tx: optax.GradientTransformation, d_tx: optax.GradientTransformation,
               rng: jax.Array, image_size: int, max_objects: int) -> TrainState:
  """Initialises parameters, spectral-norm vectors, BatchNorm statistics and optimizer states."""
  x = models.dummy_inputs(image_size, batch=2, num_objects=max_objects, z_dim=generator.z_dim)
  g_key, d_key, n_key = jax.random.split(rng, 3)
  g_vars = generator.init({'params': g_key, 'noise': n_key}, x['z_obj'], x['boxes'], x['labels'],
                          x['z_im'], train=True)
  d_vars = discriminator.init({'params': d_key}, x['images'], x['boxes'], x['labels'], train=True)
  g_params = g_vars['params']
  g_state = {k: v for k, v in g_vars.items() if k != 'params'}
  d_params = d_vars['params']
  d_state = {k: v for k, v in d_vars.items() if k != 'params'}
  return TrainState(step=jnp.zeros((), jnp.int32), g_params=g_params, g_state=g_state,
                    g_opt_state=g_tx.init(g_params), d_params=d_params, d_state=d_state,
                    d_opt_state=d_tx.init(d_params))
