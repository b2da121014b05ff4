"""What the studio's Save button writes: the layout JSON, the image, the masks (PNGs and arrays)."""
import os

import numpy as np

from lama_jax import files
from lama_jax.studio.engine import Rendered
from lama_jax.studio.session import Session


def write_downloads(folder: str, session: Session, rendered: Rendered) -> list[str]:
  """Writes NAME.json (the `sample` CLI's layout format), NAME.png, NAME_mask.png,
  NAME_raw_mask.png and NAME_masks.npz (per-object float masks `mask` and `raw_mask` [O, H, W],
  `labels`, `boxes`, in layout order) into the new folder `folder`, all or none (a failed write
  leaves no folder); returns the paths."""
  names = [f'{session.name}{suffix}' for suffix in
           ('.json', '.png', '_mask.png', '_raw_mask.png', '_masks.npz')]
  with files.atomic_dir(folder) as tmp:
    json_path, image, mask, raw_mask, arrays = (os.path.join(tmp, n) for n in names)
    files.write_json(json_path, session.layout_json())
    for path, picture in ((image, rendered.image), (mask, rendered.mask),
                          (raw_mask, rendered.raw_mask)):
      files.write_png(path, picture)
    boxes = np.asarray([o.box for o in session.objects], np.float32)
    with files.atomic_open(arrays, 'wb') as f:
      np.savez_compressed(f, mask=rendered.masks, raw_mask=rendered.raw_masks,
                          labels=rendered.labels, boxes=boxes)
  return [os.path.join(folder, n) for n in names]
