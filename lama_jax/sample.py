r"""Sample images from layouts (JSON) or from the prepared validation split.

  python -m lama_jax.sample --workdir runs/demo --layouts data/layouts/shapes.json --out samples/
  python -m lama_jax.sample --workdir runs/coco128 --val --data_dir data/tfds --out samples/val128

For layout NAME and sample k it writes NAME_k.png (image), NAME_k_mask.png and NAME_k_raw_mask.png
(adapted and raw masks coloured by category), NAME_layout.png (boxes with names), and one
contact_sheet.png (a row per layout: layout, samples, masks of sample 0). All layouts are validated
before anything is written; a bad one stops the run with a one-line message and exit code 2.

--fix_z keeps every object's z (and the image z and noise) across the layouts of the file: objects
are matched by (category, how many of that category came before it), so a list of layouts that
differ by one moved or added box shows how LAMA reconfigures the scene around the change.

--val writes IMAGEID_k.png for every validation layout (5 samples per layout for COCO-Stuff and
shapes, 1 for Visual Genome, as the official test.py), for the metrics.
"""
import argparse
import os
import sys
import tempfile
from typing import Sequence

import numpy as np
from PIL import Image

from lama_jax import visualize
from lama_jax.layouts import Layout, LayoutError

_EXPECTED_ERRORS = (LayoutError, FileNotFoundError, NotADirectoryError, PermissionError)
DEFAULT_VAL_SAMPLES = {'coco_stuff': 5, 'shapes': 5, 'visual_genome': 1}
LAYOUT_CANVAS = 256  # the side of NAME_layout.png at least, so names are readable
SHEET_TILE = 128  # the side of a contact-sheet tile at least


def write_png(path: str, image: np.ndarray) -> None:
  """Writes uint8 [H, W, 3] atomically: a temporary file in the same folder, then a rename."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix='.tmp_', suffix='.png', dir=folder)
  try:
    with os.fdopen(fd, 'wb') as f:
      Image.fromarray(np.asarray(image, np.uint8)).save(f, format='PNG')
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


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


def _layout_seed(seed: int, index: int) -> int:
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0] & 0x7FFFFFFF)


def _resize(image: np.ndarray, size: int) -> np.ndarray:
  if image.shape[0] == size:
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def sample_layouts(gen, layouts: Sequence[Layout], out_dir: str, num_samples: int, seed: int,
                   truncation: float | None, fix_z: bool) -> list[str]:
  """Generates and writes every file for `layouts`; returns the paths written."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  k, size, o_max = num_samples, gen.image_size, gen.max_objects
  names = gen.vocabulary.id_to_name
  if fix_z:
    slots = fixed_z_slots(layouts)
    table_obj, table_im = gen.sample_z(k, seed, truncation, num_objects=max(
        1 + max(max(r) for r in slots), 1))
  written, rows = [], []
  canvas = max(LAYOUT_CANVAS, size)
  for i, layout in enumerate(tqdm(layouts, desc='layouts', unit='layout',
                                  disable=len(layouts) < 2)):
    boxes, labels = layout.arrays(o_max)
    boxes, labels = np.repeat(boxes[None], k, 0), np.repeat(labels[None], k, 0)
    if fix_z:
      z_obj = np.zeros((k, o_max, gen.z_dim), np.float32)
      z_obj[:, :len(slots[i])] = table_obj[:, slots[i]]
      out = gen.generate(boxes, labels, z_obj=z_obj, z_im=table_im, seed=seed)
    else:
      out = gen.generate(boxes, labels, seed=_layout_seed(seed, i), truncation=truncation)
    images = visualize.to_uint8_truncated(out.image)
    masks = visualize.colorize_masks(out.mask, labels, gen.num_classes)
    raw = visualize.colorize_masks(out.raw_mask, labels, gen.num_classes)
    for s in range(k):
      for suffix, picture in (('', images[s]), ('_mask', masks[s]), ('_raw_mask', raw[s])):
        path = os.path.join(out_dir, f'{layout.name}_{s}{suffix}.png')
        write_png(path, picture)
        written.append(path)
    drawing = visualize.draw_layout(np.zeros((canvas, canvas, 3), np.uint8), layout.boxes,
                                    layout.labels, names, gen.num_classes)
    path = os.path.join(out_dir, f'{layout.name}_layout.png')
    write_png(path, drawing)
    written.append(path)
    tile = max(size, SHEET_TILE)
    rows.append([_resize(p, tile) for p in (drawing, *images, masks[0], raw[0])])
  sheet = visualize.make_grid(np.stack([p for row in rows for p in row]), ncol=len(rows[0]))
  path = os.path.join(out_dir, 'contact_sheet.png')
  write_png(path, sheet)
  written.append(path)
  return written


