r"""The shapes set: a synthetic layout-to-image dataset in the COCO-Stuff 2017 folder layout.

Each 128x128 image has two stuff regions split at a random horizon (sky or wall above; grass, sand or
water below) and 1 to 6 flat-coloured things (one shape and colour per category) painted in order, so
later things hide earlier ones. Every annotation carries the RLE of its *visible* pixels, its bbox, area
and iscrowd 0, so the COCO-Stuff builder and its official filters prepare it unchanged.

Usage:
  python -m lama_jax.datasets.shapes --out data/shapes [--num_train 10000 --num_val 500 --seed 0]

Files written (image ids: train 1..N, val 1_000_001..):
  OUT/annotations/{instances,stuff}_{train,val}2017.json
  OUT/{train,val}2017/000000000001.png ...

Each image is drawn from its own seed (seed, split, index), so the output is byte-identical for a seed
whatever the number of worker processes.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

import json
import multiprocessing
import os
import signal
import time
from collections.abc import Sequence

from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from PIL import ImageDraw

from lama_jax import cli
from lama_jax import files

SIZE = 128  # image side in pixels
MAX_THINGS = 6
THING_SIZE = (0.15, 0.60)  # thing side as a fraction of the image side
HORIZON = (0.30, 0.70)  # horizon height as a fraction of the image height
NOISE_STD = 4.0  # texture noise on stuff, in 0..255 units
VAL_ID_OFFSET = 1_000_000  # val image ids start above this, so ids are unique across splits
MAX_IMAGES = 200_000  # per split: ~17 KB a PNG, 3.4 GB at the limit (and the ids stay unique)

THING_COLORS = {
    1: (220, 40, 40),  # disk, red
    2: (240, 210, 30),  # square, yellow
    3: (30, 60, 220),  # triangle, blue
    4: (210, 40, 200),  # diamond, magenta
    5: (30, 210, 220),  # cross, cyan
    6: (245, 130, 20),  # hexagon, orange
    7: (245, 245, 245),  # ring, white
    8: (20, 20, 20),  # star, black
}
STUFF_COLORS = {
    9: (135, 190, 235),  # sky
    10: (150, 150, 150),  # wall
    11: (70, 140, 50),  # grass
    12: (210, 190, 130),  # sand
    13: (40, 90, 150),  # water
}
CATEGORY_NAMES = {
    0: '__image__', 1: 'disk', 2: 'square', 3: 'triangle', 4: 'diamond', 5: 'cross',
    6: 'hexagon', 7: 'ring', 8: 'star', 9: 'sky', 10: 'wall', 11: 'grass', 12: 'sand', 13: 'water',
}
TOP_STUFF = (9, 10)
BOTTOM_STUFF = (11, 12, 13)
SPLITS = ('train', 'val')


def _thing_mask(category: int, x0: int, y0: int, s: int) -> np.ndarray:
  """Boolean [SIZE, SIZE] mask of one thing whose bounding square is (x0, y0, s, s)."""
  img = Image.new('L', (SIZE, SIZE), 0)
  draw = ImageDraw.Draw(img)
  x1, y1 = x0 + s - 1, y0 + s - 1
  cx, cy, r = x0 + (s - 1) / 2, y0 + (s - 1) / 2, (s - 1) / 2
  if category == 1:  # disk
    draw.ellipse((x0, y0, x1, y1), fill=1)
  elif category == 2:  # square
    draw.rectangle((x0, y0, x1, y1), fill=1)
  elif category == 3:  # triangle, apex up
    draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=1)
  elif category == 4:  # diamond
    draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=1)
  elif category == 5:  # cross: bars a third of the side wide
    t = s / 6
    draw.rectangle((x0, round(cy - t), x1, round(cy + t)), fill=1)
    draw.rectangle((round(cx - t), y0, round(cx + t), y1), fill=1)
  elif category == 6:  # hexagon, vertices left and right
    pts = [(cx + r * np.cos(a), cy + r * np.sin(a)) for a in np.arange(6) * np.pi / 3]
    draw.polygon(pts, fill=1)
  elif category == 7:  # ring: the hole shows what lies below, so it is not part of the mask
    draw.ellipse((x0, y0, x1, y1), fill=1)
    inner = round(s * 0.22)
    draw.ellipse((x0 + inner, y0 + inner, x1 - inner, y1 - inner), fill=0)
  elif category == 8:  # five-pointed star
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    draw.polygon([(cx + q * np.cos(a), cy + q * np.sin(a)) for q, a in zip(radii, angles)], fill=1)
  else:
    raise ValueError(f'Unknown thing category {category}.')
  return np.asarray(img, dtype=bool)


def _stuff_pixels(category: int, height: int, y_offset: int, rng: np.random.Generator) -> np.ndarray:
  """Float [height, SIZE, 3] texture of one stuff region starting at row `y_offset`."""
  base = np.array(STUFF_COLORS[category], np.float32)
  pix = np.broadcast_to(base, (height, SIZE, 3)).copy()
  ys = np.arange(height, dtype=np.float32)[:, None]
  xs = np.arange(SIZE, dtype=np.float32)[None, :]
  if category == 9:  # sky: paler towards the top
    fade = 0.35 * (1.0 - ys / max(height - 1, 1))
    pix += (255.0 - base) * fade[..., None]
  elif category == 10:  # wall: mortar lines every 8 rows, joints every 16 columns, offset per course
    row = (ys + y_offset) // 8
    mortar = ((ys + y_offset) % 8 == 0) | ((xs + 8 * (row % 2)) % 16 == 0)
    pix[mortar] = base - 45
  elif category == 13:  # water: lighter wave crests
    phase = rng.uniform(0, 2 * np.pi)
    crest = np.sin(2 * np.pi * (ys + y_offset) / 7 + 0.8 * np.sin(xs / 9 + phase)) > 0.75
    pix[np.broadcast_to(crest, (height, SIZE))] = base + (35, 35, 35)
  pix += rng.normal(0.0, NOISE_STD, size=(height, SIZE, 1))  # mild texture, same on all channels
  return pix


def _annotation(mask: np.ndarray, category: int) -> dict | None:
  """COCO annotation (without ids) for the visible pixels `mask`; None when nothing is visible."""
  area = int(mask.sum())
  if area == 0:
    return None
  # Imported here: `benchmark` imports this module (its limits) on machines without pycocotools.
  from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
  bbox = [float(v) for v in mask_utils.toBbox(rle)]
  return {'category_id': category, 'bbox': bbox, 'area': area, 'iscrowd': 0,
          'segmentation': {'size': [SIZE, SIZE], 'counts': rle['counts'].decode('ascii')}}


def render(seed: int, split_index: int, index: int) -> tuple[np.ndarray, list[dict], list[dict]]:
  """Draws one image.

  Args:
    seed: the dataset seed.
    split_index: 0 for train, 1 for val.
    index: the image's index within its split.

  Returns:
    (uint8 [SIZE, SIZE, 3] image, thing annotations, stuff annotations), annotations without ids.
  """
  rng = np.random.default_rng([seed, split_index, index])
  horizon = int(round(rng.uniform(*HORIZON) * SIZE))
  top, bottom = int(rng.choice(TOP_STUFF)), int(rng.choice(BOTTOM_STUFF))
  canvas = np.concatenate([_stuff_pixels(top, horizon, 0, rng),
                           _stuff_pixels(bottom, SIZE - horizon, horizon, rng)])
  canvas = np.clip(np.round(canvas), 0, 255).astype(np.uint8)

  things = []
  for _ in range(int(rng.integers(1, MAX_THINGS + 1))):
    category = int(rng.integers(1, 9))
    s = int(round(rng.uniform(*THING_SIZE) * SIZE))
    x0, y0 = (int(v) for v in rng.integers(0, SIZE - s + 1, size=2))
    mask = _thing_mask(category, x0, y0, s)
    canvas[mask] = THING_COLORS[category]
    things.append((category, mask))

  # Visible pixels: walk from the topmost thing down, removing what is already covered.
  covered = np.zeros((SIZE, SIZE), bool)
  thing_anns = []
  for category, mask in reversed(things):
    thing_anns.append(_annotation(mask & ~covered, category))
    covered |= mask
  thing_anns = [a for a in reversed(thing_anns) if a is not None]

  region = np.arange(SIZE)[:, None] < horizon
  region = np.broadcast_to(region, (SIZE, SIZE))
  stuff_anns = [_annotation(region & ~covered, top), _annotation(~region & ~covered, bottom)]
  return canvas, thing_anns, [a for a in stuff_anns if a is not None]


def _image_id(split_index: int, index: int) -> int:
  return index + 1 + split_index * VAL_ID_OFFSET


def _render_and_write(args: tuple[str, int, int, int]) -> tuple[list[dict], list[dict]]:
  """Worker: renders one image, writes its PNG, returns its annotations."""
  image_dir, seed, split_index, index = args
  image, things, stuff = render(seed, split_index, index)
  path = os.path.join(image_dir, f'{_image_id(split_index, index):012d}.png')
  Image.fromarray(image).save(path, format='PNG', compress_level=1)  # fast; noise barely compresses
  return things, stuff


def _coco_json(images: list[dict], annotations: list[dict], categories: Sequence[int]) -> dict:
  return {
      'info': {'description': 'lama_jax synthetic shapes set', 'version': '1.0'},
      'images': images,
      'annotations': annotations,
      'categories': [{'id': c, 'name': CATEGORY_NAMES[c], 'supercategory': 'shape' if c < 9
                      else 'stuff'} for c in categories],
  }


def _ignore_sigint() -> None:
  signal.signal(signal.SIGINT, signal.SIG_IGN)


def _write_split(root: str, split_index: int, split: str, count: int, seed: int,
                 num_workers: int, min_pool_size: int) -> None:
  """Draws one split's images into ROOT/SPLIT2017/ and writes its two annotation files."""
  image_dir = os.path.join(root, f'{split}2017')
  os.makedirs(image_dir)
  jobs = [(image_dir, seed, split_index, i) for i in range(count)]
  # No more workers than images: each spawned worker costs seconds and ~100 MB before it draws.
  num_workers = min(num_workers, count)
  if num_workers > 1 and count >= min_pool_size:
    # spawn, not fork: the caller may hold TensorFlow or JAX threads.
    # Workers ignore Ctrl-C (sent to the whole process group): the parent alone stops and cleans up.
    with multiprocessing.get_context('spawn').Pool(num_workers, initializer=_ignore_sigint) as pool:
      results = pool.map(_render_and_write, jobs, chunksize=64)
  else:
    results = [_render_and_write(job) for job in jobs]
  images, things, stuff = [], [], []
  for i, (thing_anns, stuff_anns) in enumerate(results):
    image_id = _image_id(split_index, i)
    images.append({'id': image_id, 'file_name': f'{image_id:012d}.png',
                   'width': SIZE, 'height': SIZE})
    for dest, anns in ((things, thing_anns), (stuff, stuff_anns)):
      dest.extend({'id': 0, 'image_id': image_id, **a} for a in anns)
  for ann_id, ann in enumerate(things + stuff, start=1 + split_index * 10 * VAL_ID_OFFSET):
    ann['id'] = ann_id
  for kind, anns, cats in (('instances', things, range(1, 9)), ('stuff', stuff, range(9, 14))):
    with open(os.path.join(root, 'annotations', f'{kind}_{split}2017.json'), 'w') as f:
      json.dump(_coco_json(images, anns, list(cats)), f)
  logging.info('shapes %s: %d images, %d things, %d stuff regions', split, count, len(things),
               len(stuff))


