"""Sample grids of the validation layouts, and the evaluators scored beside them during training.

Grid rows, labelled on the picture: real images, generated images, raw masks, adapted masks, each
with the layout's boxes and category names drawn on top; one column per layout.
"""
from collections.abc import Mapping, Sequence

import numpy as np

from lama_jax import visualize
from lama_jax.inference.generator import LayoutGenerator

ROWS = (('real', 'real'), ('fake', 'generated'), ('raw_mask', 'raw mask'),
        ('mask', 'adapted mask'))
GRID_SEED = 1  # the same z for every grid of a run, so grids show training progress


def sample(gen: LayoutGenerator, layouts: Mapping[str, np.ndarray], seed: int = GRID_SEED):
  """Eval-mode samples of `layouts` (with their ground-truth masks when given)."""
  masks = layouts.get('masks')
  if masks is not None:
    masks = gen.place_masks(layouts['boxes'], masks)
  return gen.generate(layouts['boxes'], layouts['labels'], seed=seed, strict=False, masks=masks)


def grids(gen: LayoutGenerator, layouts: Mapping[str, np.ndarray],
          names: Mapping[int, str] | Sequence[str] | None = None) -> dict[str, np.ndarray]:
  """uint8 pictures: one labelled grid of every row ('samples'), each row alone, the plain fakes."""
  out = sample(gen, layouts)
  boxes, labels, k = layouts['boxes'], layouts['labels'], gen.num_classes
  pictures = {
      'real': visualize.to_uint8(layouts['image']),
      'fake': visualize.to_uint8(out.image),
      'raw_mask': visualize.colorize_masks(out.raw_mask, labels, k),
      'mask': visualize.colorize_masks(out.mask, labels, k),
  }
  drawn = {key: visualize.draw_layout(p, boxes, labels, names, k) for key, p in pictures.items()}
  ncol = min(8, len(labels))
  result = {key: visualize.make_grid(p, ncol) for key, p in drawn.items()}
  result['fake_plain'] = visualize.make_grid(pictures['fake'], ncol)
  result['samples'] = visualize.labelled_grid([list(drawn[key]) for key, _ in ROWS],
                                              row_titles=[title for _, title in ROWS])
  return result
