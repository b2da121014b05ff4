"""The diversity score (DS): LPIPS between samples 0 and 1 of each layout, mean ± std.

With one sample per layout (Visual Genome) the driver draws a second one for DS only.
"""
from typing import Any, Callable

import numpy as np

from lama_jax.evaluation.common import Evaluator, SampleBatch, Settings, Target, load_weights
from lama_jax.metrics import lpips


class Diversity(Evaluator):
  """LPIPS distance of the first two samples of every layout."""
  name = 'ds'
  weights = ('lpips_weights', 'alexnet_weights')
  repeats = 2

  def __init__(self, lpips_fn: Callable[[np.ndarray, np.ndarray], Any], batch_size: int):
    super().__init__()
    self.lpips_fn, self.batch_size = lpips_fn, batch_size
    self.first: np.ndarray | None = None
    self.distances: list[np.ndarray] = []

  @classmethod
  def create(cls, settings: Settings, target: Target) -> 'Diversity':
    del target
    lin = load_weights('lpips_weights', lpips.load_lpips_linear_params, settings.lpips_weights)
    alex = load_weights('alexnet_weights', lpips.load_alexnet_params, settings.alexnet_weights)
    return cls(lpips.make_lpips_fn({'net': alex, **lin}), settings.batch_size)

  def add(self, samples: SampleBatch) -> None:
    if samples.repeat == 0:
      self.first = samples.images
    elif samples.repeat == 1:
      self.distances.append(self._distances(self.first, samples.images))

  def _distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """LPIPS per pair of uint8 images, padded to one compiled batch shape."""
    a = a.astype(np.float32) / 127.5 - 1.0
    b = b.astype(np.float32) / 127.5 - 1.0
    n = len(a)
    if n < self.batch_size:
      pad = ((0, self.batch_size - n), (0, 0), (0, 0), (0, 0))
      a, b = np.pad(a, pad), np.pad(b, pad)
    return np.asarray(self.lpips_fn(a, b))[:n]

  def result(self) -> dict[str, Any]:
    d = np.concatenate(self.distances)
    return {'mean': float(d.mean()), 'std': float(d.std(ddof=1)) if d.size > 1 else 0.0,
            'num_pairs': int(d.size)}
