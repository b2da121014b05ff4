"""Sums over many elements that keep float32 precision (pairwise summation), forward and backward.

On XLA:CPU a float32 `jnp.mean` accumulates in order, so its rounding error grows with the length of the
sum: the variance of a 64×64×16 GroupNorm group (65,536 terms) came out 7.4e-5 off in relative terms,
and LAMA's adapted mask up to 7.7x further from the exact value than the official float32 output
(PyTorch's CPU kernels sum pairwise or accumulate in double). Gradients have the same sums in their
transposed broadcasts: a normalisation layer's statistics, a scalar α multiplying a whole activation.
Adding the two halves of each reduced axis until one element is left costs about one extra pass and
bounds the error by ~log2(n) roundings, on every backend. The math is unchanged: the same sum, another
association order."""

import functools
from typing import Sequence

import jax
import jax.numpy as jnp


def pairwise_sum(x: jax.Array, axes: Sequence[int], keepdims: bool = False) -> jax.Array:
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


def pairwise_mean(x: jax.Array, axes: Sequence[int], keepdims: bool = False) -> jax.Array:
  """Mean of `x` over `axes` through `pairwise_sum`."""
  count = 1
  for a in axes:
    count *= x.shape[a]
  return pairwise_sum(x, axes, keepdims) / count


def pairwise_broadcast(x: jax.Array, shape: Sequence[int]) -> jax.Array:
  """`jnp.broadcast_to(x, shape)` whose gradient sums over the broadcast axes pairwise.

  The transpose of a broadcast is a sum over as many terms as the broadcast made copies: for the
  statistics of a normalisation layer that is every pixel of the batch.
  """
  return _broadcast(x, tuple(shape), tuple(x.shape))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _broadcast(x, shape, in_shape):
  del in_shape
  return jnp.broadcast_to(x, shape)


def _broadcast_fwd(x, shape, in_shape):
  return _broadcast(x, shape, in_shape), None


def _broadcast_bwd(shape, in_shape, _, g):
  lead = len(shape) - len(in_shape)
  axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(in_shape)
                                    if n == 1 and shape[lead + i] != 1)
  return (pairwise_sum(g, axes, keepdims=True).reshape(in_shape),)


_broadcast.defvjp(_broadcast_fwd, _broadcast_bwd)
