"""Sums over many elements that keep float32 precision (pairwise summation), forward and backward.

On XLA:CPU a float32 `jnp.mean` accumulates in order, so its rounding error grows with the length of the
sum: the variance of a 64×64×16 GroupNorm group (65,536 terms) came out 7.4e-5 off in relative terms,
and LAMA's adapted mask up to 7.7x further from the exact value than the official float32 output
(PyTorch's CPU kernels sum pairwise or accumulate in double). Gradients have the same sums in their
transposed broadcasts: a normalisation layer's statistics, a scalar α multiplying a whole activation.
Adding the two halves of each reduced axis until one element is left costs about one extra pass and
bounds the error by ~log2(n) roundings. The math is unchanged: the same sum, another association
order.

Where it runs: on CPU, every such sum. On GPUs and TPUs, whose reductions are trees already
(XLA:GPU splits long ones into levels), only the sampling program's GroupNorms (`everywhere=True`:
LAMA's adapted mask and the generator's Batch-Group norms, outputs the fidelity tests hold to the
official float32 error). Training there sums its batch and group statistics and their gradients
with the backend's reduction: the halvings were chains of ~20 small kernels per sum, thousands per
step; lowered for CUDA, the 128/20 bf16 train step has 21,134 ops instead of 30,320 (3,893 slices
→ 80). On CPU, where they stay, summing plainly would take the 64×64 step's compile from 58 to 41 s
and its kernels from 7,278 to 5,947, at the cost of the drift above. `pairwise_everywhere()` halves
every sum on every backend, as before, to compare.
"""

import contextlib
import functools
from typing import Sequence

import jax
import jax.numpy as jnp

_everywhere = False  # set inside `pairwise_everywhere()`


@contextlib.contextmanager
def pairwise_everywhere():
  """Programs traced inside it sum pairwise on every backend, as before (not thread-safe: a
  trace-time switch; `benchmark --pairwise_sums=everywhere`)."""
  global _everywhere
  before, _everywhere = _everywhere, True
  try:
    yield
  finally:
    _everywhere = before


def pairwise_sum(x: jax.Array, axes: Sequence[int], keepdims: bool = False,
                 everywhere: bool = False) -> jax.Array:
  """Sum of `x` over `axes`: `halving_sum` on CPU (on every backend with `everywhere`), elsewhere
  the backend's own reduction."""
  if everywhere or _everywhere:
    return halving_sum(x, axes, keepdims)
  return jax.lax.platform_dependent(
      x, cpu=lambda x: halving_sum(x, axes, keepdims),
      default=lambda x: jnp.sum(x, tuple(axes), keepdims=keepdims))


def halving_sum(x: jax.Array, axes: Sequence[int], keepdims: bool = False) -> jax.Array:
  """Sum of `x` over `axes`, each axis halved and added to itself until it has length 1.

  Args:
    x: array to reduce.
    axes: axes to sum over (non-negative or negative).
    keepdims: keep the summed axes with length 1, as `jnp.sum` does.

  Returns:
    The sum, like `x.sum(axes, keepdims=keepdims)`.
  """
  axes = sorted(a % x.ndim for a in axes)
  for ax in axes:
    while x.shape[ax] > 1:
      n = x.shape[ax]
      if n % 2:  # pad with one zero so the halves have equal length
        x = jnp.pad(x, [(0, 1) if i == ax else (0, 0) for i in range(x.ndim)])
        n += 1
      x = (jax.lax.slice_in_dim(x, 0, n // 2, axis=ax) +
           jax.lax.slice_in_dim(x, n // 2, n, axis=ax))
  return x if keepdims else jnp.squeeze(x, tuple(axes))


def pairwise_mean(x: jax.Array, axes: Sequence[int], keepdims: bool = False,
                  everywhere: bool = False) -> jax.Array:
  """Mean of `x` over `axes` through `pairwise_sum`."""
  count = 1
  for a in axes:
    count *= x.shape[a]
  return pairwise_sum(x, axes, keepdims, everywhere) / count


def pairwise_broadcast(x: jax.Array, shape: Sequence[int], everywhere: bool = False) -> jax.Array:
  """`jnp.broadcast_to(x, shape)` whose gradient sums over the broadcast axes with `pairwise_sum`.

  The transpose of a broadcast is a sum over as many terms as the broadcast made copies: for the
  statistics of a normalisation layer that is every pixel of the batch.
  """
  return _broadcast(x, tuple(shape), tuple(x.shape), everywhere)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _broadcast(x, shape, in_shape, everywhere):
  del in_shape, everywhere
  return jnp.broadcast_to(x, shape)


def _broadcast_fwd(x, shape, in_shape, everywhere):
  return _broadcast(x, shape, in_shape, everywhere), None


def _broadcast_bwd(shape, in_shape, everywhere, _, g):
  lead = len(shape) - len(in_shape)
  axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(in_shape)
                                    if n == 1 and shape[lead + i] != 1)
  return (pairwise_sum(g, axes, keepdims=True, everywhere=everywhere).reshape(in_shape),)


_broadcast.defvjp(_broadcast_fwd, _broadcast_bwd)
