"""Throughput of the real tf.data training pipeline, and a COCO-like photo set to measure it on.

`run` times `input_pipeline.create_train_dataset` (read, shuffle, official flip, scale, pad, batch,
to NumPy: what the train loop gets) at each image size and reports images/s in all and per host
core, and the CPU time per image (load-independent: 1000 / it is images/s per fully used core).
`write_coco_like` makes a COCO-Stuff 2017 folder of photo-like 640×480 JPEGs (smooth colour fields,
textured regions, sensor noise: about 65 KB each, like COCO's) with 3-8 boxes that pass the official
filters, so `prepare --dataset coco_stuff` prepares it like the real thing.
"""
import json
import os
import tempfile
import time
from collections.abc import Sequence

import ml_collections
import numpy as np
from PIL import Image
import tqdm

from lama_jax.datasets import input_pipeline
from lama_jax.datasets import loaders
from lama_jax.datasets import preparation
from lama_jax.datasets import vocabulary as vocabulary_lib

PHOTO_SIZE = (640, 480)  # (W, H): COCO's most common size
NOISE_STD = 3.2  # sensor noise (0..255 units); sets the JPEG size
_SPLITS = (('train', 0), ('val', 1))


def _photo(rng: np.random.Generator, boxes: list[tuple[float, ...]]) -> Image.Image:
  """A photo-like image: a smooth colour field, a textured region per box, and sensor noise."""
  w, h = PHOTO_SIZE
  coarse = rng.uniform(30, 225, (6, 8, 3)).astype(np.uint8)
  pix = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BICUBIC), np.float32)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  for x, y, bw, bh in boxes:
    colour = rng.uniform(20, 235, 3)
    inside = (((xx - x - bw / 2) / (bw / 2)) ** 2 + ((yy - y - bh / 2) / (bh / 2)) ** 2) <= 1.0
    ripple = 12 * np.sin(xx / rng.uniform(3, 12) + yy / rng.uniform(3, 12))[..., None]
    pix = np.where(inside[..., None], colour + ripple, pix)
  pix += rng.normal(0.0, NOISE_STD, (h, w, 1))
  return Image.fromarray(np.clip(pix, 0, 255).astype(np.uint8))


def _objects(rng: np.random.Generator, things: list[int], stuff: list[int]) -> list[tuple]:
  """3-8 (kind, category, bbox) with at least one stuff object; every box covers > 2%."""
  w, h = PHOTO_SIZE
  n = int(rng.integers(3, 9))
  out = []
  for i in range(n):
    kind = 's' if i == 0 or rng.uniform() < 0.4 else 'i'
    bw, bh = rng.uniform(0.18, 0.6) * w, rng.uniform(0.18, 0.6) * h
    x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    category = int(rng.choice(stuff if kind == 's' else things))
    out.append((kind, category, (round(x, 2), round(y, 2), round(bw, 2), round(bh, 2))))
  return out


def write_coco_like(root: str, num_train: int, num_val: int = 8, seed: int = 0) -> str:
  """Writes a COCO-Stuff 2017 folder of photo-like JPEGs under `root` (the layout `prepare` reads).

  Every image keeps all its objects under the official filters (3-8 objects > 2% of the image, one
  stuff object at least), so `prepare` keeps every image. Returns `root`.
  """
  vocab = vocabulary_lib.load_vocabulary('coco_stuff')
  named = {i: n for i, n in vocab.id_to_name.items() if i and not n.startswith('__')
           and n != 'other'}
  things, stuff = [i for i in named if i <= 91], [i for i in named if i > 91]
  os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
  ann_id = 1
  for split, index in _SPLITS:
    count = num_train if split == 'train' else num_val
    rng = np.random.default_rng([seed, index])
    os.makedirs(os.path.join(root, f'{split}2017'), exist_ok=True)
    data = {kind: {'images': [], 'annotations': [], 'categories': [
        {'id': i, 'name': named[i]} for i in (things if kind == 'instances' else stuff)]}
            for kind in ('instances', 'stuff')}
    for image_id in tqdm.trange(1, count + 1, desc=f'COCO-like {split}', leave=False):
      objects = _objects(rng, things, stuff)
      name = f'{image_id:012d}.jpg'
      _photo(rng, [b for _, _, b in objects]).save(
          os.path.join(root, f'{split}2017', name), quality=90)
      for d in data.values():
        d['images'].append({'id': image_id, 'file_name': name, 'width': PHOTO_SIZE[0],
                            'height': PHOTO_SIZE[1]})
      for kind, category, (x, y, bw, bh) in objects:
        polygon = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
        data['stuff' if kind == 's' else 'instances']['annotations'].append(
            {'id': ann_id, 'image_id': image_id, 'category_id': category, 'bbox': [x, y, bw, bh],
             'area': bw * bh, 'iscrowd': 0, 'segmentation': [polygon]})
        ann_id += 1
    for kind, d in data.items():
      with open(os.path.join(root, 'annotations', f'{kind}_{split}2017.json'), 'w') as f:
        json.dump(d, f)
  return root


def host_cores() -> int:
  """The cores this process may run on (what tf.data's AUTOTUNE spreads over)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def time_pipeline(data_dir: str, dataset: str, image_size: int, batch_size: int,
                  max_objects: int, batches: int, warmup: int = 5, flip: str = 'official',
                  shuffle_buffer: int = 2048) -> dict:
  """Images/s of this process's training pipeline at one size (global `batch_size`), after
  `warmup` batches, as the loop reads it."""
  ds = input_pipeline.create_train_dataset(
      data_dir, dataset, image_size, batch_size, max_objects, flip=flip,
      shuffle_buffer=shuffle_buffer)
  it = input_pipeline.numpy_batches(ds, data_dir, dataset, image_size, 'train')
  for _ in range(warmup):
    next(it)
  cpu0, t0 = time.process_time(), time.perf_counter()
  for _ in range(batches):
    batch = next(it)
  seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
  images = batches * len(batch['labels'])
  cores = host_cores()
  return {'dataset': dataset, 'image_size': image_size, 'batch_size': len(batch['labels']),
          'images': images, 'seconds': round(seconds, 3),
          'images_per_s': round(images / seconds, 1), 'cores': cores,
          'images_per_s_per_core': round(images / seconds / cores, 1),
          'cpu_ms_per_image': round(1000 * cpu / images, 3)}


def run(config: ml_collections.ConfigDict, image_sizes: Sequence[int], batches: int,
        coco_like: int = 0) -> list[dict]:
  """Times the training pipeline of `config.data` at each size (see `time_pipeline`).

  With `coco_like` > 0, times a fresh COCO-like set of that many images instead, written and
  prepared in a temporary folder. The shapes set is generated and prepared at the sizes on first
  use, as training does; other datasets must be prepared at every size asked.
  """
  data = config.data
  with tempfile.TemporaryDirectory(prefix='lama_jax_pipeline_') as tmp:
    data_dir, dataset = data.data_dir, data.dataset
    if coco_like:
      manual = write_coco_like(os.path.join(tmp, 'coco'), coco_like)
      data_dir, dataset = os.path.join(tmp, 'tfds'), 'coco_stuff'
      preparation.prepare(dataset, manual, data_dir, image_sizes)
    else:
      for size in image_sizes:
        loaders.ensure_prepared(data, size)
    return [time_pipeline(data_dir, dataset, size, config.batch_size, data.max_objects, batches,
                          flip=data.flip, shuffle_buffer=data.shuffle_buffer)
            for size in image_sizes]
