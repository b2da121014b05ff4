"""lama_jax: layout-to-image generation with Locality-Aware Mask Adaption, in JAX/Flax."""

import os

__all__ = ['LayoutGenerator']

# XLA:CPU (jaxlib 0.10) hands convolutions to YNNPACK fusions by default; there this model's
# convolution kernel gradients run at 12–35 GFLOP/s against 100–140 with XLA's Eigen convolutions,
# and the 64×64 train step (batch 8) takes 31.4 s instead of 17.3 s on a 2-core EPYC (README,
# "Speed"); sampling, batched or one image at a time (the studio), is faster on Eigen too. The flag
# only touches the CPU backend and only takes effect if it is set before JAX creates its backends; a
# value the user already chose is kept.
_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
if _YNN_FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_YNN_FLAG}=".strip()


# TensorFlow (tf.data only) prints start-up notices on import; keep them out of our commands' output
# unless the user asked for them. Its oneDNN notice shows whenever oneDNN is on, and oneDNN speeds up
# the neural-network ops TensorFlow runs, of which we run none.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')


def __getattr__(name: str):
  # Lazy, so that `import lama_jax` stays light (no JAX until the API is used).
  if name == 'LayoutGenerator':
    from lama_jax.inference.generator import LayoutGenerator  # pylint: disable=g-import-not-at-top
    return LayoutGenerator
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
