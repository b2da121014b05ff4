"""Behaviour of the models: sizes, shapes, LAMA's semantics, spectral norm, gradients, bf16."""

import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lama_jax.models import count_params, make_discriminator, make_generator
from lama_jax.models.layers import SNDense
from lama_jax.models.mask import LAMA, masks_to_layout

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'reference' / 'param_counts.json'
OFFICIAL_COUNTS = {  # REFERENCE.md "Sizes", trainable parameters of the official state dicts
    64: (14_849_438, 23_308_998), 128: (12_701_299, 43_987_401), 256: (22_635_336, 45_495_242)}

TINY = dict(ch=4, num_classes=14, mask_hidden=8)


def _layout(batch: int, objects: int, seed: int = 0):
  rs = np.random.RandomState(seed)
  xy = rs.uniform(0.0, 0.6, (batch, objects, 2))
  wh = rs.uniform(0.1, 0.4, (batch, objects, 2))
  boxes = np.concatenate([xy, wh], -1).astype(np.float32)
  labels = rs.randint(1, 14, (batch, objects)).astype(np.int32)
  boxes[:, -1] = (-0.6, -0.6, 0.5, 0.5)  # one official padding object per image
  labels[:, -1] = 0
  z = rs.randn(batch, objects, 128).astype(np.float32)
  z_im = rs.randn(batch, 128).astype(np.float32)
  return z, jnp.asarray(boxes), jnp.asarray(labels), z_im


def _randomize_scalars(params, low=0.3, high=0.8, seed=0):
  """Gives every scalar (the ReZero α's, ρ, LAMA's α) a non-zero value, so every branch is live."""
  rs = np.random.RandomState(seed)
  return jax.tree_util.tree_map(
      lambda p: jnp.asarray(rs.uniform(low, high), p.dtype) if p.ndim == 0 else p, params)


@pytest.mark.parametrize('size', [64, 128, 256])
def test_count_params_matches_official(size):
  g, d = OFFICIAL_COUNTS[size]
  assert count_params(size) == {'generator': g, 'discriminator': d}
  if REFERENCE.exists():  # the shared reference, when the checkout sits beside it
    ref = json.loads(REFERENCE.read_text())[str(size)]
    assert (ref['G_params'], ref['D_params']) == (g, d)


@pytest.mark.parametrize('size', [64, 128, 256])
def test_output_shapes_at_every_size(size):
  """Shapes only (traced, not compiled); the gradients below compile the two ends, 64 and 256."""
  g = make_generator(size, **TINY)
  d = make_discriminator(size, ch=4, num_classes=14)
  z, boxes, labels, z_im = _layout(2, 3)
  rngs = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  g_vars = jax.eval_shape(g.init, rngs, z, boxes, labels, z_im)
  img, mask, raw = jax.eval_shape(
      lambda v: g.apply(v, z, boxes, labels, z_im, train=True, rngs={'noise': jax.random.key(2)},
                        mutable=['batch_stats', 'spectral'])[0], g_vars)
  assert img.shape == (2, size, size, 3) and mask.shape == raw.shape == (2, 3, size, size)
  d_vars = jax.eval_shape(d.init, rngs, jnp.zeros((2, size, size, 3)), boxes, labels)
  out_im, out_obj, valid = jax.eval_shape(
      lambda v: d.apply(v, jnp.zeros((2, size, size, 3)), boxes, labels, mutable=['spectral'])[0],
      d_vars)
  assert out_im.shape == (2,) and out_obj.shape == valid.shape == (2, 3)


