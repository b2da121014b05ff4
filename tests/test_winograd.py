"""The Winograd form of the train step's wide convolutions computes the convolution and its gradients.

`models/winograd.py` is used on CPU in training for 3×3 layers with >= 256 input channels; the
project's test widths are far narrower, so these tests lower its thresholds to run it through the
real layers and the real discriminator, and hold it to the direct convolution within float32
rounding.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lama_jax.models import make_discriminator
from lama_jax.models import winograd
from lama_jax.models.layers import SNConv
from lama_jax.models.winograd import conv3x3_winograd, winograd_pays
from lama_jax.training import benchmark


def _direct(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _random(shape, seed):
  return jnp.asarray(np.random.RandomState(seed).randn(*shape).astype(np.float32))


@pytest.mark.parametrize('shape', [(2, 4, 6, 5, 7), (1, 2, 2, 3, 1), (3, 8, 4, 16, 9),
                                   (2, 16, 16, 32, 24)])
def test_winograd_equals_the_convolution(shape):
  b, h, w, c, d = shape
  x, kernel = _random((b, h, w, c), 0), _random((3, 3, c, d), 1)
  want = np.asarray(_direct(x, kernel))
  got = np.asarray(jax.jit(conv3x3_winograd)(x, kernel))
  assert got.shape == want.shape
  # Every output pixel, borders included (the 2x2 tiles along the edges read the zero padding).
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_winograd_gradients_equal_the_convolutions():
  x, kernel = _random((2, 8, 6, 12), 2), _random((3, 3, 12, 10), 3)
  weights = _random((2, 8, 6, 10), 4)

  def loss(conv):
    return jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k) * weights), argnums=(0, 1)))

  for got, want in zip(loss(conv3x3_winograd)(x, kernel), loss(_direct)(x, kernel)):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0,
                               atol=2e-6 * float(jnp.abs(want).max()))


def test_winograd_is_chosen_for_wide_float32_layers_on_cpu_only():
  assert jax.default_backend() == 'cpu'
  assert winograd_pays((8, 16, 16, 1024), 3, jnp.float32)
  assert winograd_pays((64, 8, 8, 512), 3, jnp.float32)
  assert winograd_pays((8, 64, 64, 256), 3, jnp.float32)
  assert not winograd_pays((8, 64, 64, 128), 3, jnp.float32)  # narrower input: slower there
  assert not winograd_pays((8, 8, 8, 1024), 3, jnp.float32)  # 512 rows: too small to pay
  assert not winograd_pays((8, 15, 16, 1024), 3, jnp.float32)  # odd height: no 2x2 tiling
  assert not winograd_pays((8, 16, 16, 1024), 1, jnp.float32)
  assert not winograd_pays((8, 16, 16, 1024), 3, jnp.bfloat16)


@pytest.fixture
def winograd_everywhere(monkeypatch):
  """Every 3×3 layer with even maps qualifies (the test widths are far below the real threshold)."""
  monkeypatch.setattr(winograd, 'MIN_INPUT_CHANNELS', 1)
  monkeypatch.setattr(winograd, 'MIN_ROWS', 1)


def _jit(fn):
  """jax.jit of a new function object: traced anew, under the thresholds set now (jit caches
  traces by function)."""
  return jax.jit(lambda *args: fn(*args))


def _hlo(fn, *args):
  return _jit(fn).lower(*args).as_text()


def _convolution_lines(hlo: str) -> list[str]:
  return [line for line in hlo.splitlines() if 'convolution' in line]


def test_sn_conv_uses_winograd_in_training_only(winograd_everywhere):
  layer, x = SNConv(12, 3), _random((2, 8, 8, 5), 5)  # > FEW_OUTPUTS: not the tap form
  variables = layer.init(jax.random.key(0), x, True)
  train = lambda v: layer.apply(v, x, True, mutable=['spectral'])[0]
  evaluate = lambda v: layer.apply(v, x, False)
  assert 'convolution' not in _hlo(train, variables)
  assert 'convolution' in _hlo(evaluate, variables)
  with_winograd = np.asarray(_jit(train)(variables))
  winograd.MIN_INPUT_CHANNELS = 10**9  # (restored by monkeypatch) the direct form, same layer
  assert 'convolution' in _hlo(train, variables)
  direct = np.asarray(_jit(train)(variables))
  np.testing.assert_allclose(with_winograd, direct, rtol=0, atol=2e-6 * np.abs(direct).max())


def test_discriminator_gradients_hold_with_winograd(winograd_everywhere):
  """The discriminator's loss gradients (weights and image) with every conv in Winograd form."""
  d = make_discriminator(64, ch=4, num_classes=14)
  rs = np.random.RandomState(6)
  image = jnp.asarray(rs.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32))
  boxes = jnp.asarray([[[0.1, 0.1, 0.5, 0.6], [0.4, 0.3, 0.5, 0.5], [0, 0, 0, 0]]] * 2, jnp.float32)
  labels = jnp.asarray([[1, 3, 0], [2, 5, 0]], jnp.int32)
  variables = d.init(jax.random.key(0), image, boxes, labels, True)

  def loss(params, image):
    out, _ = d.apply({**variables, 'params': params}, image, boxes, labels, True,
                     mutable=['spectral'])
    return sum(jnp.sum(jnp.sin(o)) for o in jax.tree.leaves(out))

  grads = jax.grad(loss, argnums=(0, 1))
  with_winograd = _jit(grads)(variables['params'], image)
  convolutions = _convolution_lines(_hlo(grads, variables['params'], image))
  winograd.MIN_INPUT_CHANNELS = 10**9
  direct = _jit(grads)(variables['params'], image)
  # Every 3×3 layer (forward, input and weight gradients) was in Winograd form; the 1×1 shortcuts
  # stay convolutions.
  assert convolutions and not any('3x3x' in line for line in convolutions)
  assert any('3x3x' in line for line in _convolution_lines(_hlo(grads, variables['params'], image)))
  for got, want in zip(jax.tree.leaves(with_winograd), jax.tree.leaves(direct)):
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=0, atol=1e-5 * scale + 1e-9)


def test_model_flops_count_the_direct_form_where_winograd_runs(winograd_everywhere):
  """The benchmark's FLOPs are the model's: a Winograd layer counts as its direct convolution (the
  form's 2.25x fewer multiplies show as speed, not as less work), and tracing for the count leaves
  later traces on the executed form."""
  layer, x = SNConv(12, 3), _random((2, 8, 8, 5), 5)
  variables = layer.init(jax.random.key(0), x, True)
  train = lambda v: layer.apply(v, x, True, mutable=['spectral'])[0]
  counted = benchmark.model_flops(train, variables)
  direct = 2.0 * 2 * 12 * 5 * 22 * 22  # 2·B·D·C · (taps on the input per axis: 3·8 - 2 at the borders)²
  # The spectral norm's power iteration adds its small matrix-vector products.
  assert counted['conv_flops'] == direct, counted
  assert 0 < counted['matmul_flops'] < 0.05 * direct, counted
  executed = jax.make_jaxpr(_jit(train))(variables)
  assert benchmark.convolution_flops(executed) == 0  # still Winograd outside the count
  # 16 products of [B·H/2·W/2 tiles, C] × [C, D], padding included, beside the same power iteration
  winograd_products = 2.0 * 16 * (2 * 4 * 4) * 5 * 12
  assert benchmark.matmul_flops(executed) == winograd_products + counted['matmul_flops']
