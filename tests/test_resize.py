"""Bilinear resizing as PyTorch does it (align_corners=False), and the ×2 stencil used on CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lama_jax.models import resize


def _torch_like(x: np.ndarray, height: int, width: int) -> np.ndarray:
  """PyTorch's bilinear rule written out per output pixel in float64 (the reference)."""
  def coords(in_size, out_size):
    src = np.maximum((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(int), in_size - 1)
    return low, np.minimum(low + 1, in_size - 1), src - low
  y0, y1, fy = coords(x.shape[1], height)
  x0, x1, fx = coords(x.shape[2], width)
  x = x.astype(np.float64)
  top = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
  return top[:, :, x0] * (1 - fx)[None, None, :, None] + top[:, :, x1] * fx[None, None, :, None]


@pytest.mark.parametrize('shape, out', [((2, 1, 1, 3), (2, 2)), ((1, 5, 3, 2), (10, 6)),
                                        ((3, 16, 16, 4), (32, 32)), ((1, 4, 6, 2), (8, 3)),
                                        ((2, 64, 64, 3), (16, 128))])
def test_resize_bilinear_is_pytorchs(shape, out):
  x = np.random.RandomState(0).randn(*shape).astype(np.float32)
  for stencil in (False, True):
    got = np.asarray(jax.jit(lambda x, s=stencil: resize.resize_bilinear(x, *out, stencil=s))(x))
    np.testing.assert_allclose(got, _torch_like(x, *out), rtol=0, atol=1e-6 * np.abs(x).max())


@pytest.mark.parametrize('shape', [(2, 1, 3), (1, 2, 4), (3, 7, 5), (2, 16, 128)])
def test_upsample2_stencil_equals_the_matrix_form(shape):
  """The ×2 stencil (CPU) against the interpolation matrix, along either axis, to one float32
  rounding (the two round ¼a + ¾b in different orders); gradients too."""
  x = jnp.asarray(np.random.RandomState(1).randn(*shape).astype(np.float32))
  for axis in (1, 2):
    n = shape[axis]
    matrix = jnp.asarray(resize.bilinear_matrix(n, 2 * n), jnp.float32)
    by_matrix = lambda x, axis=axis, m=matrix: jnp.moveaxis(jnp.tensordot(
        m, x, axes=((1,), (axis,)), precision=jax.lax.Precision.HIGHEST), 0, axis)
    by_stencil = lambda x, axis=axis: resize.upsample2_bilinear(x, axis)
    np.testing.assert_allclose(np.asarray(jax.jit(by_stencil)(x)), np.asarray(jax.jit(by_matrix)(x)),
                               rtol=0, atol=2 ** -23 * float(jnp.abs(x).max()))
    weights = jnp.asarray(np.random.RandomState(2).randn(*by_matrix(x).shape).astype(np.float32))
    grads = [np.asarray(jax.jit(jax.grad(lambda x, f=f: jnp.sum(f(x) * weights)))(x))
             for f in (by_stencil, by_matrix)]
    np.testing.assert_allclose(grads[0], grads[1], rtol=0, atol=1e-6 * np.abs(grads[1]).max())


def test_resize_bilinear_doubles_by_stencil_on_cpu_when_asked():
  """The sampling program asks (`stencil=not train`); the train step keeps the matrix form."""
  x = jnp.zeros((2, 8, 8, 3))
  hlo = lambda **kw: jax.jit(lambda x: resize.resize_bilinear(x, **kw)).lower(x).as_text()
  assert 'dot' not in hlo(height=16, width=16, stencil=True)
  assert 'dot' in hlo(height=16, width=16)
  assert 'dot' in hlo(height=12, width=16, stencil=True)  # ×1.5 along H: the matrix there
