"""Parameter initialisers computed on the host.

Every random-number call site costs XLA a fresh threefry kernel to compile (~0.5 s each on a small CPU),
and the models have a few hundred parameters and spectral-norm vectors: drawing them inside the jitted
`init` made it take most of a minute. These initialisers draw with NumPy from the key's bits through
`jax.pure_callback`, so `init` compiles in seconds and stays deterministic for a key (and identical on
every device and host).
"""

import jax
import jax.numpy as jnp
import numpy as np


def _host_generator(key_data: np.ndarray) -> np.random.Generator:
  return np.random.default_rng(np.asarray(key_data, np.uint32).ravel().tolist())


def _on_host(key: jax.Array, shape, dtype, fill) -> jax.Array:
  shape = tuple(int(s) for s in shape)
  out = jax.ShapeDtypeStruct(shape, dtype)
  return jax.pure_callback(lambda kd: np.asarray(fill(_host_generator(kd), shape), dtype), out,
                           jax.random.key_data(key))


def normal(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """N(0, 1) samples."""
  return _on_host(key, shape, dtype, lambda rng, s: rng.standard_normal(s))


def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
  # Rows = every axis but the last, as flax's orthogonal initialiser; QR with the sign fix so the
  # result is uniform (Haar) over orthogonal matrices.
  rows, cols = int(np.prod(shape[:-1])), shape[-1]
  a = rng.standard_normal((max(rows, cols), min(rows, cols)))
  q, r = np.linalg.qr(a)
  q *= np.sign(np.diag(r))
  if rows < cols:
    q = q.T
  return q.reshape(shape)


def orthogonal(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """An orthogonal matrix over (all leading axes) × (last axis), like `torch.nn.init.orthogonal_`."""
  return _on_host(key, shape, dtype, _orthogonal)


def unit_row(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """PyTorch's orthogonal init of a (1, C, 1, 1) tensor: one random unit row (softplus ≈ 0.69)."""
  return _on_host(key, shape, dtype, lambda rng, s: _orthogonal(rng, (1,) + s).reshape(s))
