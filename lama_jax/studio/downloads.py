"""What the studio's Save button writes: the layout JSON, the image, the masks (PNGs and arrays)."""
import json
import os
import tempfile

import numpy as np

from lama_jax.sample import write_png
from lama_jax.studio.engine import Rendered
from lama_jax.studio.session import Session


def _write_atomic(path: str, write) -> None:
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix='.tmp_', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def write_downloads(folder: str, session: Session, rendered: Rendered) -> list[str]:
  """Writes NAME.json (the `sample` CLI's layout format), NAME.png, NAME_mask.png,
  NAME_raw_mask.png and NAME_masks.npz (per-object float masks `mask` and `raw_mask` [O, H, W],
  `labels`, `boxes`, in layout order) into `folder`; returns the paths."""
  os.makedirs(folder, exist_ok=True)
  stem = os.path.join(folder, session.name)
  layout = json.dumps(session.layout_json(), indent=1).encode()
  _write_atomic(f'{stem}.json', lambda f: f.write(layout))
  paths = [f'{stem}.json']
  for suffix, picture in (('', rendered.image), ('_mask', rendered.mask),
                          ('_raw_mask', rendered.raw_mask)):
    write_png(f'{stem}{suffix}.png', picture)
    paths.append(f'{stem}{suffix}.png')
  boxes = np.asarray([o.box for o in session.objects], np.float32)
  _write_atomic(f'{stem}_masks.npz', lambda f: np.savez_compressed(
      f, mask=rendered.masks, raw_mask=rendered.raw_masks, labels=rendered.labels, boxes=boxes))
  paths.append(f'{stem}_masks.npz')
  return paths