@pytest.mark.parametrize('size', [64, 256])
def test_generator_and_discriminator_shapes_and_finite_gradients(size):
  g = make_generator(size, **TINY)
  d = make_discriminator(size, ch=4, num_classes=14)
  z, boxes, labels, z_im = _layout(2, 3)
  rngs = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  g_vars = jax.jit(g.init)(rngs, z, boxes, labels, z_im)
  g_vars = dict(g_vars, params=_randomize_scalars(g_vars['params']))
  images = jnp.zeros((2, size, size, 3))
  d_vars = jax.jit(d.init)(rngs, images, boxes, labels)
  d_vars = dict(d_vars, params=_randomize_scalars(d_vars['params']))

  @jax.jit
  def losses_and_grads(g_params, d_params):
    def loss(g_params, d_params):
      (img, mask, raw), _ = g.apply(dict(g_vars, params=g_params), z, boxes, labels, z_im,
                                    train=True, rngs={'noise': jax.random.key(2)},
                                    mutable=['batch_stats', 'spectral'])
      (out_im, out_obj, valid), _ = d.apply(dict(d_vars, params=d_params), img, boxes, labels,
                                            mutable=['spectral'])
      return out_im.mean() + (out_obj * valid).sum(), (img, mask, raw, out_im, out_obj, valid)
    return jax.grad(loss, argnums=(0, 1), has_aux=True)(g_params, d_params)

  (g_grads, d_grads), (img, mask, raw, out_im, out_obj, valid) = losses_and_grads(
      g_vars['params'], d_vars['params'])
  assert img.shape == (2, size, size, 3)
  assert mask.shape == raw.shape == (2, 3, size, size)
  assert out_im.shape == (2,) and out_obj.shape == (2, 3)
  np.testing.assert_array_equal(valid, labels > 0)
  assert float(jnp.abs(img).max()) <= 1.0
  for tree in (g_grads, d_grads):
    leaves = jax.tree_util.tree_leaves(tree)
    assert all(bool(jnp.isfinite(x).all()) for x in leaves)
  # The layout reaches the image: LAMA's α and the ISLA-Norm projections get gradient.
  assert float(jnp.abs(g_grads['lama']['alpha'])) > 0
  assert float(jnp.abs(g_grads['res0']['b1']['weight_proj']['kernel']).sum()) > 0
  # Padding masks are exactly zero (their box lies outside the image).
  assert float(jnp.abs(raw[:, -1]).max()) == 0.0


def _lama_inputs(size=64, objects=4, seed=0):
  rs = np.random.RandomState(seed)
  feat = jnp.asarray(rs.randn(2, objects, 40).astype(np.float32))
  raw = jnp.asarray(rs.uniform(0, 1, (2, objects, size, size)).astype(np.float32))
  return feat, raw


@pytest.mark.parametrize('size', [64, 128])
def test_lama_with_alpha_zero_returns_raw_mask_exactly(size):
  feat, raw = _lama_inputs(size)
  lama = LAMA(match_dim=12)
  variables = lama.init(jax.random.key(0), feat, raw, False)
  adapted, factors = lama.apply(variables, feat, raw, False)
  np.testing.assert_array_equal(np.asarray(adapted), np.asarray(raw))
  np.testing.assert_array_equal(np.asarray(factors), 1.0)


def test_lama_scaling_factors_lie_in_open_interval():
  feat, raw = _lama_inputs()
  lama = LAMA(match_dim=12)
  variables = lama.init(jax.random.key(0), feat, raw, False)
  params = _randomize_scalars(variables['params'], 0.5, 1.0)
  # Scale α to the energies so tanh(αE) stays off its float32 plateau: E from a probe with small α.
  params['alpha'] = jnp.asarray(1e-6)
  _, probe = lama.apply(dict(variables, params=params), feat, raw, False)
  energy = np.log(probe / (2 - probe)) / 2e-6  # factors = 2·sigmoid(2αE)
  params['alpha'] = jnp.asarray(2.0 / np.abs(energy).max())
  _, factors = lama.apply(dict(variables, params=params), feat, raw, False)
  assert float(factors.min()) > 0.0 and float(factors.max()) < 2.0
  assert float(factors.max() - factors.min()) > 0.1  # the adaption is not trivial


