"""lama_jax: layout-to-image generation with Locality-Aware Mask Adaption, in JAX/Flax."""
