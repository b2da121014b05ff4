"""Mask entropy (paper Eq. 5): how clearly a mask assigns each pixel to one object."""
from __future__ import annotations

import numpy as np


def normalize_mask(mask: np.ndarray, eps: float = 1e-4) -> np.ndarray:
  """Normalises a mask over objects as the generator's norm layers do.

  The official SpatialAdaptiveSynBatchGroupNorm2d divides the resized mask by
  its sum over objects plus 1e-4 before mixing the per-object affine
  parameters, so this is the mask the generator actually uses.

  Args:
    mask: [..., O, H, W] non-negative mask (raw or adapted).
    eps: added to the per-pixel sum; 1e-4 as in the official code.

  Returns:
    The normalised mask, same shape, float64.
  """
  mask = np.asarray(mask, dtype=np.float64)
  return mask / (mask.sum(axis=-3, keepdims=True) + eps)


def mask_entropy(mask: np.ndarray) -> float:
  """Mean per-pixel entropy H(M) = -1/(WH) Σ_j Σ_i M_ij log M_ij (natural log).

  Args:
    mask: [..., O, H, W] whose values sum to (about) 1 over the O objects at
      each pixel, e.g. the output of `normalize_mask`. Leading axes (batch) are
      averaged over too.

  Returns:
    The mean entropy over pixels (and leading axes), in [0, log O].
  """
  mask = np.asarray(mask, dtype=np.float64)
  if mask.ndim < 3:
    raise ValueError(f'Expected [..., O, H, W], got shape {mask.shape}.')
  # 0 log 0 = 0: take the log only where the mass is positive.
  safe = np.where(mask > 0, mask, 1.0)
  plogp = np.where(mask > 0, mask * np.log(safe), 0.0)
  return float(-plogp.sum(axis=-3).mean())
