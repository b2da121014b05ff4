"""Models: the LAMA generator, the combined discriminator and their building blocks."""

from lama_jax.models.discriminator import Discriminator
from lama_jax.models.generator import Generator
from lama_jax.models.presets import (EMBED_DIM, GENERATOR_CHANNELS, count_params, dummy_inputs,
                                     generator_from_spec, generator_spec, make_discriminator,
                                     make_generator, make_models)

__all__ = ['Discriminator', 'Generator', 'EMBED_DIM', 'GENERATOR_CHANNELS', 'count_params',
           'dummy_inputs', 'generator_from_spec', 'generator_spec', 'make_discriminator',
           'make_generator', 'make_models']
