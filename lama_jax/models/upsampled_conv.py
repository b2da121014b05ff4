"""A 3×3 convolution of a ×2 nearest-upsampled input, computed at the input's own resolution.

A generator block's first convolution reads its input upsampled ×2 (nearest), where every value
repeats 4 times: at each output pixel only 4 distinct input values fall under the 3×3 window, so the
same output is a 2×2 convolution of the input at its own resolution with one summed kernel per
output phase (`upsampling_phases`). 2.25x fewer multiplies, and the upsampled map is never built.

Sampling (eval mode) uses it on CPU with the phase kernels made once per loaded generator
(`sampling_forms.upsampled_form_pays`). The CPU train step uses it too (`train_form_pays`), with the
phase kernels made from the weight in every step (a few sums) and a gradient written out in fast
forms: XLA's own gradient of the 2×2 convolution took 4-58x longer than the whole upsample →
convolution it replaces (the 128/4 blocks, on a loaded machine; likely its weight gradient, a
convolution whose window is the whole map). Written out, the input gradient is one more 2×2
convolution and the kernel gradient four matrix products.

On this project's 2-core EPYC, a conv1's forward and gradient at the official 64/8 and 128/4
blocks (`benchmarks/upsampled_conv.py --train`, upsample → convolution as the step runs it, direct
or Winograd, against this form): 1.13-1.23x for 8×8 inputs, 1.57-2.12x from 16×16 on, and slower for
4×4 inputs (0.67-0.80x: 25 phase positions for 16 pixels, and small products), hence
`MIN_INPUT_PIXELS`. The whole 128/4 step: 1.05x (both forms compiled in one process, alternating).
"""

import jax
import jax.numpy as jnp

from lama_jax.models import winograd

MIN_INPUT_PIXELS = 64  # height × width of the input: from 8×8 on the train step's form pays
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def upsampling_phases(kernel: jax.Array) -> jax.Array:
  """[3, 3, C, D] HWIO → the 2×2 kernels of `conv3x3_of_upsampled`, [2, 2, C, 4·D].

  Along one axis, output 2i + a of the upsampled map's 3-tap convolution reads input rows i − 1, i
  (a = 0: taps k0 and k1 + k2) or i, i + 1 (a = 1: taps k0 + k1 and k2). The 4·D outputs are the
  phases (a, b) row-major, each D wide.
  """
  c, d = kernel.shape[2:]

  def by_phase(k: jax.Array, axis: int) -> jax.Array:  # [..., 3 taps, ...] → [2 phases, ..., 2, ...]
    k0, k1, k2 = (jax.lax.index_in_dim(k, i, axis, keepdims=False) for i in range(3))
    return jnp.stack([jnp.stack([k0, k1 + k2], axis), jnp.stack([k0 + k1, k2], axis)])

  rows = by_phase(kernel, 0)  # [a, u, 3, C, D]
  both = by_phase(rows, 2)  # [b, a, u, v, C, D]
  return both.transpose(2, 3, 4, 1, 0, 5).reshape(2, 2, c, 4 * d)


def train_form_pays(x_shape: tuple[int, ...], dtype) -> bool:
  """Whether a train-step convolution of this upsampled NHWC input runs as `conv3x3_of_upsampled`
  (CPU and float32, where it was measured, like `winograd`; never inside `winograd.direct_form`)."""
  _, h, w, _ = x_shape
  return (not winograd.direct_only() and h * w >= MIN_INPUT_PIXELS
          and jnp.dtype(dtype) == jnp.float32 and jax.default_backend() == 'cpu')


@jax.custom_vjp
def conv3x3_of_upsampled(x: jax.Array, phases: jax.Array) -> jax.Array:
  """`conv3x3(upsample_nearest(x, 2), kernel)`, 'same'-padded, with `phases = upsampling_phases(kernel)`.

  One 2×2 convolution of x padded by 1 gives every phase at (h + 1) × (w + 1) positions; phase
  (a, b) of low-resolution pixel (i, j) is at (i + a, j + b).
  """
  b, h, w, _ = x.shape
  d = phases.shape[-1] // 4
  y = jax.lax.conv_general_dilated(x, phases, window_strides=(1, 1), padding=[(1, 1), (1, 1)],
                                   dimension_numbers=_NHWC)
  y = y.reshape(b, h + 1, w + 1, 2, 2, d)
  rows = [jnp.stack([y[:, a:a + h, c:c + w, a, c] for c in range(2)], axis=3) for a in range(2)]
  return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, d)  # [B, h, a, w, b, D] → [B, 2h, 2w, D]


def _phase_grid(dy: jax.Array, h: int, w: int) -> jax.Array:
  """The output gradient [B, 2h, 2w, D] where the 2×2 convolution wrote it: [B, h + 1, w + 1, 4·D],
  phase (a, b) of pixel (i, j) at (i + a, j + b), zeros at the positions no output read."""
  b, _, _, d = dy.shape
  dy = dy.reshape(b, h, 2, w, 2, d)
  return jnp.concatenate(
      [jnp.pad(dy[:, :, a, :, c, :], ((0, 0), (a, 1 - a), (c, 1 - c), (0, 0)))
       for a in range(2) for c in range(2)], axis=-1)


def _forward(x: jax.Array, phases: jax.Array) -> tuple[jax.Array, tuple]:
  return conv3x3_of_upsampled(x, phases), (x, phases)


def _gradient(saved: tuple, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
  x, phases = saved
  _, h, w, c = x.shape
  grid = _phase_grid(dy, h, w)
  # x's gradient: the grid correlated with the flipped kernels, inputs and outputs swapped (only
  # the positions of x itself, not of its padding).
  flipped = jnp.flip(phases, (0, 1)).transpose(0, 1, 3, 2)
  dx = jax.lax.conv_general_dilated(grid, flipped, window_strides=(1, 1), padding='VALID',
                                    dimension_numbers=_NHWC)
  # Each tap's kernel gradient: the padded input under that tap, times the grid, over all pixels.
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  flat = grid.reshape(-1, grid.shape[-1])
  dphases = jnp.stack([
      jnp.stack([jnp.dot(padded[:, u:u + h + 1, v:v + w + 1, :].reshape(-1, c).T, flat)
                 for v in range(2)])
      for u in range(2)])
  return dx.astype(x.dtype), dphases.astype(phases.dtype)


conv3x3_of_upsampled.defvjp(_forward, _gradient)
