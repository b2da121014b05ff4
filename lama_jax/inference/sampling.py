"""Sampling many layouts: seeds, the validation split in fixed batches, and the `sample` outputs.

One seed rule serves every consumer: batch `b` of the validation split, sample `r`, is generated with
`sample_seed(seed, b, r)`, and the last (partial) batch is padded by repeating its last layout, so
`sample --val`, `evaluate` and the mask-clarity experiment draw the same images for the same flags.
"""
import collections
from collections.abc import Iterator, Sequence
import dataclasses
import os

import numpy as np
from PIL import Image
from tqdm import tqdm

from lama_jax import files
from lama_jax import visualize
from lama_jax.datasets import vocabulary as vocabulary_lib
from lama_jax.errors import LamaError
from lama_jax.inference.generator import LayoutGenerator
from lama_jax.inference.layouts import Layout
# input_pipeline (tf.data) is imported in the two functions that read the validation split: sampling
# from layouts, and `benchmark` on accelerator machines without TensorFlow, do not need it.

# The official test.py: 5 samples per validation layout on COCO-Stuff (and our shapes set), 1 on VG.
VAL_SAMPLES_PER_LAYOUT = {'coco_stuff': 5, 'shapes': 5, 'visual_genome': 1}
LAYOUT_CANVAS = 256  # the side of NAME_layout.png at least, so names are readable
SHEET_TILE = 128  # the side of a contact-sheet tile at least
SHEET_SAMPLES = 8  # samples per layout shown on the contact sheet
# Limits of the commands' flags: beyond them a typo would fill the disk or the memory. A generator
# batch at 256×256 (ch 64) needs about 0.11 GiB per row (XLA's memory analysis), 14 GiB at the
# limit.
MAX_SAMPLES_PER_LAYOUT = 1000
MAX_BATCH = 128


def val_samples_per_layout(dataset: str) -> int:
  """The official number of samples per validation layout of `dataset`."""
  return VAL_SAMPLES_PER_LAYOUT.get(dataset, 1)


def layout_seed(seed: int, index: int) -> int:
  """A 31-bit seed for item `index` of a run seeded with `seed` (independent streams per item)."""
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


def sample_seed(seed: int, batch_index: int, repeat: int) -> int:
  """The seed of sample `repeat` of validation batch `batch_index`."""
  return layout_seed(seed, batch_index * 1000 + repeat)


@dataclasses.dataclass
class ValBatch:
  """A validation batch padded to the batch size; the first `count` rows are real.

  Attributes:
    index: the batch's position in the split (its seeds derive from it).
    count: how many rows are real layouts (the rest repeat the last one).
    boxes: [batch_size, O, 4]; labels: [batch_size, O]; images: [count, H, W, 3] in [-1, 1];
    image_ids: [count] the dataset's ids; masks: [batch_size, O, 32, 32] box-local masks or None.
  """
  index: int
  count: int
  boxes: np.ndarray
  labels: np.ndarray
  images: np.ndarray
  image_ids: np.ndarray
  masks: np.ndarray | None = None


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
  """Repeats the last row of `array` up to `rows` rows (one compiled batch shape for every batch)."""
  pad = rows - len(array)
  return array if pad <= 0 else np.concatenate([array, np.repeat(array[-1:], pad, 0)])


def check_split_categories(gen: LayoutGenerator, data_dir: str, dataset: str) -> None:
  """Refuses a prepared dataset other than the generator's whose categories are not its own.

  Its label ids would otherwise be taken silently with the generator's meaning (`--dataset` naming
  another prepared set whose ids happen to be in range).

  Raises:
    LamaError: the two vocabularies differ.
  """
  if dataset == gen.dataset:
    return
  try:
    theirs = vocabulary_lib.load_vocabulary(
        vocabulary_lib.dataset_vocabulary_name(dataset, data_dir))
  except (FileNotFoundError, ValueError):
    return  # no vocabulary to compare with; reading the split names what is missing
  ours = gen.vocabulary
  if theirs.num_classes != ours.num_classes:
    why = f'{theirs.num_classes - 1} categories, the generator {ours.num_classes - 1}'
  else:
    i = next((i for i in sorted(theirs.id_to_name.keys() | ours.id_to_name.keys())
              if theirs.id_to_name.get(i) != ours.id_to_name.get(i)), None)
    if i is None:
      return
    why = (f'id {i} is {theirs.id_to_name.get(i)!r} there, {ours.id_to_name.get(i)!r} for the '
           'generator')
  own = gen.dataset or 'its own vocabulary'
  raise LamaError(f'--dataset {dataset} has other categories than the generator, trained on '
                  f'{own} ({why}): its ids would be read as the generator\'s categories')


