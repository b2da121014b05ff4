"""Eval-mode forms of a few operations that XLA:CPU runs slowly as written; the same functions.

The sampling program (eval mode) uses them; the train step keeps the plain forms, whose gradients
are the fast ones. Measured on this project's 2-core EPYC, official widths (benchmarks in README):

- `conv3x3_few_outputs`: a 3×3 convolution with a handful of output channels (the generator's last
  layer, 64 → 3) runs at ~10 GFLOP/s in XLA's Eigen kernels: 13.2 ms at 128×128, batch 4. As one
  matrix product to the 9 taps' outputs ([N·H·W, C] × [C, 9·D]) and a sum of the 9 shifted tap maps it
  takes 3.6 ms (and 1.9 instead of 6.4 ms at 64×64, batch 8). Slower from 16 outputs on.
- `materialize`: XLA fuses a chain of elementwise operations into its consumer and recomputes the
  chain for every element the consumer reads. Before a nearest-neighbour upsampling that is 4 times
  per value (the whole ISLA-Norm of a block's input), and the noise maps' normal draw (an erf_inv per
  value) is recomputed for each of the C channels it is added to. A reduction is never fused into
  its consumers: `max(x, −inf)` over a new axis of 2 stores x once, exactly.

Both are used on CPU only, where they were measured: GPUs and TPUs fuse and convolve differently,
and keep the plain forms until a device run shows these help there.
"""

import jax
import jax.numpy as jnp

FEW_OUTPUTS = 8  # up to this many output channels the tap form is faster (2-3.5x at 3 and 8)


def _on_cpu() -> bool:
  return jax.default_backend() == 'cpu'


def tap_form_pays(features: int, kernel_size: int) -> bool:
  """Whether an eval-mode convolution runs as `conv3x3_few_outputs`."""
  return kernel_size == 3 and features <= FEW_OUTPUTS and _on_cpu()


def conv3x3_few_outputs(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'Same'-padded stride-1 3×3 convolution, NHWC × HWIO, as one matrix product and 9 shifted sums.

  Zero padding commutes with the per-pixel product, so padding the tap outputs equals padding x.
  """
  b, h, w, c = x.shape
  d = kernel.shape[-1]
  taps = jnp.dot(x, kernel.transpose(2, 0, 1, 3).reshape(c, 9 * d))  # [B, H, W, 9·D], tap-major
  taps = jnp.pad(taps, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = None
  for i in range(3):
    for j in range(3):
      k = (3 * i + j) * d
      tap = taps[:, i:i + h, j:j + w, k:k + d]
      out = tap if out is None else out + tap
  return out


def materialize(x: jax.Array) -> jax.Array:
  """x, stored once rather than recomputed inside every consumer (see the module docstring)."""
  if not _on_cpu():
    return x
  return jnp.max(jnp.stack([x, jnp.full_like(x, -jnp.inf)], axis=-1), axis=-1)