def test_lama_is_local():
  """Translating a far box leaves the adapted mask unchanged away from both of its positions.

  The box moves by whole pixels and stays inside the image, so the pixel-query values are only
  translated and the GroupNorm statistics of the local blocks stay the same.
  """
  size, objects = 64, 2
  g = make_generator(size, **TINY)
  z, _, _, z_im = _layout(1, objects)
  labels = jnp.asarray([[3, 5]], jnp.int32)
  step = 1.0 / (size - 1)  # masks_to_layout samples column j at j/(W − 1): one pixel per step
  box_a = [4 * step, 4 * step, 16 * step, 16 * step]
  moved = [[40 * step, 6 * step], [44 * step, 40 * step]]
  variables = jax.jit(g.init)({'params': jax.random.key(0), 'noise': jax.random.key(1)}, z,
                              jnp.zeros((1, objects, 4)), labels, z_im)
  params = _randomize_scalars(variables['params'], 0.5, 1.0)
  variables = dict(variables, params=params)
  apply = jax.jit(lambda *a: g.apply(*a, rngs={'noise': jax.random.key(2)}))
  masks = []
  for x, y in moved:
    boxes = jnp.asarray([[box_a, [x, y, 12 * step, 12 * step]]], jnp.float32)
    _, mask, raw = apply(variables, z, boxes, labels, z_im)
    masks.append((np.asarray(mask[0, 0]), np.asarray(raw[0, 0])))
  (mask_1, raw_1), (mask_2, raw_2) = masks
  np.testing.assert_array_equal(raw_1, raw_2)  # object A's raw mask does not depend on B
  assert np.abs(mask_1 - raw_1).max() > 1e-3  # LAMA does act on A
  # Two 3×3 blocks see 2 pixels around; B's boxes (with a margin) cover columns ≥ 38.
  np.testing.assert_allclose(mask_1[:, :36], mask_2[:, :36], rtol=0, atol=1e-5)


def _grid_sample_reference(boxes, masks, size):
  """masks_to_layout with a plain loop over pixels: PyTorch grid_sample, align_corners=True, zeros."""
  b, o, m, _ = masks.shape
  out = np.zeros((b, o, size, size))
  for bi in range(b):
    for oi in range(o):
      x0, y0, w, h = boxes[bi, oi]
      for i in range(size):
        for j in range(size):
          ix = (j / (size - 1) - x0) / w * (m - 1)
          iy = (i / (size - 1) - y0) / h * (m - 1)
          fx, fy = int(np.floor(ix)), int(np.floor(iy))
          val = 0.0
          for yy, wy in ((fy, 1 - (iy - fy)), (fy + 1, iy - fy)):
            for xx, wx in ((fx, 1 - (ix - fx)), (fx + 1, ix - fx)):
              if 0 <= yy < m and 0 <= xx < m:
                val += wy * wx * masks[bi, oi, yy, xx]
          out[bi, oi, i, j] = val
  return out


def test_masks_to_layout_matches_loop():
  from lama_jax.models.mask import masks_to_layout
  rs = np.random.RandomState(0)
  boxes = np.array([[[0.1, 0.2, 0.5, 0.3],   # inside
                     [-0.3, 0.6, 0.6, 0.7],  # partly outside, left and bottom
                     [0.45, 0.45, 0.03, 0.02],  # tiny
                     [-0.05, -0.1, 1.2, 1.3]]],  # larger than the image
                   np.float32)
  masks = rs.uniform(0, 1, (1, 4, 8, 8)).astype(np.float32)
  got = np.asarray(masks_to_layout(jnp.asarray(boxes), jnp.asarray(masks), 20))
  np.testing.assert_allclose(got, _grid_sample_reference(boxes, masks, 20), atol=2e-5)


def _roi_align_reference(feat, boxes, out_size, scale):
  """Legacy maskrcnn-benchmark ROIAlign forward (aligned=False, sampling_ratio=0) as a loop."""
  h, w, c = feat.shape
  res = np.zeros((len(boxes), out_size, out_size, c))

  def bilinear(y, x):
    if y < -1.0 or y > h or x < -1.0 or x > w:
      return np.zeros(c)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
      y_high = y_low = h - 1
      y = float(y_low)
    else:
      y_high = y_low + 1
    if x_low >= w - 1:
      x_high = x_low = w - 1
      x = float(x_low)
    else:
      x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * feat[y_low, x_low] + hy * lx * feat[y_low, x_high] +
            ly * hx * feat[y_high, x_low] + ly * lx * feat[y_high, x_high])

  for n, (x0, y0, x1, y1) in enumerate(boxes):
    sw, sh, ew, eh = x0 * scale, y0 * scale, x1 * scale, y1 * scale
    rw, rh = max(ew - sw, 1.0), max(eh - sh, 1.0)
    bw, bh = rw / out_size, rh / out_size
    gh, gw = int(np.ceil(rh / out_size)), int(np.ceil(rw / out_size))
    for ph in range(out_size):
      for pw in range(out_size):
        acc = np.zeros(c)
        for iy in range(gh):
          y = sh + ph * bh + (iy + 0.5) * bh / gh
          for ix in range(gw):
            x = sw + pw * bw + (ix + 0.5) * bw / gw
            acc += bilinear(y, x)
        res[n, ph, pw] = acc / (gh * gw)
  return res