def val_batches(data_dir: str, dataset: str, image_size: int, batch_size: int, max_objects: int,
                limit: int | None = None, with_masks: bool = False) -> Iterator[ValBatch]:
  """The first `limit` (default all) validation layouts in fixed order, in padded batches."""
  from lama_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  ds = input_pipeline.create_eval_dataset(data_dir, dataset, image_size, batch_size, max_objects,
                                          with_masks=with_masks)
  seen = 0
  for index, batch in enumerate(input_pipeline.numpy_batches(ds, data_dir, dataset, image_size,
                                                              'val')):
    count = len(batch['labels']) if limit is None else min(len(batch['labels']), limit - seen)
    if count <= 0:
      return
    seen += count
    yield ValBatch(index, count, pad_rows(batch['boxes'][:count], batch_size),
                   pad_rows(batch['labels'][:count], batch_size), batch['image'][:count],
                   batch['image_id'][:count],
                   pad_rows(batch['masks'][:count], batch_size) if with_masks else None)


def fixed_z_slots(layouts: Sequence[Layout]) -> list[list[int]]:
  """For --fix_z: per layout, the z slot of each object, keyed by (category, occurrence)."""
  slots: dict[tuple[int, int], int] = {}
  out = []
  for layout in layouts:
    seen: dict[int, int] = {}
    row = []
    for label in layout.labels.tolist():
      key = (label, seen.get(label, 0))
      seen[label] = key[1] + 1
      row.append(slots.setdefault(key, len(slots)))
    out.append(row)
  return out


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  if image.shape[0] == size:
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def _samples(gen: LayoutGenerator, layout: Layout, k: int, batch_size: int, seed: int,
             truncation: float | None, z: tuple[np.ndarray, np.ndarray] | None
             ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
  """Samples 0..k-1 of one layout, `batch_size` at a time (uint8 images, masks, raw masks); the
  same images whatever the batch size (`generate`'s first_row)."""
  boxes, labels = layout.arrays(gen.max_objects)
  for first in range(0, k, batch_size):
    n = min(batch_size, k - first)
    rows = (np.repeat(boxes[None], n, 0), np.repeat(labels[None], n, 0))
    if z is not None:
      z_obj, z_im = z[0][first:first + n], z[1][first:first + n]
      out = gen.generate(*rows, z_obj=z_obj, z_im=z_im, seed=seed, first_row=first)
    else:
      out = gen.generate(*rows, seed=seed, truncation=truncation, first_row=first)
    yield (first, visualize.to_uint8_truncated(out.image),
           visualize.colorize_masks(out.mask, rows[1], gen.num_classes),
           visualize.colorize_masks(out.raw_mask, rows[1], gen.num_classes))


def _fixed_z(gen: LayoutGenerator, layouts: Sequence[Layout], k: int, seed: int,
             truncation: float | None) -> list[tuple[np.ndarray, np.ndarray]]:
  """For --fix_z: per layout, (z_obj [k, max_objects, z], z_im [k, z]) from one shared table."""
  slots = fixed_z_slots(layouts)
  table_obj, table_im = gen.sample_z(k, seed, truncation,
                                     num_objects=max(1 + max(max(r) for r in slots), 1))
  out = []
  for row in slots:
    z_obj = np.zeros((k, gen.max_objects, gen.z_dim), np.float32)
    z_obj[:, :len(row)] = table_obj[:, row]
    out.append((z_obj, table_im))
  return out


def sample_layouts(gen: LayoutGenerator, layouts: Sequence[Layout], out_dir: str,
                   num_samples: int, seed: int, truncation: float | None, fix_z: bool,
                   batch_size: int = 16) -> list[str]:
  """Writes NAME_k.png, NAME_k_mask.png, NAME_k_raw_mask.png, NAME_layout.png per layout and a
  labelled contact sheet into the existing folder `out_dir`; returns the paths written.

  The samples of a layout are generated `batch_size` at a time (memory follows the batch, not
  --num_samples); the contact sheet shows the first SHEET_SAMPLES of them.
  """
  k, size = num_samples, gen.image_size
  fixed = _fixed_z(gen, layouts, k, seed, truncation) if fix_z else None
  written, rows = [], []
  canvas, tile = max(LAYOUT_CANVAS, size), max(size, SHEET_TILE)
  # Counted in images, not layouts: one layout with --num_samples 1000 is long work too.
  with tqdm(total=len(layouts) * k, desc='samples', unit='image',
            disable=len(layouts) * k < 2) as bar:
    for i, layout in enumerate(layouts):
      shown = []
      for first, images, masks, raw in _samples(gen, layout, k, batch_size,
                                                seed if fix_z else layout_seed(seed, i),
                                                truncation, fixed[i] if fix_z else None):
        for s in range(len(images)):
          for suffix, picture in (('', images[s]), ('_mask', masks[s]), ('_raw_mask', raw[s])):
            written.append(os.path.join(out_dir, f'{layout.name}_{first + s}{suffix}.png'))
            files.write_png(written[-1], picture)
        bar.update(len(images))
        if first == 0:
          first_masks = (raw[0], masks[0])
        shown += list(images[:max(0, SHEET_SAMPLES - first)])
      drawing = visualize.draw_layout(np.zeros((canvas, canvas, 3), np.uint8), layout.boxes,
                                      layout.labels, gen.vocabulary.id_to_name, gen.num_classes)
      written.append(os.path.join(out_dir, f'{layout.name}_layout.png'))
      files.write_png(written[-1], drawing)
      rows.append([_resize(p, tile) for p in (drawing, *shown, *first_masks)])
  titles = ['layout', *(f'sample {s}' for s in range(min(k, SHEET_SAMPLES))), 'raw mask 0',
            'adapted mask 0']
  sheet = visualize.labelled_grid(rows, titles, [layout.name for layout in layouts])
  written.append(os.path.join(out_dir, 'contact_sheet.png'))
  files.write_png(written[-1], sheet)
  return written


def sample_val(gen: LayoutGenerator, data_dir: str, dataset: str, out_dir: str, num_samples: int,
               seed: int, truncation: float | None, batch_size: int) -> int:
  """Writes IMAGEID_k.png for every validation layout into `out_dir`; returns the images written."""
  from lama_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  check_split_categories(gen, data_dir, dataset)
  # At the generator's size: a data dir without it then says which size to prepare.
  total = input_pipeline.num_examples(data_dir, dataset, 'val', gen.image_size)
  jobs = collections.deque()  # (batch, r) of the requests handed to generate_many, in order

  def requests():
    for batch in val_batches(data_dir, dataset, gen.image_size, batch_size, gen.max_objects):
      for r in range(num_samples):
        jobs.append((batch, r))
        yield {'boxes': batch.boxes, 'labels': batch.labels,
               'seed': sample_seed(seed, batch.index, r)}

  count = 0
  with tqdm(total=total * num_samples, desc='val samples', unit='image') as bar:
    # uint8 images made on the device, no masks: the host gets only the PNGs' bytes, and the next
    # batch computes while this one is written.
    for out in gen.generate_many(requests(), truncation=truncation, strict=False,
                                 image_format='uint8', mask_format=None):
      batch, r = jobs.popleft()
      for image_id, image in zip(batch.image_ids, out.image[:batch.count]):
        files.write_png(os.path.join(out_dir, f'{int(image_id)}_{r}.png'), image)
      count += batch.count
      bar.update(batch.count)
  return count
