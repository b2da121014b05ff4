"""Our Inception-v3, LPIPS and Fréchet distance against pytorch-fid and lpips, with the same weights.

The weights are random (no pretrained file may be downloaded or committed) and made here from a seed
(`inception_state_dict`, `alexnet_state_dict`, `lpips_linear_state_dict`, numpy only). How
`tests/fixtures/metric_networks.npz` was made: those state dicts saved as .pth files in the reference
packages' own key formats (pytorch-fid's `pt_inception-2015-12-05` keys; the `lpips` package's
`LPIPS(pretrained=False, net='alex', version='0.1', pnet_rand=True)` with its AlexNet slices and
lin layers overwritten), then, with pytorch-fid 0.3.0, lpips 0.1.4, torch 2.14.1 CPU:
  pool3 = pytorch_fid.inception.InceptionV3([3], resize_input=True, normalize_input=True)(images)
          (its FID weights loader pointed at the saved .pth instead of the download URL);
  lpips = lpips_model(x0, x1) for the image pairs, inputs in [-1, 1];
  fd    = pytorch_fid.fid_score.calculate_frechet_distance(mu/sigma of pool3[:3], of pool3[3:]).
  fd_regular = the same on two sets of 64 random 8-d features (`feats_a`, `feats_b`).
Stored: `images` (uint8, [N, H, W, 3]), `pool3` [N, 2048], `pairs` (uint8, [2, P, H, W, 3]),
`lpips` [P], `fd`, `feats_a`, `feats_b`, `fd_regular`, and `weight_sums` (float64 sums of the generated weights, so a change in NumPy's
random streams fails loudly here rather than as a mismatch further down).

Measured when the fixture was made (the .pth files read by our loaders): pool3 features differ by at
most 3.8e-6 (features up to 5.7, so 6.7e-7 of the largest); LPIPS by at most 2.4e-7 relative; the
Fréchet distance is the same float on the 2048-d features (3.1650197305) and on the
well-conditioned set.
"""
import os
import warnings

import jax.numpy as jnp
import numpy as np
import pytest

from lama_jax.metrics import frechet, inception, lpips

FIXTURE = os.path.join(os.path.dirname(__file__), 'fixtures', 'metric_networks.npz')
SEED = 11


def inception_state_dict(seed: int = SEED) -> dict[str, np.ndarray]:
  """pytorch-fid's FID Inception keys and shapes; He-normal convolutions, BatchNorms near identity
  (so pool3 features stay of order 0.1-1 through the 94 layers)."""
  from tests.test_metrics_inception import _pytorch_fid_convs  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(seed)
  state = {}
  for name, cin, cout, kh, kw in _pytorch_fid_convs():
    state[f'{name}.conv.weight'] = rng.normal(0, (2 / (cin * kh * kw)) ** 0.5,
                                              (cout, cin, kh, kw)).astype(np.float32)
    state[f'{name}.bn.weight'] = rng.uniform(0.8, 1.2, cout).astype(np.float32)
    state[f'{name}.bn.bias'] = rng.normal(0, 0.1, cout).astype(np.float32)
    state[f'{name}.bn.running_mean'] = rng.normal(0, 0.1, cout).astype(np.float32)
    state[f'{name}.bn.running_var'] = rng.uniform(0.8, 1.2, cout).astype(np.float32)
  state['fc.weight'] = (rng.normal(0, 0.01, (1008, 2048))).astype(np.float32)
  state['fc.bias'] = np.zeros((1008,), np.float32)
  return state


def alexnet_state_dict(seed: int = SEED + 1) -> dict[str, np.ndarray]:
  """torchvision AlexNet `features` keys and shapes (OIHW), He-normal weights."""
  rng = np.random.default_rng(seed)
  shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3),
            10: (256, 256, 3, 3)}
  state = {}
  for idx, shape in shapes.items():
    state[f'features.{idx}.weight'] = rng.normal(0, (2 / np.prod(shape[1:])) ** 0.5,
                                                 shape).astype(np.float32)
    state[f'features.{idx}.bias'] = rng.normal(0, 0.01, shape[:1]).astype(np.float32)
  return state


def lpips_linear_state_dict(seed: int = SEED + 2) -> dict[str, np.ndarray]:
  """lpips v0.1 `lin{l}.model.1.weight`, non-negative as trained ones are."""
  rng = np.random.default_rng(seed)
  return {f'lin{l}.model.1.weight': rng.uniform(0, 0.1, (1, c, 1, 1)).astype(np.float32)
          for l, c in enumerate(lpips.ALEX_CHANNELS)}


def weight_sums() -> np.ndarray:
  states = (inception_state_dict(), alexnet_state_dict(), lpips_linear_state_dict())
  return np.array([sum(float(np.sum(v, dtype=np.float64)) for v in s.values()) for s in states])


@pytest.fixture(scope='module')
def fixture():
  data = np.load(FIXTURE)
  np.testing.assert_allclose(weight_sums(), data['weight_sums'], rtol=1e-12,
                             err_msg='NumPy made other random weights than when the fixture was made')
  return data


def test_inception_pool3_equals_pytorch_fid(fixture):
  variables = inception.load_inception_params(inception_state_dict())
  extractor = inception.InceptionFeatureExtractor(variables, batch_size=len(fixture['images']))
  ours = extractor(fixture['images'], progress=False)
  want = fixture['pool3']
  assert want.shape == ours.shape and np.abs(want).max() > 0.05  # features of a real scale
  np.testing.assert_allclose(ours, want, rtol=0, atol=1e-4 * np.abs(want).max())


def test_frechet_distance_equals_pytorch_fid(fixture):
  pool3 = fixture['pool3'].astype(np.float64)
  with warnings.catch_warnings():  # 3 images in 2048 dimensions: scipy warns the product is singular
    warnings.simplefilter('ignore')
    got = frechet.frechet_distance(*frechet.activation_statistics(pool3[:3]),
                                   *frechet.activation_statistics(pool3[3:]))
  np.testing.assert_allclose(got, float(fixture['fd']), rtol=1e-6)
  # A well-conditioned case too (64 samples of 8-d features), whose square root is unambiguous.
  got = frechet.frechet_distance(*frechet.activation_statistics(fixture['feats_a']),
                                 *frechet.activation_statistics(fixture['feats_b']))
  np.testing.assert_allclose(got, float(fixture['fd_regular']), rtol=1e-9)


def test_lpips_equals_the_lpips_package(fixture):
  params = lpips.load_lpips_params(alexnet_state_dict(), lpips_linear_state_dict())
  fn = lpips.make_lpips_fn(params)
  pairs = fixture['pairs'].astype(np.float32) / 127.5 - 1.0
  ours = np.asarray(fn(jnp.asarray(pairs[0]), jnp.asarray(pairs[1])))
  want = fixture['lpips']
  assert (want > 0).all()
  np.testing.assert_allclose(ours, want, rtol=1e-4, atol=0)
