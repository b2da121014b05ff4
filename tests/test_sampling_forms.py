"""The sampling program's faster forms compute what the plain forms compute.

`models/sampling_forms.py` (a 3×3 convolution to few channels, `materialize`), a 3×3 convolution of
an upsampled input at the input's resolution with sampling's phase kernels (`models/upsampled_conv.py`
has its own tests) and the weights prepared once for sampling
(`layers.prescale_spectral`, `generator.sampling_variables`) are used in eval mode only; these tests
hold them to the plain forms: the convolutions to float32 rounding, the rest bit for bit.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lama_jax.models import make_discriminator, make_generator
from lama_jax.models import sampling_forms
from lama_jax.models.generator import sampling_variables
from lama_jax.models.layers import PHASES, PRESCALED, SNConv, SNDense, SNEmbed, prescale_spectral
from lama_jax.models.resize import upsample_nearest
from lama_jax.models.sampling_forms import (FEW_OUTPUTS, conv3x3_few_outputs, materialize,
                                            rows_per_chunk)
from lama_jax.models.upsampled_conv import upsampling_phases

TINY = dict(ch=4, num_classes=14, mask_hidden=8)


def _plain_conv(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


@pytest.mark.parametrize('shape', [(2, 8, 8, 16, 3), (1, 6, 10, 5, 1), (3, 4, 4, 7, 8)])
def test_tap_convolution_equals_the_convolution(shape):
  b, h, w, c, d = shape
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.randn(b, h, w, c).astype(np.float32))
  kernel = jnp.asarray(rs.randn(3, 3, c, d).astype(np.float32))
  want = np.asarray(_plain_conv(x, kernel))
  got = np.asarray(jax.jit(conv3x3_few_outputs)(x, kernel))
  assert got.shape == want.shape
  # Border pixels included: zero padding of the tap outputs is zero padding of x.
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_sn_conv_uses_the_tap_form_in_eval_mode_only():
  """Eval mode of a few-output 3×3 SNConv is the tap form; training keeps the plain convolution."""
  x = jnp.asarray(np.random.RandomState(1).randn(2, 8, 8, 6).astype(np.float32))
  few, many = SNConv(3, 3), SNConv(FEW_OUTPUTS + 1, 3)
  for layer in (few, many):
    variables = layer.init(jax.random.key(0), x, False)
    kernel = variables['params']['kernel']
    sigma = jnp.dot(jnp.dot(variables['spectral']['v'], kernel.reshape(-1, kernel.shape[-1])),
                    variables['spectral']['u'])
    plain = np.asarray(_plain_conv(x, kernel / sigma) + variables['params']['bias'])
    out = np.asarray(jax.jit(lambda v, lay=layer: lay.apply(v, x, False))(variables))
    np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-6)
    hlo = jax.jit(lambda v, lay=layer: lay.apply(v, x, False)).lower(variables).as_text()
    assert ('convolution' in hlo) == (layer is many)


def _sn_conv_reference(variables, x):
  kernel = variables['params']['kernel']
  sigma = jnp.dot(jnp.dot(variables['spectral']['v'], kernel.reshape(-1, kernel.shape[-1])),
                  variables['spectral']['u'])
  return _plain_conv(upsample_nearest(x), kernel / sigma) + variables['params'].get('bias', 0.0)


def test_sn_conv_of_an_upsampled_input():
  """`upsampled=True` convolves the upsampled input: at x's resolution (no upsampled map in the
  program) in eval mode with phase kernels prepared for sampling, else upsampled first."""
  x = jnp.asarray(np.random.RandomState(3).randn(2, 5, 6, 8).astype(np.float32))
  layer = SNConv(12, 3)
  variables = layer.init(jax.random.key(0), x, False, upsampled=True)
  _, state = layer.apply(variables, x, True, upsampled=True, mutable=['spectral'])
  variables = {**variables, **state}
  want = np.asarray(_sn_conv_reference(variables, x))
  phases = upsampling_phases(prescale_spectral(variables)[PRESCALED]['weight'])
  prepared = {**variables, PRESCALED: {**prescale_spectral(variables)[PRESCALED], PHASES: phases}}
  eval_fn = jax.jit(lambda v: layer.apply(v, x, False, upsampled=True))
  for v in (variables, prescale_spectral(variables), prepared):
    np.testing.assert_allclose(np.asarray(eval_fn(v)), want, rtol=1e-5, atol=1e-6)
    hlo = eval_fn.lower(v).compile().as_text()
    assert ('f32[2,10,12,8]' in hlo) == (v is not prepared)  # the upsampled input
  # The phases are read, not rebuilt: wrong ones change the output.
  wrong = {**prepared, PRESCALED: {**prepared[PRESCALED], PHASES: 2 * phases}}
  np.testing.assert_allclose(np.asarray(eval_fn(wrong)), 2 * (want - np.asarray(variables['params']['bias'])) +
                             np.asarray(variables['params']['bias']), rtol=1e-5, atol=1e-5)
  train, _ = layer.apply(prepared, x, True, upsampled=True, mutable=['spectral'])  # phases unused
  np.testing.assert_allclose(np.asarray(train), np.asarray(layer.apply(
      variables, x, True, upsampled=True, mutable=['spectral'])[0]), rtol=0, atol=0)
  assert train.shape == want.shape


def test_materialize_is_the_identity():
  # Subnormals are left out: XLA:CPU's arithmetic flushes them to zero, here as in any consumer.
  x = jnp.asarray([[-np.inf, -1e30, -0.0, 0.0, 1.2e-38, 3.5, np.inf, np.nan]], jnp.float32)
  got = np.asarray(jax.jit(materialize)(x))
  np.testing.assert_array_equal(got, np.asarray(x))  # NaN included (array_equal treats NaN as equal)
  assert np.signbit(got[0, 2]) and not np.signbit(got[0, 3])
  assert np.asarray(jax.jit(materialize)(x.astype(jnp.bfloat16))).dtype == jnp.bfloat16


@pytest.mark.parametrize('batch, size, rows', [(8, 64, 4), (2, 64, 2), (6, 64, 3), (10, 64, 2),
                                               (7, 64, 7), (5, 64, 5), (6, 32, 6), (32, 32, 16),
                                               (24, 32, 12), (4, 128, 1), (1, 128, 1), (3, 256, 1)])
def test_rows_per_chunk(batch, size, rows):
  assert rows_per_chunk(batch, size) == rows
  with pytest.MonkeyPatch.context() as patch:  # accelerators: the whole batch at once
    patch.setattr(sampling_forms, '_on_cpu', lambda: False)
    assert rows_per_chunk(batch, size) == batch


def _spectral_layers(tree, path=()):
  """Paths of the nodes that hold spectral-norm u and v."""
  if 'u' in tree and 'v' in tree:
    return [path]
  return [p for k, v in tree.items() if isinstance(v, dict) for p in _spectral_layers(v, path + (k,))]


def _at(tree, path):
  for k in path:
    tree = tree[k]
  return tree


@pytest.mark.parametrize('layer, x', [(SNDense(5), jnp.ones((2, 3))),
                                      (SNConv(4, 3), jnp.ones((1, 4, 4, 2))),
                                      (SNEmbed(6, 3), jnp.asarray([[1, 5, 0]]))])
def test_prescaled_weights_give_the_eval_outputs(layer, x):
  variables = layer.init(jax.random.key(0), x, True)
  # Stored u, v after one power iteration (not the initial ones), and a non-trivial sigma.
  _, state = layer.apply(variables, x, True, mutable=['spectral'])
  variables = {**variables, **state}
  plain = jax.jit(lambda v: layer.apply(v, x, False))(variables)
  prescaled = prescale_spectral(variables)
  assert set(prescaled) == set(variables) | {PRESCALED}
  fast = jax.jit(lambda v: layer.apply(v, x, False))(prescaled)
  np.testing.assert_allclose(np.asarray(fast), np.asarray(plain), rtol=2e-7, atol=1e-7)
  # Training ignores them: the power iteration and sigma run as before.
  train_plain = layer.apply(variables, x, True, mutable=['spectral'])
  train_pre = layer.apply(prescaled, x, True, mutable=['spectral'])
  jax.tree.map(np.testing.assert_array_equal, train_plain, train_pre)


@pytest.mark.parametrize('size', [64, 128])
def test_prescale_covers_every_spectral_layer_of_both_networks(size):
  rs = np.random.RandomState(0)
  boxes = jnp.asarray(np.concatenate([rs.uniform(0, 0.5, (1, 3, 2)), rs.uniform(0.2, 0.4, (1, 3, 2))],
                                     -1).astype(np.float32))
  labels = jnp.asarray([[1, 2, 0]], jnp.int32)
  z, z_im = jnp.zeros((1, 3, 128)), jnp.zeros((1, 128))
  g = make_generator(size, **TINY)
  rngs = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  d = make_discriminator(size, ch=4, num_classes=14)
  for variables in (jax.jit(g.init)(rngs, z, boxes, labels, z_im),
                    jax.jit(d.init)(rngs, jnp.zeros((1, size, size, 3)), boxes, labels)):
    prescaled = prescale_spectral(variables)[PRESCALED]
    paths = _spectral_layers(variables['spectral'])
    assert paths and _spectral_layers_with_weight(prescaled) == paths
    for path in paths:
      params = _at(variables['params'], path)
      assert _at(prescaled, path)['weight'].shape == params.get('kernel', params.get('embedding')).shape


def _spectral_layers_with_weight(tree, path=()):
  if 'weight' in tree:
    return [path]
  return [p for k, v in tree.items() if isinstance(v, dict)
          for p in _spectral_layers_with_weight(v, path + (k,))]


def _tiny_generator(seed: int, objects: int):
  """A tiny 64×64 generator, its inputs and variables with every α and ρ at 0.5 (every branch
  counts) and BatchNorm statistics from train-mode passes (they keep the activations finite);
  returns (variables, eval-mode forward of the variables, compiled anew per call)."""
  g = make_generator(64, **TINY)
  rs = np.random.RandomState(seed)
  boxes = jnp.asarray(np.concatenate([rs.uniform(0, 0.5, (2, objects, 2)),
                                      rs.uniform(0.2, 0.5, (2, objects, 2))], -1).astype(np.float32))
  labels = jnp.asarray(rs.randint(1, 14, (2, objects)), jnp.int32)
  z = jnp.asarray(rs.randn(2, objects, 128), jnp.float32)
  z_im = jnp.asarray(rs.randn(2, 128), jnp.float32)
  variables = jax.jit(g.init)({'params': jax.random.key(0), 'noise': jax.random.key(1)}, z, boxes,
                              labels, z_im)
  variables = dict(variables, params=jax.tree.map(
      lambda p: jnp.full_like(p, 0.5) if p.ndim == 0 else p, variables['params']))
  for s in range(3):
    _, state = jax.jit(lambda v, s=s: g.apply(v, z, boxes, labels, z_im, train=True, rngs={
        'noise': jax.random.key(s)}, mutable=['batch_stats', 'spectral']))(variables)
    variables = {**variables, **state}

  def forward(v):  # a new function per call: traced anew under the backend test in force
    return [np.asarray(t) for t in jax.jit(lambda v: g.apply(
        v, z, boxes, labels, z_im, rngs={'noise': jax.random.key(3)}))(v)]
  return variables, forward


def test_generator_samples_equal_with_weights_prepared_for_sampling():
  """The whole eval-mode generator: prescaled and plain variables give the same images and masks,
  and so do the blocks' conv1 at the input's resolution (`sampling_variables`) and upsampled."""
  variables, forward = _tiny_generator(2, 4)
  plain = forward(variables)
  assert all(np.isfinite(t).all() for t in plain) and plain[0].std() > 0.1
  prepared = sampling_variables(variables)
  assert all(PHASES in prepared[PRESCALED][f'res{i}']['conv1'] for i in range(4))
  # Separately compiled programs round differently (~1e-7); LAMA's normalisation of the masks
  # amplifies that to ~1e-6.
  for v in (prescale_spectral(variables), prepared):
    for a, b in zip(plain, forward(v)):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)
  with pytest.MonkeyPatch.context() as patch:  # off CPU: no phase kernels, the plain program
    patch.setattr(sampling_forms, '_on_cpu', lambda: False)
    assert PHASES not in sampling_variables(variables)[PRESCALED]['res0']['conv1']


def test_generator_samples_equal_with_and_without_the_cpu_forms():
  """Every CPU sampling form at once (tap form, conv1 at the input's resolution, materialised maps,
  the ×2 bilinear stencil) against the plain program the other backends run."""
  variables, forward = _tiny_generator(5, 5)
  cpu_forms = forward(sampling_variables(variables))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(sampling_forms, '_on_cpu', lambda: False)
    plain = forward(sampling_variables(variables))
  assert all(np.isfinite(t).all() for t in plain) and plain[0].std() > 0.1
  for got, want in zip(cpu_forms, plain):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