@pytest.mark.parametrize('size', [1, 2, 64, 256])
def test_masks_to_layout_samples_where_float64_samples(size):
  """The bilinear placement in float32 is within ~1e-7 of the float64 one, for boxes in, across and
  outside the image: its coordinates are not rounded before the (M − 1)/w scaling, which made errors
  of up to 7e-6 in the tent weights (2x the official float32 code's in the placed masks)."""
  rs = np.random.RandomState(size)
  boxes = np.concatenate([rs.uniform(-0.7, 1.2, (3, 5, 2)), rs.uniform(0.02, 1.5, (3, 5, 2))],
                         -1).astype(np.float32)
  masks = rs.uniform(0, 1, (3, 5, 32, 32)).astype(np.float32)
  got = np.asarray(jax.jit(masks_to_layout, static_argnums=2)(boxes, masks, size))
  lin = np.linspace(0, 1, size) if size > 1 else np.zeros(1)

  def tents(start, extent):  # [3, 5, size, 32] in float64
    p = (lin - start.astype(np.float64)[..., None]) / extent.astype(np.float64)[..., None] * 31
    return np.maximum(0.0, 1.0 - np.abs(p[..., None] - np.arange(32)))

  want = np.einsum('boim,bomn,bojn->boij', tents(boxes[..., 1], boxes[..., 3]), masks.astype(np.float64),
                   tents(boxes[..., 0], boxes[..., 2]))
  assert np.abs(want).max() > 0.1  # some boxes cover some pixels
  np.testing.assert_allclose(got, want, rtol=0, atol=5e-7)


def test_roi_align_matches_legacy_loop_and_is_differentiable():
  from lama_jax.models.roi_align import roi_align
  rs = np.random.RandomState(0)
  feat = rs.randn(16, 16, 3).astype(np.float32)
  boxes = np.array([[3.0, 5.0, 40.0, 30.0],     # ordinary
                    [60.0, 50.0, 64.0, 64.0],   # touching the bottom-right corner
                    [-10.0, -6.0, 20.0, 12.0],  # partly outside
                    [30.0, 30.0, 30.5, 30.2],   # tiny: size clamped to 1
                    [0.0, 0.0, 64.0, 64.0]],    # the whole image
                   np.float32)
  got = np.asarray(roi_align(jnp.asarray(feat[None]), jnp.asarray(boxes[None]), 8, 0.25))[0]
  np.testing.assert_allclose(got, _roi_align_reference(feat, boxes, 8, 0.25), atol=1e-5)
  grad = jax.grad(lambda f: roi_align(f, jnp.asarray(boxes[None]), 8, 0.25).sum())(
      jnp.asarray(feat[None]))
  assert grad.shape == (1, 16, 16, 3) and float(jnp.abs(grad).sum()) > 0


