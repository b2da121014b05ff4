"""FID and SceneFID on top of the Inception features and the Fréchet distance."""
from __future__ import annotations

import os
from typing import Callable
import zipfile

import numpy as np
from PIL import Image

from lama_jax import files
from lama_jax.metrics.frechet import activation_statistics, frechet_distance

Statistics = tuple[np.ndarray, np.ndarray]


def fid_from_images(real: np.ndarray, fake: np.ndarray,
                    extractor: Callable[[np.ndarray], np.ndarray]) -> float:
  """FID between two image sets.

  Args:
    real: [N, H, W, 3] uint8 real images.
    fake: [M, H', W', 3] uint8 generated images.
    extractor: images → [N, 2048] features, e.g. an `InceptionFeatureExtractor`.

  Returns:
    The Fréchet distance of the two sets' feature statistics.
  """
  return frechet_distance(*activation_statistics(extractor(real)),
                          *activation_statistics(extractor(fake)))


def read_statistics(cache_path: str | os.PathLike, source: str | None = None
                    ) -> Statistics | None:
  """(mu [D], sigma [D, D]) from an .npz that `cached_statistics` wrote; None if there is none,
  or if `source` is given and the file was written for another one (or for none).

  Raises:
    ValueError: the file is damaged (a disk error, a copy cut short) or holds something else; the
      message names it.
  """
  cache_path = os.fspath(cache_path)
  if not os.path.exists(cache_path):
    return None
  # Checked first: np.load takes any other file for a pickle and suggests loading it unsafely.
  if os.path.isfile(cache_path) and not zipfile.is_zipfile(cache_path):
    raise ValueError(f'{cache_path}: not an .npz archive (cut short or damaged?)')
  try:
    with np.load(cache_path, allow_pickle=False) as data:
      mu, sigma = np.asarray(data['mu'], np.float64), np.asarray(data['sigma'], np.float64)
      written_for = str(data['source']) if 'source' in data.files else None
  except (OSError, ValueError, KeyError, EOFError, AttributeError, zipfile.BadZipFile) as e:
    raise ValueError(f'{cache_path}: not readable statistics ({type(e).__name__}: {e})') from None
  if mu.ndim != 1 or sigma.shape != (len(mu), len(mu)):
    raise ValueError(f'{cache_path}: mu {list(mu.shape)} and sigma {list(sigma.shape)} are not '
                     'statistics of one feature size')
  if source is not None and written_for != source:
    return None
  return mu, sigma


def cached_statistics(cache_path: str | os.PathLike, compute_fn: Callable[[], Statistics],
                      source: str | None = None) -> Statistics:
  """Loads (mu, sigma) from an .npz, or computes and saves them there.

  Real-set statistics are the same for every checkpoint evaluated, so computing
  them once saves most of an evaluation's Inception time.

  Args:
    cache_path: the .npz file (keys 'mu' and 'sigma', and 'source' when given).
    compute_fn: called only on a cache miss; returns (mu, sigma).
    source: what the statistics were computed with (weights, settings): a file written for
      another source is a miss, computed again and replaced.

  Returns:
    (mu, sigma) as float64 arrays.

  Raises:
    ValueError: the cache is damaged (`read_statistics`).
  """
  cache_path = os.fspath(cache_path)
  cached = read_statistics(cache_path, source)
  if cached is not None:
    return cached
  mu, sigma = compute_fn()
  os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
  tag = {} if source is None else {'source': np.asarray(source)}
  with files.atomic_open(cache_path, 'wb') as f:  # an interrupted run leaves no truncated cache
    np.savez(f, mu=np.asarray(mu, np.float64), sigma=np.asarray(sigma, np.float64), **tag)
  return np.asarray(mu, np.float64), np.asarray(sigma, np.float64)


def object_crops(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: int = 224,
                 rounding: str = 'ceil') -> list[np.ndarray]:
  """Crops every object (label > 0) and resizes it to size × size, bicubic (SceneFID).

  The official scripts turn normalised boxes into pixel corners (x0, y0, x0 + w,
  y0 + h) × image size and crop with PIL. They round differently for the two
  sides of the comparison: real crops (utils/extract_cropped_objects.py) take
  the ceiling of every corner, generated crops (test.py) truncate with
  `.to(torch.int)`. `rounding` selects which; pass 'floor' for generated images
  to reproduce test.py exactly.

  Args:
    image: [H, W, 3] uint8.
    boxes: [O, 4] normalised (x, y, w, h).
    labels: [O] class ids; 0 (the image/padding object) is skipped.
    size: side of the output crops (224 for SceneFID, 32 for CAS).
    rounding: 'ceil' (real crops) or 'floor' (generated crops, test.py).

  Returns:
    A list of [size, size, 3] uint8 crops, in box order.
  """
  if rounding not in ('ceil', 'floor'):
    raise ValueError(f"rounding must be 'ceil' or 'floor', got {rounding!r}")
  h, w = image.shape[:2]
  pil = Image.fromarray(np.asarray(image, np.uint8))
  # float32 arithmetic in the official order ((x + w) * W, not x*W + w*W), as torch
  # does it, so that ceil/floor land on the same integers.
  boxes = np.asarray(boxes, np.float32)
  corners = np.stack([boxes[:, 0] * w, boxes[:, 1] * h,
                      (boxes[:, 2] + boxes[:, 0]) * w, (boxes[:, 3] + boxes[:, 1]) * h], axis=1)
  corners = np.ceil(corners) if rounding == 'ceil' else np.trunc(corners)
  crops = []
  for corner, label in zip(corners.astype(int), np.asarray(labels).reshape(-1)):
    if label > 0:
      crop = pil.crop(tuple(int(c) for c in corner)).resize((size, size), resample=Image.BICUBIC)
      crops.append(np.asarray(crop))
  return crops
