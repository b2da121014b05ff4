"""LPIPS (AlexNet, v0.1): loaders with the official key names and the diversity score."""
import jax
import numpy as np
import pytest

from lama_jax.metrics import lpips


def fake_alexnet_state_dict(seed=0):
  """torchvision alexnet keys and shapes (OIHW), random values, classifier included."""
  rng = np.random.default_rng(seed)
  shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3),
            10: (256, 256, 3, 3)}
  state = {}
  for idx, shape in shapes.items():
    fan_in = np.prod(shape[1:])
    state[f'features.{idx}.weight'] = rng.normal(0, fan_in ** -0.5, shape).astype(np.float32)
    state[f'features.{idx}.bias'] = rng.normal(0, 0.01, shape[:1]).astype(np.float32)
  state['classifier.1.weight'] = np.zeros((4096, 9216), np.float32)
  state['classifier.1.bias'] = np.zeros((4096,), np.float32)
  return state


def fake_lpips_linear_state_dict(seed=1):
  rng = np.random.default_rng(seed)
  return {f'lin{l}.model.1.weight': rng.uniform(0, 0.1, (1, c, 1, 1)).astype(np.float32)
          for l, c in enumerate((64, 192, 384, 256, 256))}


@pytest.fixture(scope='module')
def lpips_fn():
  params = lpips.load_lpips_params(fake_alexnet_state_dict(), fake_lpips_linear_state_dict())
  return lpips.make_lpips_fn(params)


def test_loaders_map_every_tensor():
  params = lpips.load_lpips_params(fake_alexnet_state_dict(), fake_lpips_linear_state_dict())
  x = jax.numpy.zeros((1, 64, 64, 3))
  reference = jax.eval_shape(lpips.LPIPS().init, jax.random.key(0), x, x)['params']
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(reference)
  for got, want in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(reference)):
    assert got.shape == want.shape
  assert len(jax.tree_util.tree_leaves(params)) == 10 + 5


def test_loaders_fail_loudly():
  state = fake_alexnet_state_dict()
  del state['features.8.bias']
  with pytest.raises(KeyError, match='features.8.bias'):
    lpips.load_alexnet_params(state)
  linear = fake_lpips_linear_state_dict()
  del linear['lin3.model.1.weight']
  with pytest.raises(KeyError, match='lin3.model.1.weight'):
    lpips.load_lpips_linear_params(linear)
  linear = dict(fake_lpips_linear_state_dict(), **{'lin0.model.1.weight': np.zeros((1, 3, 1, 1))})
  with pytest.raises(ValueError, match='lin0'):
    lpips.load_lpips_linear_params(linear)


def test_lpips_distance(lpips_fn):
  rng = np.random.default_rng(0)
  a = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  b = rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(lpips_fn(a, a)), 0.0, atol=1e-6)
  d = np.asarray(lpips_fn(a, b))
  assert d.shape == (2,) and (d > 0).all()
  np.testing.assert_allclose(np.asarray(lpips_fn(b, a)), d, rtol=1e-5)


def test_diversity_score(lpips_fn):
  rng = np.random.default_rng(1)
  a = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  b = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  mean, std = lpips.diversity_score(a, b, lpips_fn, batch_size=2)
  assert mean > 0 and std >= 0
  assert lpips.diversity_score(a, a, lpips_fn, batch_size=2) == pytest.approx((0.0, 0.0), abs=1e-6)
