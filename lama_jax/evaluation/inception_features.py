"""Inception features streamed into running statistics: nothing holds every image of the split."""
import functools
import os
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lama_jax.evaluation.common import NotComputed, load_weights
from lama_jax.metrics import inception
from lama_jax.models.resize import resize_bilinear

Extractor = Callable[[np.ndarray], np.ndarray]


class Moments:
  """Running mean and covariance (unbiased, as np.cov) of feature rows, in float64."""

  def __init__(self):
    self.n, self.sum, self.outer = 0, None, None

  def add(self, feats: np.ndarray) -> None:
    feats = np.asarray(feats, np.float64)
    if not len(feats):
      return
    if self.sum is None:
      self.sum = np.zeros(feats.shape[1])
      self.outer = np.zeros((feats.shape[1], feats.shape[1]))
    self.n += len(feats)
    self.sum += feats.sum(0)
    self.outer += feats.T @ feats

  def stats(self) -> tuple[np.ndarray, np.ndarray]:
    if self.n < 2:
      raise NotComputed(f'FID needs at least 2 images, got {self.n}')
    mu = self.sum / self.n
    sigma = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
    return mu, sigma


class InceptionStats:
  """Buffers uint8 images (any size) and feeds them to Inception in full batches."""

  def __init__(self, extract: Extractor, batch_size: int):
    self.extract, self.batch_size = extract, batch_size
    self.buffer: list[np.ndarray] = []
    self.moments = Moments()

  def add(self, images: Sequence[np.ndarray]) -> None:
    self.buffer.extend(images)
    while len(self.buffer) >= self.batch_size:
      batch, self.buffer = self.buffer[:self.batch_size], self.buffer[self.batch_size:]
      self.moments.add(self.extract(np.stack(batch)))

  def stats(self) -> tuple[np.ndarray, np.ndarray]:
    if self.buffer:
      self.moments.add(self.extract(np.stack(self.buffer)))
      self.buffer = []
    return self.moments.stats()


def make_inception(weights: str, batch_size: int) -> Extractor:
  """See `_make_inception`; reuses the compiled extractor while the weights file is unchanged."""
  stat = os.stat(weights)
  return _make_inception(os.path.abspath(weights), stat.st_mtime_ns, stat.st_size, batch_size)


@functools.lru_cache(maxsize=1)
def _make_inception(weights: str, mtime_ns: int, size: int,  # pylint: disable=unused-argument
                    batch_size: int) -> Extractor:
  """images uint8 [N, H, W, 3] (any H, W) → [N, 2048]; one compiled Inception for every size.

  Images are resized to 299×299 by a small jitted program (the same bilinear resize the model
  would apply), so full images and 224×224 crops share one compiled Inception.
  """
  variables = load_weights('inception_weights', inception.load_inception_params, weights)
  extractor = inception.InceptionFeatureExtractor(variables, batch_size=batch_size,
                                                  resize_input=False)
  side = inception.INPUT_SIZE
  resize = jax.jit(lambda x: resize_bilinear(x.astype(jnp.float32) / 255.0, side, side))

  def extract(images: np.ndarray) -> np.ndarray:
    n = len(images)  # at most batch_size (InceptionStats); padded: one resize program per size
    if n < batch_size:
      images = np.concatenate([images, np.zeros((batch_size - n, *images.shape[1:]), np.uint8)])
    return extractor(np.asarray(resize(jnp.asarray(images))), progress=False)[:n]
  return extract