@pytest.mark.parametrize('size', [128])
def test_padding_objects_do_not_change_real_object_scores(size):
  d = make_discriminator(size, ch=4, num_classes=14)
  rs = np.random.RandomState(0)
  images = jnp.asarray(rs.uniform(-1, 1, (1, size, size, 3)).astype(np.float32))
  real_boxes = [[0.1, 0.1, 0.3, 0.3], [0.2, 0.4, 0.7, 0.5]]  # one small, one large path
  boxes_a = jnp.asarray([real_boxes + [[-0.6, -0.6, 0.5, 0.5]] * 2], jnp.float32)
  boxes_b = jnp.asarray([real_boxes + [[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.2, 0.2]]], jnp.float32)
  labels_a = jnp.asarray([[4, 9, 0, 0]], jnp.int32)
  labels_b = jnp.asarray([[4, 9, 0, 0]], jnp.int32)
  variables = jax.jit(d.init)(jax.random.key(0), images, boxes_a, labels_a)
  variables = dict(variables, params=_randomize_scalars(variables['params']))
  apply = jax.jit(lambda b, l: d.apply(variables, images, b, l, train=False))
  im_a, obj_a, valid_a = apply(boxes_a, labels_a)
  im_b, obj_b, valid_b = apply(boxes_b, labels_b)
  np.testing.assert_array_equal(np.asarray(valid_a), [[True, True, False, False]])
  np.testing.assert_allclose(np.asarray(obj_a[:, :2]), np.asarray(obj_b[:, :2]), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(im_a), np.asarray(im_b))


def test_spectral_norm_sigma_converges_to_largest_singular_value():
  layer = SNDense(7)
  x = jnp.ones((1, 5))
  variables = layer.init(jax.random.key(0), x, True)
  kernel = np.asarray(variables['params']['kernel'])
  kernel = kernel * np.linspace(0.5, 3.0, 7)  # a spread spectrum
  variables = dict(variables, params={**variables['params'], 'kernel': jnp.asarray(kernel)})
  step = jax.jit(lambda v: layer.apply(v, x, True, mutable=['spectral'])[1])
  for _ in range(50):
    variables = dict(variables, **step(variables))
  sigma = float(variables['spectral']['sigma'])
  assert sigma == pytest.approx(np.linalg.svd(kernel, compute_uv=False)[0], rel=1e-4)
  # Eval mode uses the stored vectors and no iteration: W / sigma has unit spectral norm.
  y = layer.apply(variables, jnp.eye(5), False)
  assert np.linalg.svd(np.asarray(y - variables['params']['bias']), compute_uv=False)[0] == (
      pytest.approx(1.0, rel=1e-4))


@pytest.mark.parametrize('overrides', [
    dict(dtype=jnp.bfloat16),
    dict(mask_adaption=False, noise=False, norm='bn'),
    dict(lama_local_blocks=0, norm='gn'),
])
def test_variants_run(overrides):
  """bf16 compute with float32 parameters, and the Table 5 ablations."""
  g = make_generator(64, **TINY, **overrides)
  z, boxes, labels, z_im = _layout(2, 3)
  rngs = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  variables = jax.jit(g.init)(rngs, z, boxes, labels, z_im)
  assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(variables['params']))
  (img, mask, _), _ = jax.jit(lambda v: g.apply(
      v, z, boxes, labels, z_im, train=True, rngs=rngs, mutable=['batch_stats', 'spectral']))(
          variables)
  assert bool(jnp.isfinite(img).all()) and bool(jnp.isfinite(mask).all())
  if overrides.get('mask_adaption') is False:
    assert 'lama' not in variables['params']
  if 'dtype' in overrides:
    d = make_discriminator(64, ch=4, num_classes=14, dtype=jnp.bfloat16)
    d_vars = jax.jit(d.init)(rngs, img, boxes, labels)
    out_im, out_obj, _ = d.apply(d_vars, img, boxes, labels, train=False)
    assert bool(jnp.isfinite(out_im).all()) and bool(jnp.isfinite(out_obj).all())


def test_given_masks_replace_the_layout_to_mask_stage():
  """The mask-to-image experiment of Sec. 3 drives the generator with given (e.g. ground-truth) masks."""
  g = make_generator(64, **TINY)
  z, boxes, labels, z_im = _layout(1, 3)
  masks = jnp.asarray(np.random.RandomState(0).uniform(0, 1, (1, 3, 64, 64)).astype(np.float32))
  rngs = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  variables = jax.jit(lambda: g.init(rngs, z, boxes, labels, z_im, masks=masks))()
  assert 'mask_regress' not in variables['params'] and 'lama' not in variables['params']
  _, mask, raw = g.apply(variables, z, boxes, labels, z_im, masks=masks, rngs=rngs)
  np.testing.assert_array_equal(np.asarray(mask), np.asarray(masks))
  np.testing.assert_array_equal(np.asarray(raw), np.asarray(masks))
