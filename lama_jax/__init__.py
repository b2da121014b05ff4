"""lama_jax: layout-to-image generation with Locality-Aware Mask Adaption, in JAX/Flax."""

__all__ = ['LayoutGenerator']


def __getattr__(name: str):
  # Lazy, so that `import lama_jax` stays light (no JAX until the API is used).
  if name == 'LayoutGenerator':
    from lama_jax.api import LayoutGenerator  # pylint: disable=g-import-not-at-top
    return LayoutGenerator
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
