"""Pairwise sums: the same sums as jnp.sum, with float32 rounding that does not grow with length."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lama_jax.models import numerics
from lama_jax.models.layers import BatchNorm, group_norm
from lama_jax.models.numerics import pairwise_broadcast, pairwise_mean, pairwise_sum


@pytest.mark.parametrize('axes,keepdims', [((0,), False), ((1, 3), True), ((0, 1, 2, 3), False),
                                           ((-1,), True)])
def test_pairwise_sum_is_the_sum(axes, keepdims):
  x = np.random.default_rng(0).standard_normal((3, 5, 7, 6)).astype(np.float32)  # odd lengths pad
  got = np.asarray(pairwise_sum(jnp.asarray(x), axes, keepdims))
  want = x.astype(np.float64).sum(axes, keepdims=keepdims)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(np.asarray(pairwise_mean(jnp.asarray(x), axes, keepdims)),
                             x.astype(np.float64).mean(axes, keepdims=keepdims), rtol=1e-6, atol=1e-6)


def test_pairwise_sum_gradient_is_ones():
  x = jnp.arange(30.0).reshape(5, 6)
  np.testing.assert_array_equal(jax.grad(lambda a: pairwise_sum(a, (0, 1)))(x), np.ones((5, 6)))


def test_long_float32_variance_keeps_its_precision():
  """A GroupNorm group of LAMA's 64×64 grid (65,536 terms): the case that lost 7e-5 on XLA:CPU."""
  rng = np.random.default_rng(1)
  x = (rng.standard_normal((1, 64, 64, 64)) * 0.2 + 0.03).astype(np.float32)
  exact = x.astype(np.float64).reshape(1, 64, 64, 4, 16)
  exact = (exact - exact.mean((1, 2, 4), keepdims=True)) / np.sqrt(
      exact.var((1, 2, 4), keepdims=True) + 1e-5)
  got = np.asarray(jax.jit(group_norm)(jnp.asarray(x))).reshape(exact.shape)
  assert np.abs(got - exact).max() < 2e-6  # plain jnp.mean: 6.6e-6 here on XLA:CPU
  bn = BatchNorm(use_affine=False)
  variables = bn.init(jax.random.key(0), jnp.asarray(x), True)
  y, state = bn.apply(variables, jnp.asarray(x), True, mutable=['batch_stats'])
  x64 = x.astype(np.float64).reshape(-1, 64)
  np.testing.assert_allclose(np.asarray(state['batch_stats']['var']),
                             0.9 + 0.1 * x64.var(0, ddof=1), rtol=2e-7)
  assert np.abs(np.asarray(y).reshape(-1, 64) - (x64 - x64.mean(0)) / np.sqrt(x64.var(0) + 1e-5)
                ).max() < 2e-6


def test_pairwise_broadcast_is_a_broadcast_with_the_summed_gradient():
  x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 3, 1)).astype(np.float32))
  y = pairwise_broadcast(x, (4, 5, 3, 7))
  np.testing.assert_array_equal(y, jnp.broadcast_to(x, (4, 5, 3, 7)))
  w = jnp.asarray(np.random.default_rng(3).standard_normal((4, 5, 3, 7)).astype(np.float32))
  got = jax.grad(lambda a: (pairwise_broadcast(a, w.shape) * w).sum())(x)
  np.testing.assert_allclose(got, np.asarray(w, np.float64).sum((0, 1, 3), keepdims=True)[0],
                             rtol=1e-5)
  alpha = jnp.asarray(0.3)
  got = jax.grad(lambda a: (pairwise_broadcast(a, w.shape) * w).sum())(alpha)
  np.testing.assert_allclose(got, np.asarray(w, np.float64).sum(), rtol=1e-5)


def _lowered(f, x, platform: str) -> str:
  """StableHLO of f(x) lowered for `platform` (no such device needed)."""
  return jax.jit(f).trace(x).lower(lowering_platforms=(platform,)).as_text()


@pytest.mark.parametrize('platform', ['cuda', 'rocm', 'tpu'])
def test_accelerators_reduce_plainly_except_when_sampling(platform):
  """Halving sums on CPU; one reduction on GPUs and TPUs (forward and the broadcast's gradient),
  but the sampling program's GroupNorms halve everywhere; `pairwise_everywhere()` halves every sum
  again."""
  x = jnp.ones((4, 8, 8, 16))
  stats = lambda x: pairwise_mean(x, (0, 1, 2))
  grad = jax.grad(lambda x: (pairwise_broadcast(x.mean(), (4, 8, 8, 16)) * x).sum())
  for f in (stats, grad):
    assert _lowered(f, x, 'cpu').count('stablehlo.slice') >= 4
    accelerator = _lowered(f, x, platform)
    assert 'stablehlo.slice' not in accelerator and 'stablehlo.reduce' in accelerator
    with numerics.pairwise_everywhere():  # a new function: a trace-time switch
      assert _lowered(lambda x, f=f: f(x), x, platform).count('stablehlo.slice') >= 4
  # The sampling program's GroupNorm (mean and variance over 8·8·4 terms per group): halving on
  # every backend, forward and backward; in training only on CPU.
  assert _lowered(group_norm, x, platform).count('stablehlo.slice') >= 2 * 7 * 2
  gn_grad = jax.grad(lambda x: group_norm(x).sum())
  assert (_lowered(gn_grad, x, platform).count('stablehlo.slice')
          >= _lowered(group_norm, x, platform).count('stablehlo.slice') + 2 * 7 * 2)
  train_gn_grad = jax.grad(lambda x: group_norm(x, everywhere=False).sum())
  assert 'stablehlo.slice' not in _lowered(train_gn_grad, x, platform)
  assert _lowered(train_gn_grad, x, 'cpu').count('stablehlo.slice') >= 4 * 7 * 2
