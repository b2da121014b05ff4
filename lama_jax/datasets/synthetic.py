"""Random layouts and images ('synthetic' dataset): benchmarks and tests without prepared data."""
from collections.abc import Iterator

import numpy as np

STEPS_PER_EPOCH = 1000  # nominal: the synthetic stream has no epochs


def synthetic_batches(image_size: int, max_objects: int, num_classes: int, batch_size: int,
                      seed: int, with_masks: bool = False) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches {image, boxes, labels[, masks]}: boxes inside the image, every label > 0."""
  rng = np.random.default_rng(seed)
  s, o = image_size, max_objects
  while True:
    xy = rng.uniform(0.0, 0.6, (batch_size, o, 2))
    wh = rng.uniform(0.1, 0.4, (batch_size, o, 2))
    batch = {'image': rng.uniform(-1, 1, (batch_size, s, s, 3)).astype(np.float32),
             'boxes': np.concatenate([xy, wh], -1).astype(np.float32),
             'labels': rng.integers(1, num_classes, (batch_size, o)).astype(np.int32)}
    if with_masks:
      batch['masks'] = (rng.uniform(size=(batch_size, o, 32, 32)) > 0.5).astype(np.float32)
    yield batch