def generate(out_dir: str, num_train: int = 10000, num_val: int = 500, seed: int = 0,
             num_workers: int | None = None) -> None:
  """Writes the shapes set to `out_dir` in the COCO-Stuff 2017 layout.

  The set is written to a temporary sibling folder and renamed at the end, so a crash never leaves
  a half-written `out_dir`.

  Args:
    out_dir: destination folder; must not exist or be empty.
    num_train: number of training images.
    num_val: number of validation images.
    seed: the dataset seed; the same seed gives byte-identical files.
    num_workers: worker processes (default: the CPU count; 1 draws in this process).

  Raises:
    FileExistsError: `out_dir` exists and is not empty.
  """
  if os.path.isdir(out_dir) and os.listdir(out_dir):
    raise FileExistsError(f'{out_dir} exists and is not empty; remove it or choose another --out.')
  if not (0 < num_train <= MAX_IMAGES and 0 < num_val <= MAX_IMAGES):
    raise ValueError(f'num_train and num_val must lie in [1, {MAX_IMAGES}], got {num_train} and '
                     f'{num_val}')
  # By default small sets are drawn in this process: starting workers costs more than it saves.
  min_pool_size = 200 if num_workers is None else 0
  num_workers = num_workers or os.cpu_count() or 1
  start = time.time()
  with files.atomic_dir(out_dir) as tmp_dir:
    os.makedirs(os.path.join(tmp_dir, 'annotations'))
    for split_index, (split, count) in enumerate(zip(SPLITS, (num_train, num_val))):
      _write_split(str(tmp_dir), split_index, split, count, seed, num_workers, min_pool_size)
  logging.info('Wrote the shapes set to %s in %.1f s.', out_dir, time.time() - start)


FLAGS = cli.flag_values()
flags.DEFINE_string('out', None, 'Destination folder (must not exist or be empty).',
                    flag_values=FLAGS, required=True)
flags.DEFINE_integer('num_train', 10000, 'Number of training images.', lower_bound=1,
                     upper_bound=MAX_IMAGES, flag_values=FLAGS)
flags.DEFINE_integer('num_val', 500, 'Number of validation images.', lower_bound=1,
                     upper_bound=MAX_IMAGES, flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Dataset seed; the same seed gives byte-identical files.',
                     lower_bound=0, flag_values=FLAGS)
flags.DEFINE_integer('num_workers', None, 'Worker processes (default: the CPU count).',
                     lower_bound=1, flag_values=FLAGS)


def _main(fv: flags.FlagValues) -> None:
  files.check_folder_target(fv.out, '--out', empty=True)
  generate(fv.out, fv.num_train, fv.num_val, fv.seed, fv.num_workers)


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