def pad_to_batch(boxes: np.ndarray, labels: np.ndarray, batch_size: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Repeats the last layout up to `batch_size` rows, so that one compiled program serves every batch
  (the extra rows are generated and dropped). `sample --val` and `evaluate` both pad this way, so
  they draw the same samples for the same flags."""
  pad = batch_size - len(labels)
  if pad <= 0:
    return boxes, labels
  return (np.concatenate([boxes, np.repeat(boxes[-1:], pad, 0)]),
          np.concatenate([labels, np.repeat(labels[-1:], pad, 0)]))


def sample_val(gen, data_dir: str, dataset: str, out_dir: str, num_samples: int, seed: int,
               truncation: float | None, batch_size: int) -> int:
  """Writes IMAGEID_k.png for every validation layout; returns the number of images written."""
  from lama_jax import input_pipeline  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  ds = input_pipeline.create_eval_dataset(data_dir, dataset, gen.image_size, batch_size,
                                          gen.max_objects)
  count = 0
  for b, batch in enumerate(tqdm(ds.as_numpy_iterator(), desc='val batches', unit='batch')):
    boxes, labels, ids = batch['boxes'], batch['labels'], batch['image_id']
    n = len(ids)
    boxes, labels = pad_to_batch(boxes, labels, batch_size)
    for r in range(num_samples):
      out = gen.generate(boxes, labels, seed=_layout_seed(seed, b * 1000 + r),
                         truncation=truncation, strict=False)
      images = visualize.to_uint8_truncated(out.image)
      for j in range(n):
        write_png(os.path.join(out_dir, f'{int(ids[j])}_{r}.png'), images[j])
        count += 1
  return count


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='python -m lama_jax.sample', description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True,
                 help='training workdir (latest checkpoint), or an exported or converted generator '
                      'directory')
  p.add_argument('--layouts', help='layout JSON file: one layout or a list of layouts')
  p.add_argument('--out', required=True, help='output folder (created if missing)')
  p.add_argument('--num_samples', type=int, default=None,
                 help='samples per layout (default 1; with --val 5 for COCO-Stuff, 1 for VG)')
  p.add_argument('--seed', type=int, default=0, help='random seed for z and the noise maps')
  p.add_argument('--truncation', type=float, default=2.0,
                 help='z entries beyond ±T are redrawn once, as the official sampler does; '
                      '0 or less draws plain N(0, 1)')
  p.add_argument('--fix_z', action='store_true',
                 help='keep each object\'s z across the layouts of the file (objects matched by '
                      'category and occurrence), to show LAMA\'s reconfiguration')
  p.add_argument('--val', action='store_true',
                 help='sample the prepared validation split (needs --data_dir), not --layouts')
  p.add_argument('--data_dir', help='where `prepare` wrote the datasets (for --val)')
  p.add_argument('--dataset', help='dataset for --val (default: the generator\'s own)')
  p.add_argument('--batch_size', type=int, default=16, help='layouts per batch for --val')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: the latest)')
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    if args.val == bool(args.layouts):
      raise LayoutError('give either --layouts FILE or --val (with --data_dir)')
    if args.val and not args.data_dir:
      raise LayoutError('--val needs --data_dir (where `prepare` wrote the datasets)')
    if args.num_samples is not None and args.num_samples < 1:
      raise LayoutError(f'--num_samples must be at least 1, got {args.num_samples}')
    if args.batch_size < 1:
      raise LayoutError(f'--batch_size must be at least 1, got {args.batch_size}')
    if args.layouts and not os.path.isfile(args.layouts):
      raise LayoutError(f'{args.layouts}: no such layout file')
    from lama_jax.api import LayoutGenerator  # pylint: disable=g-import-not-at-top
    from lama_jax.generator_io import GeneratorDirError  # pylint: disable=g-import-not-at-top
    try:
      gen = LayoutGenerator.load(args.workdir, args.step)
    except GeneratorDirError as e:
      raise LayoutError(str(e)) from None
    truncation = args.truncation if args.truncation > 0 else None
    if args.val:
      dataset = args.dataset or gen.dataset
      k = args.num_samples or DEFAULT_VAL_SAMPLES.get(dataset, 1)
      try:
        n = sample_val(gen, args.data_dir, dataset, args.out, k, args.seed, truncation,
                       args.batch_size)
      except ValueError as e:  # unknown dataset or split, from the input pipeline
        raise LayoutError(str(e)) from None
      print(f'wrote {n} images to {args.out}')
      return 0
    layouts = gen.parse_layouts(args.layouts)
    written = sample_layouts(gen, layouts, args.out, args.num_samples or 1, args.seed, truncation,
                             args.fix_z)
    print(f'wrote {len(written)} files for {len(layouts)} layouts to {args.out}')
    return 0
  except _EXPECTED_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
