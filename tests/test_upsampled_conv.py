"""`models/upsampled_conv.py`: conv3x3(upsample ×2 (x)) at x's resolution, and its written-out
gradient, against upsample → convolution (float32 rounding apart)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lama_jax.models import winograd
from lama_jax.models.layers import SNConv
from lama_jax.models.resize import upsample_nearest
from lama_jax.models.upsampled_conv import (MIN_INPUT_PIXELS, conv3x3_of_upsampled,
                                            train_form_pays, upsampling_phases)

SHAPES = [(2, 4, 4, 8, 5), (1, 3, 5, 4, 6), (2, 1, 1, 3, 2), (1, 16, 16, 32, 16)]


def _plain(x, kernel):
  return jax.lax.conv_general_dilated(upsample_nearest(x), kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _phase_form(x, kernel):
  return conv3x3_of_upsampled(x, upsampling_phases(kernel))


def _inputs(shape):
  b, h, w, c, d = shape
  rs = np.random.RandomState(sum(shape))
  return (jnp.asarray(rs.randn(b, h, w, c).astype(np.float32)),
          jnp.asarray(rs.randn(3, 3, c, d).astype(np.float32)),
          jnp.asarray(rs.randn(b, 2 * h, 2 * w, d).astype(np.float32)))


def _close(got, want):
  want = np.asarray(want)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize('shape', SHAPES)
def test_convolution_of_the_upsampled_input_at_its_own_resolution(shape):
  """At odd and 1×1 sizes too (the borders)."""
  x, kernel, _ = _inputs(shape)
  got = jax.jit(_phase_form)(x, kernel)
  assert got.shape == (shape[0], 2 * shape[1], 2 * shape[2], shape[4])
  _close(got, _plain(x, kernel))


@pytest.mark.parametrize('shape', SHAPES)
def test_its_gradient_is_the_plain_forms(shape):
  """The written-out input and kernel gradients (through the phase kernels to the 3×3 kernel)."""
  x, kernel, dy = _inputs(shape)

  def gradients(form):
    return jax.jit(lambda x, k, dy: jax.vjp(form, x, k)[1](dy))(x, kernel, dy)
  (dx, dk), (want_dx, want_dk) = gradients(_phase_form), gradients(_plain)
  _close(dx, want_dx)
  _close(dk, want_dk)


def test_second_use_of_the_gradient_rule_composes():
  """Under jax.grad of a scalar that uses the output twice, as a loss does."""
  x, kernel, _ = _inputs((2, 8, 8, 4, 3))

  def loss(form):
    return lambda x, k: jnp.sum(form(x, k) ** 2) + jnp.sum(jnp.tanh(form(x, 0.5 * k)))
  got = jax.grad(loss(_phase_form), argnums=(0, 1))(x, kernel)
  want = jax.grad(loss(_plain), argnums=(0, 1))(x, kernel)
  for g, w in zip(got, want):
    _close(g, w)


def test_the_train_step_uses_it_from_8x8_inputs_on_cpu_float32():
  side = int(MIN_INPUT_PIXELS ** 0.5)
  assert train_form_pays((4, side, side, 8), jnp.float32)
  assert not train_form_pays((4, side // 2, side // 2, 8), jnp.float32)
  assert not train_form_pays((4, side, side, 8), jnp.bfloat16)
  with winograd.direct_form():  # the benchmark counts FLOPs in the plain forms
    assert not train_form_pays((4, side, side, 8), jnp.float32)


def test_sn_conv_trains_with_it_and_matches_upsample_then_convolve():
  """A train-mode SNConv of an upsampled 8×8 input builds no upsampled map, and its output and
  gradients are those of the plain form (traced inside `direct_form`)."""
  x = jnp.asarray(np.random.RandomState(3).randn(2, 8, 8, 6).astype(np.float32))
  layer = SNConv(5, 3)
  variables = layer.init(jax.random.key(0), x, False, upsampled=True)

  def loss(params, x):
    y, _ = layer.apply({**variables, 'params': params}, x, True, upsampled=True,
                       mutable=['spectral'])
    return jnp.sum(jnp.sin(y))
  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  hlo = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(
      variables['params'], x).as_text()
  assert 'tensor<2x16x16x6xf32>' not in hlo  # the upsampled input
  (value, grads) = step(variables['params'], x)
  with winograd.direct_form():
    plain_hlo = jax.jit(jax.value_and_grad(loss, argnums=(0, 1))).lower(
        variables['params'], x).as_text()
    want_value, want_grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(
        variables['params'], x)
  assert 'tensor<2x16x16x6xf32>' in plain_hlo
  np.testing.assert_allclose(float(value), float(want_value), rtol=1e-5)
  for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
    _close(got, want)
