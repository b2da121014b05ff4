"""The classification accuracy score (CAS): a ResNet trained on 32×32 crops of the generated
objects, tested on the real val crops."""
from typing import Any

import numpy as np

from lama_jax.evaluation.common import Evaluator, NotComputed, SampleBatch, Settings, Target
from lama_jax.evaluation.fid import crop_objects
from lama_jax.metrics import cas

CAS_CROP = 32


class Cas(Evaluator):
  """Collects object crops of every sample and of the real images; trains and scores at the end."""
  name = 'cas'
  needs_real = True

  def __init__(self, repeats: int, num_classes: int, epochs: int, seed: int):
    super().__init__()
    self.repeats, self.num_classes, self.epochs, self.seed = repeats, num_classes, epochs, seed
    self.fake: list[np.ndarray] = []
    self.fake_labels: list[int] = []
    self.real: list[np.ndarray] = []
    self.real_labels: list[int] = []

  @classmethod
  def create(cls, settings: Settings, target: Target) -> 'Cas':
    return cls(settings.samples_per_layout(target.dataset), target.num_classes,
               settings.cas_epochs, settings.seed)

  def add(self, samples: SampleBatch) -> None:
    if samples.repeat == 0:
      crops, labels = crop_objects(samples.real, samples.boxes, samples.labels, CAS_CROP, 'ceil')
      self.real += crops
      self.real_labels += labels
    if samples.repeat < self.repeats:
      crops, labels = crop_objects(samples.images, samples.boxes, samples.labels, CAS_CROP,
                                   'floor')
      self.fake += crops
      self.fake_labels += labels

  def result(self) -> dict[str, Any]:
    if not self.fake or not self.real:
      raise NotComputed('cas: the evaluated layouts hold no objects')
    try:
      acc = cas.train_and_score(np.stack(self.fake), np.asarray(self.fake_labels),
                                np.stack(self.real), np.asarray(self.real_labels),
                                num_classes=self.num_classes, epochs=self.epochs, seed=self.seed)
    except FloatingPointError as e:  # the classifier's loss diverged
      raise NotComputed(f'cas: {e}') from None
    return {'accuracy': acc, 'train_crops': len(self.fake), 'test_crops': len(self.real)}
