"""Dataset builders and the synthetic shapes set.

Kept import-light on purpose: `shapes` runs in spawned worker processes that must not pay for
TensorFlow. The TFDS builders register themselves when `lama_jax.datasets.builders` is imported
(`prepare` and `input_pipeline` do).
"""
