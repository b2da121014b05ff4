"""What the studio's Save button writes: the layout JSON, the image, the masks (PNGs and arrays)."""
import os

import numpy as np

from lama_jax import files
from lama_jax.studio.engine import Rendered
from lama_jax.studio.session import Session


def write_downloads(folder: str, session: Session, rendered: Rendered) -> list[str]:
  """Writes NAME.json (the `sample` CLI's layout format), NAME.png, NAME_mask.png,
  NAME_raw_mask.png and NAME_masks.npz (per-object float masks `mask` and `raw_mask` [O, H, W],
  `labels`, `boxes`, in layout order) into `folder`, each atomically; returns the paths."""
  os.makedirs(folder, exist_ok=True)
  stem = os.path.join(folder, session.name)
  files.write_json(f'{stem}.json', session.layout_json())
  paths = [f'{stem}.json']
  for suffix, picture in (('', rendered.image), ('_mask', rendered.mask),
                          ('_raw_mask', rendered.raw_mask)):
    files.write_png(f'{stem}{suffix}.png', picture)
    paths.append(f'{stem}{suffix}.png')
  boxes = np.asarray([o.box for o in session.objects], np.float32)
  with files.atomic_open(f'{stem}_masks.npz', 'wb') as f:
    np.savez_compressed(f, mask=rendered.masks, raw_mask=rendered.raw_masks,
                        labels=rendered.labels, boxes=boxes)
  paths.append(f'{stem}_masks.npz')
  return paths
