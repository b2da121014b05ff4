"""Resampling as small matrix products, with PyTorch's exact semantics.

`jax.image.resize` antialiases when it downsamples, which PyTorch's
`F.interpolate(mode='bilinear')` does not; the official model resizes masks both ways, so we build the
interpolation matrices ourselves. Each row has at most two non-zeros, so the products are exact and cheap,
and they are differentiable for free.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Interpolation weights must not drop to bf16 passes on TPU/GPU: masks feed every norm layer.
_PRECISION = jax.lax.Precision.HIGHEST


@functools.lru_cache(maxsize=None)
def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """[out, in] weights of PyTorch's bilinear resize with align_corners=False (no antialiasing)."""
  scale = in_size / out_size
  src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
  low = np.floor(src).astype(np.int64)
  low = np.minimum(low, in_size - 1)
  high = np.minimum(low + 1, in_size - 1)
  frac = src - low
  mat = np.zeros((out_size, in_size), np.float64)
  rows = np.arange(out_size)
  np.add.at(mat, (rows, low), 1.0 - frac)
  np.add.at(mat, (rows, high), frac)
  return mat


def resize_bilinear(x: jax.Array, height: int, width: int, *, h_axis: int = 1,
                    w_axis: int = 2) -> jax.Array:
  """Bilinear resize of two spatial axes of `x`, align_corners=False, like PyTorch."""
  in_h, in_w = x.shape[h_axis], x.shape[w_axis]
  if (in_h, in_w) == (height, width):
    return x
  dtype = x.dtype
  x = upcast(x)
  if in_h != height:
    x = jnp.moveaxis(jnp.tensordot(bilinear_matrix(in_h, height).astype(x.dtype), x, axes=((1,), (h_axis,)),
                                   precision=_PRECISION), 0, h_axis)
  if in_w != width:
    x = jnp.moveaxis(jnp.tensordot(bilinear_matrix(in_w, width).astype(x.dtype), x, axes=((1,), (w_axis,)),
                                   precision=_PRECISION), 0, w_axis)
  return x.astype(dtype)


def upcast(x: jax.Array) -> jax.Array:
  """Casts to at least float32 (float64 stays float64, for numerical comparisons under x64)."""
  return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour upsampling of an NHWC tensor by an integer factor."""
  return jnp.repeat(jnp.repeat(x, factor, axis=1), factor, axis=2)


def avg_pool2(x: jax.Array) -> jax.Array:
  """2×2 average pooling with stride 2 of an NHWC tensor (PyTorch's F.avg_pool2d(x, 2))."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def tent_weights(coords: jax.Array, size: int) -> jax.Array:
  """Bilinear weights of sample coordinates over `size` grid points: relu(1 − |coord − k|).

  Args:
    coords: float array of any shape, in pixel units.
    size: number of grid points.

  Returns:
    `coords.shape + (size,)`; grid points out of range simply get no weight (zero padding).
  """
  return tent(coords[..., None] - jnp.arange(size, dtype=coords.dtype))


def tent(offsets: jax.Array) -> jax.Array:
  """The bilinear weight of a grid point at `offsets` (pixel units) from the sample: relu(1 − |d|)."""
  return jax.nn.relu(1.0 - jnp.abs(offsets))
