"""Winograd F(2×2, 3×3): the train step's wide 3×3 convolutions on CPU in 16 matrix products.

A 'same'-padded stride-1 3×3 convolution is, for every 2×2 block of outputs, the 4×4 input patch
around it transformed (Bᵀ d B), multiplied point by point with the transformed kernel (G g Gᵀ) and
transformed back (Aᵀ m A) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).
Over a batch the point-by-point products are 16 matrix products [tiles, C] × [C, D]: 16 multiplies per
4 outputs where the direct form has 36, 2.25x fewer FLOPs. The same function, rounded differently:
float32 results stay within ~1e-6 of the direct convolution's scale (tests/test_winograd.py).

Where it is used, and why only there: the transforms are memory-bound, so it pays where the
products dominate, i.e. wide inputs. On this project's 2-core EPYC, where XLA:CPU's Eigen kernels run
every 3×3 layer at ~190 GFLOP/s, the whole 64×64 train step (official width, batch 8; alternating
processes) took 11.3-12.4 s with direct convolutions, 9.2-10.9 s with this form from 512 input
channels on, 8.3-8.6 s from 256 on, and 8.7 / 9.0 s from 128 / 64 on (and a 131 s compile from 128).
Layer by layer (`benchmarks/winograd_layers.py`: the step's pattern of forward, input and weight
gradients) it is 1.3x faster for 512 → 512 at 32×32 and 1024 → 1024 at 16×16 (batch 8) and slower
for small maps (0.8x at 8×8 with batch 8, hence the rows threshold). Its gradient is the autodiff of
the three steps, which shares the transformed input and output gradient between the input and weight
gradients: most of its gain is there.

CPU only and float32 only, like `sampling_forms`: cuDNN and the TPU pick their own algorithms, and in
bfloat16 the transforms' rounding would be 3 bits coarser.
"""

import contextlib

import jax
import jax.numpy as jnp

MIN_INPUT_CHANNELS = 256  # from narrower inputs on the step gets slower (see the docstring)
MIN_ROWS = 2048  # batch × height × width: below it the 16 products are too small to pay
_direct_only = False  # set inside `direct_form()`


@contextlib.contextmanager
def direct_form():
  """Programs traced inside it use direct convolutions everywhere, here and in `upsampled_conv`
  (not thread-safe: a trace-time switch). The benchmark counts the model's FLOPs this way, the same on every backend."""
  global _direct_only
  before, _direct_only = _direct_only, True
  try:
    yield
  finally:
    _direct_only = before


def direct_only() -> bool:
  """Whether a program is being traced inside `direct_form()`."""
  return _direct_only


def winograd_pays(x_shape: tuple[int, ...], kernel_size: int, dtype) -> bool:
  """Whether a train-step convolution of an NHWC input of this shape runs as Winograd."""
  b, h, w, c = x_shape
  return (not _direct_only and kernel_size == 3 and h % 2 == 0 and w % 2 == 0
          and c >= MIN_INPUT_CHANNELS and b * h * w >= MIN_ROWS and jnp.dtype(dtype) == jnp.float32
          and jax.default_backend() == 'cpu')


def _tile_rows(even: jax.Array, odd: jax.Array, axis: int) -> list[jax.Array]:
  """Bᵀ applied along `axis` to the 4-wide windows that start at every even position.

  `even`/`odd` hold the padded input's even and odd positions along `axis`, so the window starting
  at 2t is (d0, d1, d2, d3) = (even[t], odd[t], even[t+1], odd[t+1]).
  """
  n = even.shape[axis] - 1
  d0 = jax.lax.slice_in_dim(even, 0, n, axis=axis)
  d2 = jax.lax.slice_in_dim(even, 1, n + 1, axis=axis)
  d1 = jax.lax.slice_in_dim(odd, 0, n, axis=axis)
  d3 = jax.lax.slice_in_dim(odd, 1, n + 1, axis=axis)
  return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _input_tiles(x: jax.Array) -> jax.Array:
  """[B, H, W, C] → the transformed 4×4 input tiles, [16, B·H/2·W/2, C]."""
  b, h, w, c = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  by_row_parity = padded.reshape(b, h // 2 + 1, 2, w + 2, c)
  tiles = []
  for rows in _tile_rows(by_row_parity[:, :, 0], by_row_parity[:, :, 1], axis=1):
    by_col_parity = rows.reshape(b, h // 2, w // 2 + 1, 2, c)
    tiles += _tile_rows(by_col_parity[:, :, :, 0], by_col_parity[:, :, :, 1], axis=2)
  return jnp.stack(tiles).reshape(16, -1, c)


def _kernel_tiles(kernel: jax.Array) -> jax.Array:
  """[3, 3, C, D] → G g Gᵀ, [16, C, D]."""
  c, d = kernel.shape[2:]

  def g(k0, k1, k2):
    return [k0, 0.5 * (k0 + k1 + k2), 0.5 * (k0 - k1 + k2), k2]

  rows = g(kernel[0], kernel[1], kernel[2])  # 4 × [3, C, D]
  return jnp.stack([t for r in rows for t in g(r[0], r[1], r[2])]).reshape(16, c, d)


def _output(products: jax.Array, b: int, h: int, w: int) -> jax.Array:
  """Aᵀ m A on [16, B·H/2·W/2, D] → [B, H, W, D]."""
  m = products.reshape(4, 4, b, h // 2, w // 2, products.shape[-1])
  row_pairs = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])
  out = [jnp.stack([r[0] + r[1] + r[2], r[1] - r[2] - r[3]], axis=3) for r in row_pairs]
  return jnp.stack(out, axis=2).reshape(b, h, w, -1)  # [B, H/2, 2, W/2, 2, D]


def conv3x3_winograd(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'Same'-padded stride-1 3×3 convolution, NHWC × HWIO; H and W even."""
  b, h, w, _ = x.shape
  products = jnp.einsum('pnc,pcd->pnd', _input_tiles(x), _kernel_tiles(kernel))
  return _output(products, b, h, w)
