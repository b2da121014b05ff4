"""Fréchet distance, mask entropy and the FID helpers that need no network."""
import numpy as np
import pytest

from lama_jax.metrics import fid, frechet_distance, mask_entropy, normalize_mask
from lama_jax.metrics.frechet import activation_statistics


def test_frechet_closed_form_diagonal():
  rng = np.random.default_rng(0)
  d = 16
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  v1, v2 = rng.uniform(0.1, 2, d), rng.uniform(0.1, 2, d)
  # For diagonal covariances Tr(S1 + S2 - 2 sqrt(S1 S2)) = Σ (√v1 - √v2)².
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
  assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_of_a_set_with_itself_is_zero():
  acts = np.random.default_rng(1).normal(size=(200, 8)) @ np.random.default_rng(2).normal(size=(8, 8))
  mu, sigma = activation_statistics(acts)
  assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-7)
  # Rotation-invariant check against the rotated set: a full (non-diagonal) covariance.
  q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(8, 8)))
  mu2, sigma2 = activation_statistics(acts @ q)
  assert frechet_distance(mu, sigma, mu2, sigma2) >= 0


def test_frechet_singular_covariance_warns_and_stays_finite():
  acts = np.random.default_rng(4).normal(size=(5, 20))  # rank 4 < 20 dimensions
  mu, sigma = activation_statistics(acts)
  mu2, sigma2 = activation_statistics(acts + 0.5)
  value = frechet_distance(mu, sigma, mu2, sigma2)
  assert np.isfinite(value) and value == pytest.approx(20 * 0.25, rel=1e-2)


def test_cached_statistics(tmp_path):
  calls = []

  def compute():
    calls.append(1)
    return np.arange(3.0), np.eye(3)

  path = tmp_path / 'sub' / 'stats.npz'
  for _ in range(2):
    mu, sigma = fid.cached_statistics(path, compute)
    np.testing.assert_array_equal(mu, np.arange(3.0))
    np.testing.assert_array_equal(sigma, np.eye(3))
  assert len(calls) == 1


def test_fid_from_images_with_a_toy_extractor():
  rng = np.random.default_rng(5)
  real = rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8)
  extractor = lambda x: x.reshape(len(x), -1)[:, :6].astype(np.float64)
  assert fid.fid_from_images(real, real, extractor) == pytest.approx(0.0, abs=1e-6)
  assert fid.fid_from_images(real, real // 2, extractor) > 100


def test_object_crops_rounding_and_labels():
  image = np.zeros((64, 64, 3), np.uint8)
  image[10:30, 20:40] = 255  # a white square at x 20..40, y 10..30
  boxes = np.array([[20 / 64, 10 / 64, 20 / 64, 20 / 64], [0, 0, 1, 1], [0.1, 0.1, 0.5, 0.5]])
  labels = np.array([3, 0, 7])
  crops = fid.object_crops(image, boxes, labels, size=32)
  assert len(crops) == 2 and crops[0].shape == (32, 32, 3) and crops[0].dtype == np.uint8
  assert crops[0].min() >= 250  # exactly the square
  # A corner at 20.3 px: ceil starts the crop at column 21, floor at 20 (the two official scripts).
  ramp = np.broadcast_to((np.arange(64, dtype=np.uint8) * 4)[None, :, None], (64, 64, 3)).copy()
  box = np.array([[20.3 / 64, 10 / 64, 10 / 64, 10 / 64]])
  ceil = fid.object_crops(ramp, box, [1], size=10)[0]
  floor = fid.object_crops(ramp, box, [1], size=10, rounding='floor')[0]
  assert ceil[0, 0, 0] == 84 and floor[0, 0, 0] == 80


def test_mask_entropy_extremes():
  o, h, w = 4, 5, 6
  one_hot = np.zeros((2, o, h, w))
  one_hot[:, 0] = 1.0
  one_hot[1, :, 2, 3] = [0, 0, 1, 0]  # one pixel belongs to another object
  assert mask_entropy(one_hot) == pytest.approx(0.0, abs=1e-12)
  uniform = np.full((2, o, h, w), 1.0 / o)
  assert mask_entropy(uniform) == pytest.approx(np.log(o))


def test_normalize_mask_matches_the_norm_layer():
  raw = np.random.default_rng(6).uniform(0, 1, (2, 3, 4, 4))
  norm = normalize_mask(raw)
  np.testing.assert_allclose(norm, raw / (raw.sum(axis=1, keepdims=True) + 1e-4))
  assert 0 <= mask_entropy(norm) <= np.log(3)
  # Zero mask stays zero (no NaN from 0/0 or 0 log 0).
  assert mask_entropy(normalize_mask(np.zeros((3, 2, 2)))) == 0.0
