"""Eval-mode forms of a few operations that XLA:CPU runs slowly as written; the same functions.

The sampling program (eval mode) uses them; the train step keeps the plain forms, whose gradients
are the fast ones (the upsampled convolution excepted: `upsampled_conv` writes its gradient out).
Measured on this project's 2-core EPYC, official widths (benchmarks in README):

- `conv3x3_few_outputs`: a 3×3 convolution with a handful of output channels (the generator's last
  layer, 64 → 3) runs at ~10 GFLOP/s in XLA's Eigen kernels: 13.2 ms at 128×128, batch 4. As one
  matrix product to the 9 taps' outputs ([N·H·W, C] × [C, 9·D]) and a sum of the 9 shifted tap maps it
  takes 3.6 ms (and 1.9 instead of 6.4 ms at 64×64, batch 8). Slower from 16 outputs on.
- `upsampled_conv.conv3x3_of_upsampled` (chosen by `upsampled_form_pays`): a generator block's
  first convolution at its input's resolution, with phase kernels made once per loaded generator.
  Against upsample → convolution on the official generators' conv1 shapes
  (`benchmarks/upsampled_conv.py`, batch 1-8): 1.7-2.4x where the output is 32×32 or larger,
  1.1-1.9x at 8×8 and 16×16.
- `materialize`: XLA fuses a chain of elementwise operations into its consumer and recomputes the
  chain for every element the consumer reads. Before a nearest-neighbour upsampling that is 4 times
  per value (the whole ISLA-Norm of a block's input), and the noise maps' normal draw (an erf_inv per
  value) is recomputed for each of the C channels it is added to. A reduction is never fused into
  its consumers: `max(x, −inf)` over a new axis of 2 stores x once, exactly.

- `resize.upsample2_bilinear` (chosen by `upsample_stencil_pays`): a ×2 bilinear upsampling as its
  two-tap stencil, fused into the consumer (see resize.py).
- `rows_per_chunk`: a batch is sampled a few rows at a time (`jax.lax.map` over chunks of the vmapped
  rows), so that a layer's maps stay in cache. `benchmarks/sampling_chunks.py` (the same program both
  ways, alternating in one process; median over processes): 1.037x at 64×64 batch 8 (chunks of 4),
  1.076x at 128×128 batch 4 (one row at a time), 1.01x at 256×256 batch 2; the demo model at batch
  32, 8.4 against 9.3 ms per image. One row at a time is slower at 64×64 (29.5 against 28.1 ms in
  another A/B), hence a budget in pixels rather than one row always.

All are used on CPU only, where they were measured: GPUs and TPUs fuse and convolve differently,
and keep the plain forms until a device run shows these help there.
"""

import jax
import jax.numpy as jnp

FEW_OUTPUTS = 8  # up to this many output channels the tap form is faster (2-3.5x at 3 and 8)
CHUNK_PIXELS = 64 * 64 * 4  # image pixels per sampling chunk: ≤ 4 rows at 64×64, 1 from 128×128 on


def _on_cpu() -> bool:
  return jax.default_backend() == 'cpu'


def tap_form_pays(features: int, kernel_size: int) -> bool:
  """Whether an eval-mode convolution runs as `conv3x3_few_outputs`."""
  return kernel_size == 3 and features <= FEW_OUTPUTS and _on_cpu()


def upsampled_form_pays() -> bool:
  """Whether sampling runs 3×3 convolutions of upsampled inputs as `conv3x3_of_upsampled`.

  Only with phase kernels made ahead of time (`generator.sampling_variables`): made in every call
  they cost more than the form saves at batch 1 (19 ms for a 1024 → 512 kernel).
  """
  return _on_cpu()


def upsample_stencil_pays() -> bool:
  """Whether sampling runs ×2 bilinear upsamplings as `resize.upsample2_bilinear`."""
  return _on_cpu()


def rows_per_chunk(batch: int, image_size: int) -> int:
  """How many of a batch's rows sampling computes at once (all of them off CPU).

  A divisor of the batch: a remainder would be a second copy of the generator in the program (the
  compile doubles: 6.2 against 3.1 s at 64×64, batch 5 in 4 + 1). Where only one row divides
  below the budget (a prime batch at 64×64), all rows at once: one row at a time is slower there
  (41.9 against 33.8 ms per image at batch 5).
  """
  budget = CHUNK_PIXELS // (image_size * image_size)
  if not _on_cpu() or budget >= batch:
    return batch
  if budget <= 1:
    return 1
  rows = max(d for d in range(1, budget + 1) if batch % d == 0)
  return rows if rows > 1 else batch


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
