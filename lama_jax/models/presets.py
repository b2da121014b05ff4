"""Model sizes per resolution, as data (REFERENCE.md "Sizes")."""

import jax
import jax.numpy as jnp

from lama_jax.models.discriminator import Discriminator
from lama_jax.models.generator import Generator

GENERATOR_CHANNELS = {
    64: (16, 8, 4, 2, 1),
    128: (8, 8, 4, 4, 2, 1),
    256: (16, 8, 8, 4, 4, 2, 1),
}
EMBED_DIM = {64: 128, 128: 160, 256: 192}
Z_DIM = 128


def make_generator(image_size: int, ch: int = 64, num_classes: int = 184, **overrides) -> Generator:
  """The official generator of `image_size`; `overrides` set any other Generator field."""
  fields = dict(channels=GENERATOR_CHANNELS[image_size], ch=ch, num_classes=num_classes,
                embed_dim=EMBED_DIM[image_size], z_dim=Z_DIM)
  fields.update(overrides)
  return Generator(**fields)


def make_discriminator(image_size: int, ch: int = 64, num_classes: int = 184,
                       **overrides) -> Discriminator:
  """The official discriminator of `image_size`."""
  return Discriminator(image_size=image_size, ch=ch, num_classes=num_classes, **overrides)


def make_models(image_size: int, num_classes: int = 184, ch: int = 64, d_ch: int = 64,
                dtype: str = 'float32', **generator_options) -> tuple[Generator, Discriminator]:
  """The generator and discriminator of a `config.model` (`make_models(**config.model)`).

  Args:
    image_size: 64, 128 or 256.
    num_classes: categories including 0 = padding.
    ch: the generator's base width; d_ch: the discriminator's.
    dtype: the computation dtype of both (parameters stay float32).
    **generator_options: further Generator fields (mask_hidden, mask_adaption, lama_local_blocks,
      norm, noise).
  """
  dtype = jnp.dtype(dtype)
  return (make_generator(image_size, ch, num_classes, dtype=dtype, **generator_options),
          make_discriminator(image_size, d_ch, num_classes, dtype=dtype))


def dummy_inputs(image_size: int, batch: int = 1, num_objects: int = 8, z_dim: int = Z_DIM):
  """Zero-filled inputs of the right shapes, for `init` and `eval_shape`."""
  return dict(
      z_obj=jnp.zeros((batch, num_objects, z_dim), jnp.float32),
      boxes=jnp.full((batch, num_objects, 4), 0.5, jnp.float32),
      labels=jnp.ones((batch, num_objects), jnp.int32),
      z_im=jnp.zeros((batch, z_dim), jnp.float32),
      images=jnp.zeros((batch, image_size, image_size, 3), jnp.float32))


def _num_params(tree) -> int:
  return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


def count_params(image_size: int, num_classes: int = 184, ch: int = 64) -> dict[str, int]:
  """Trainable parameters of the official G and D (spectral-norm vectors and BN statistics excluded)."""
  g = make_generator(image_size, ch, num_classes)
  d = make_discriminator(image_size, ch, num_classes)
  x = dummy_inputs(image_size)
  rngs = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  g_vars = jax.eval_shape(lambda: g.init(rngs, x['z_obj'], x['boxes'], x['labels'], x['z_im']))
  d_vars = jax.eval_shape(lambda: d.init(rngs, x['images'], x['boxes'], x['labels']))
  return {'generator': _num_params(g_vars['params']),
          'discriminator': _num_params(d_vars['params'])}


# Generator fields saved in `generator.json` beside every checkpoint that holds a generator.
SPEC_FIELDS = ('channels', 'ch', 'num_classes', 'embed_dim', 'z_dim', 'mask_hidden',
               'mask_adaption', 'lama_local_blocks', 'norm', 'noise')


def generator_spec(generator: Generator) -> dict:
  """The JSON-serialisable description of a generator's architecture."""
  spec = {k: getattr(generator, k) for k in SPEC_FIELDS}
  spec['channels'] = list(spec['channels'])
  return spec


def generator_from_spec(spec: dict, **overrides) -> Generator:
  """Rebuilds a generator from `generator_spec` output; unknown keys (e.g. max_objects) are ignored."""
  fields = {k: spec[k] for k in SPEC_FIELDS if k in spec}
  fields['channels'] = tuple(fields['channels'])
  fields.update(overrides)
  return Generator(**fields)
