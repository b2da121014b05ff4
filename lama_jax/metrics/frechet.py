"""Fréchet distance between two Gaussians fitted to feature activations (FID's core)."""
from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg


def activation_statistics(acts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance of a set of activations.

  Args:
    acts: [N, D] activations, one row per image.

  Returns:
    (mu [D], sigma [D, D]) in float64; the covariance is unbiased (N - 1), as in
    the TTUR and pytorch-fid scripts (`np.cov(rowvar=False)`).
  """
  acts = np.asarray(acts, dtype=np.float64)
  if acts.ndim != 2 or acts.shape[0] < 2:
    raise ValueError(f'Need [N >= 2, D] activations, got shape {acts.shape}.')
  return acts.mean(axis=0), np.cov(acts, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
  """Fréchet distance d² = |mu1 - mu2|² + Tr(S1 + S2 - 2 (S1 S2)^½).

  Args:
    mu1: [D] mean of the first set.
    sigma1: [D, D] covariance of the first set.
    mu2: [D] mean of the second set.
    sigma2: [D, D] covariance of the second set.
    eps: diagonal offset used only when the product's square root is not finite.

  Returns:
    The distance as a Python float (computed in float64).

  Raises:
    ValueError: on mismatched shapes, or when the square root keeps a large
      imaginary component (a sign of a broken covariance, not of round-off).
  """
  mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape:
    raise ValueError(f'Mean vectors differ in shape: {mu1.shape} vs {mu2.shape}.')
  if sigma1.shape != sigma2.shape:
    raise ValueError(f'Covariances differ in shape: {sigma1.shape} vs {sigma2.shape}.')

  diff = mu1 - mu2
  covmean = linalg.sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    # A (nearly) singular product, e.g. fewer images than feature dimensions.
    warnings.warn(f'Singular product in the Fréchet distance; adding {eps} to the '
                  'diagonal of both covariances.')
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    # Round-off leaves tiny imaginary parts; large ones mean something is wrong.
    if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
      raise ValueError(f'Imaginary component {np.max(np.abs(covmean.imag))} in sqrtm.')
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))
