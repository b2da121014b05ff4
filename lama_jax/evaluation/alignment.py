"""Shapes alignment: the share of thing boxes holding their category's colour (shapes set only,
no weights; a stand-in for the YOLO score)."""
from typing import Any

import numpy as np

from lama_jax.evaluation.common import Evaluator, SampleBatch, Settings, Target
from lama_jax.metrics import shapes_alignment
from lama_jax.metrics.shapes_alignment import THING_COLORS


class Alignment(Evaluator):
  """`shapes_alignment` summed over batches and samples."""
  name = 'alignment'
  datasets = ('shapes',)

  def __init__(self, repeats: int = 1):
    super().__init__()
    self.repeats = repeats
    self.hits = {k: 0 for k in THING_COLORS}
    self.totals = {k: 0 for k in THING_COLORS}

  @classmethod
  def create(cls, settings: Settings, target: Target) -> 'Alignment':
    return cls(settings.samples_per_layout(target.dataset))

  def add(self, samples: SampleBatch) -> None:
    if samples.repeat >= self.repeats:
      return
    labels = samples.labels
    result = shapes_alignment(samples.images, samples.boxes, labels)
    for k, (name, _) in THING_COLORS.items():
      total = int(np.sum(labels == k))
      if total:
        self.totals[k] += total
        self.hits[k] += int(round(result['per_category'][name] * total))

  def result(self) -> dict[str, Any]:
    num = sum(self.totals.values())
    return {'overall': sum(self.hits.values()) / num if num else float('nan'),
            'per_category': {name: self.hits[k] / self.totals[k] if self.totals[k] else float('nan')
                             for k, (name, _) in THING_COLORS.items()},
            'num_boxes': num}
