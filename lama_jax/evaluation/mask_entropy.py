"""Mask entropy (paper Sec. 5, Table 4): how clearly the raw and adapted masks assign each pixel to
one object, with LAMA's strength |α|."""
from typing import Any

from lama_jax.evaluation.common import Evaluator, SampleBatch, Settings, Target
from lama_jax.metrics import mask_entropy, normalize_mask


class MaskEntropy(Evaluator):
  """Mean per-image entropy of the normalised raw and adapted masks."""
  name = 'mask_entropy'

  def __init__(self, repeats: int = 1, alpha: float | None = None):
    super().__init__()
    self.repeats, self.alpha = repeats, alpha
    self.n, self.raw, self.adapted = 0, 0.0, 0.0

  @classmethod
  def create(cls, settings: Settings, target: Target) -> 'MaskEntropy':
    return cls(settings.samples_per_layout(target.dataset), target.lama_alpha)

  def add(self, samples: SampleBatch) -> None:
    if samples.repeat >= self.repeats:
      return
    n = len(samples.masks)
    # Padding channels are exactly zero: they add nothing to the normalisation or the entropy.
    self.raw += mask_entropy(normalize_mask(samples.raw_masks)) * n
    self.adapted += mask_entropy(normalize_mask(samples.masks)) * n
    self.n += n

  def result(self) -> dict[str, Any]:
    out = {'raw': self.raw / self.n, 'adapted': self.adapted / self.n, 'num_images': self.n}
    if self.alpha is not None:
      out['abs_alpha'] = abs(min(max(self.alpha, -1.0), 1.0))
    return out
