"""Synthetic COCO-format datasets: many generated images with per-object masks, from layouts.

Image n (0-based; COCO id n + 1, file images/{n+1:012d}.png) comes from layout
`(n // K) % L` of the source (K samples per layout, L layouts), jittered with the random stream
(seed, n // K) when jitter > 0, so every pass over the source draws new layouts. Images are made in
batches of `batch_size`: batch i holds images i·B .. i·B + B − 1 and is generated with seed
`layout_seed(seed, i)`, the last batch padded to B rows by repetition, so an image's pixels depend only
on the settings, never on when or how often the run was interrupted.

The output folder:

  synthesis.json     the settings (written first; `--resume` reads them back)
  images/*.png       written one by one, atomically
  .partial/          one JSON per finished batch (its image and annotation entries), written after
                     the batch's images; a batch without it is generated again on resume
  annotations.json   written atomically when every batch is done; .partial/ is then removed

So a run killed at any point and resumed gives the same files as an uninterrupted run.
"""
import dataclasses
import hashlib
import json
import math
from pathlib import Path
import shutil
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from lama_jax import files
from lama_jax import visualize
from lama_jax.datasets import input_pipeline
from lama_jax.errors import LamaError
from lama_jax.inference import coco_export
from lama_jax.inference import layouts as layouts_lib
from lama_jax.inference import sampling
from lama_jax.inference.generator import LayoutGenerator

RECORD = 'synthesis.json'
ANNOTATIONS = 'annotations.json'
IMAGES = 'images'
PARTIAL = '.partial'
# At it annotations.json, held whole in memory when written and when read, is ~90 GB or more
# (0.9 KB per image at 64×64 with ~3 objects, more at larger sizes): beyond it is a typo.
MAX_IMAGES = 10**8
MIN_SIDE = 0.01  # a jittered box clipped below 1% of the image side keeps its original extent


class SynthesisError(LamaError, ValueError):
  """An output folder that cannot be started or resumed."""


@dataclasses.dataclass(frozen=True)
class Layouts:
  """The source layouts, padded to the generator's max_objects.

  Attributes:
    boxes: float32 [L, O, 4] normalised (x, y, w, h), inside [0, 1].
    labels: int32 [L, O], 0 = padding.
    names: [L] where each layout came from (its name, or 'split:IMAGE_ID').
  """
  boxes: np.ndarray
  labels: np.ndarray
  names: list[str]


@dataclasses.dataclass(frozen=True)
class Settings:
  """How many images and how they are drawn (see the module docstring)."""
  num_images: int
  samples_per_layout: int = 1
  jitter: float = 0.0  # boxes move by up to jitter·(w, h) and scale by up to 1 ± jitter
  seed: int = 0
  truncation: float | None = 2.0
  batch_size: int = 8
  mask_threshold: float = coco_export.DEFAULT_THRESHOLD


@dataclasses.dataclass
class Summary:
  """What a run did."""
  images: int  # images in the finished dataset
  annotations: int
  things: int  # annotations of thing categories
  empty: int  # layout objects left out because their binarised mask is empty
  resumed_from: int  # images that were already there when this run started
  seconds: float  # spent generating in this run
  steady_rate: float | None  # images/s after the first batch (which includes compiling)


def from_file(gen: LayoutGenerator, path: str) -> Layouts:
  """The layouts of a layout file, validated against the generator (LayoutError otherwise)."""
  parsed = gen.parse_layouts(path)
  boxes, labels = layouts_lib.stack_layouts(parsed, gen.max_objects)
  return Layouts(boxes, labels, [layout.name for layout in parsed])


def from_split(gen: LayoutGenerator, data_dir: str, dataset: str, split: str,
               limit: int | None = None) -> Layouts:
  """The first `limit` layouts of a prepared split, boxes clipped to the image."""
  sampling.check_split_categories(gen, data_dir, dataset)
  read = input_pipeline.read_layouts(data_dir, dataset, split, gen.max_objects, limit)
  if not len(read['labels']):
    raise SynthesisError(f'the {split} split of {dataset} in {data_dir} holds no layouts')
  if read['labels'].max() >= gen.num_classes:
    raise SynthesisError(f'{dataset} {split} has category ids up to {read["labels"].max()}, the '
                         f'generator takes fewer than {gen.num_classes}: another dataset?')
  real = read['labels'] > 0
  boxes = np.where(real[..., None], _clip(read['boxes']), read['boxes'])
  return Layouts(boxes, read['labels'], [f'{split}:{int(i)}' for i in read['image_id']])


def _clip(boxes: np.ndarray) -> np.ndarray:
  """(x, y, w, h) boxes clipped to [0, 1] (prepared boxes may overshoot by a rounding hair)."""
  x0, y0 = np.clip(boxes[..., 0], 0, 1), np.clip(boxes[..., 1], 0, 1)
  x1 = np.clip(boxes[..., 0] + boxes[..., 2], 0, 1)
  y1 = np.clip(boxes[..., 1] + boxes[..., 3], 0, 1)
  return np.stack([x0, y0, x1 - x0, y1 - y0], -1).astype(np.float32)


def jitter_boxes(boxes: np.ndarray, labels: np.ndarray, amount: float,
                 rng: np.random.Generator) -> np.ndarray:
  """Moves each real box's centre by up to amount·(w, h) and scales w, h by up to 1 ± amount.

  Boxes are clipped to the image; one that would be clipped below MIN_SIDE keeps its original box.
  Padding rows are returned unchanged. Draws the same numbers whatever the boxes (4 per slot).
  """
  u = rng.uniform(-1.0, 1.0, (len(boxes), 4))
  x, y, w, h = (boxes[:, k].astype(np.float64) for k in range(4))
  cx, cy = x + w / 2 + amount * w * u[:, 0], y + h / 2 + amount * h * u[:, 1]
  w2, h2 = w * (1 + amount * u[:, 2]), h * (1 + amount * u[:, 3])
  moved = _clip(np.stack([cx - w2 / 2, cy - h2 / 2, w2, h2], -1))
  keep = (moved[:, 2] >= MIN_SIDE) & (moved[:, 3] >= MIN_SIDE) & (labels > 0)
  return np.where(keep[:, None], moved, boxes).astype(np.float32)


def image_layout(layouts: Layouts, settings: Settings, n: int
                 ) -> tuple[np.ndarray, np.ndarray, str]:
  """Image n's layout: (boxes [O, 4], labels [O], source name)."""
  group = n // settings.samples_per_layout
  index = group % len(layouts.names)
  boxes, labels = layouts.boxes[index], layouts.labels[index]
  if settings.jitter > 0:
    rng = np.random.default_rng([settings.seed, group])
    boxes = jitter_boxes(boxes, labels, settings.jitter, rng)
  return boxes, labels, layouts.names[index]


def file_name(n: int) -> str:
  return f'{n + 1:012d}.png'


def _journal(out: Path, batch: int) -> Path:
  return out / PARTIAL / f'batch_{batch:06d}.json'


def _run_batch(gen: LayoutGenerator, layouts: Layouts, settings: Settings, out: Path,
               batch: int) -> int:
  """Generates and writes batch `batch` (images, then its journal); returns its image count."""
  b = settings.batch_size
  ns = range(batch * b, min((batch + 1) * b, settings.num_images))
  rows = [image_layout(layouts, settings, n) for n in ns]
  boxes = sampling.pad_rows(np.stack([r[0] for r in rows]), b)
  labels = sampling.pad_rows(np.stack([r[1] for r in rows]), b)
  result = gen.generate(boxes, labels, seed=sampling.layout_seed(settings.seed, batch),
                        truncation=settings.truncation, strict=False)
  pictures = visualize.to_uint8_truncated(result.image)
  size = gen.image_size
  images, annotations, empty = [], [], 0
  for row, n in enumerate(ns):
    files.write_png(out / IMAGES / file_name(n), pictures[row])
    images.append({'id': n + 1, 'file_name': file_name(n), 'width': size, 'height': size,
                   'layout': rows[row][2]})
    binary = coco_export.binary_masks(result.mask[row], boxes[row], labels[row],
                                      settings.mask_threshold)
    anns, e = coco_export.image_annotations(n + 1, n * gen.max_objects + 1, binary, boxes[row],
                                            labels[row])
    annotations += anns
    empty += e
  files.write_json(_journal(out, batch), {'images': images, 'annotations': annotations,
                                          'empty': empty})
  return len(ns)


def _done_batches(out: Path) -> set[int]:
  """The batches whose journal and images are all written (one listing of the journal folder, so
  that resuming a run of 100 million images does not look for 60 million journal files first)."""
  done = set()
  for path in (out / PARTIAL).glob('batch_*.json'):
    number = path.stem.removeprefix('batch_')
    if not number.isdigit():  # not a journal of ours
      continue
    with open(path) as f:
      entries = json.load(f)['images']
    if all((out / IMAGES / e['file_name']).exists() for e in entries):
      done.add(int(number))
  return done


def _remove_temporaries(out: Path) -> None:
  """Drops the temporary files a killed run leaves (atomic writes that never completed)."""
  for folder in (out, out / IMAGES, out / PARTIAL):
    if folder.is_dir():
      for path in folder.glob('.*.tmp'):
        path.unlink()


def read_record(out_dir: str) -> dict[str, Any] | None:
  """The settings record of an output folder, or None when it has none."""
  path = Path(out_dir) / RECORD
  if not path.is_file():
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except ValueError as e:
    raise SynthesisError(f'{path}: not valid JSON ({e}); cannot resume from it') from None
  if not isinstance(record, dict) or not isinstance(record.get('flags', {}), dict):
    raise SynthesisError(f'{path}: not a synthesis record (a JSON object whose "flags" is an '
                         'object); cannot resume from it')
  return record


def check_out(out_dir: str, resume: bool) -> dict[str, Any] | None:
  """Refuses to start in a used folder, or to resume where there is nothing to resume.

  Returns:
    The folder's settings record when resuming, else None.
  """
  out = Path(out_dir)
  if resume:
    record = read_record(out_dir)
    if record is None:
      raise SynthesisError(f'{out_dir} has no {RECORD}: nothing to resume (drop --resume to start)')
    return record
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise SynthesisError(f'{out_dir} already exists and is not empty; pass --resume to continue an '
                         'interrupted run, or choose a new --out')
  return None


def file_sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def _finish(gen: LayoutGenerator, out: Path, record: dict[str, Any], num_batches: int) -> dict:
  """Writes annotations.json from the batches' journals and removes them; returns its document."""
  images, annotations, empty = [], [], 0
  for batch in range(num_batches):
    with open(_journal(out, batch)) as f:
      entries = json.load(f)
    images += entries['images']
    annotations += entries['annotations']
    empty += entries['empty']
  info = {'description': f'LAMA synthetic dataset ({gen.dataset})', 'synthesis': record,
          'left_out_empty_masks': empty}
  doc = coco_export.document(info, images, annotations, gen.vocabulary)
  files.write_text(out / ANNOTATIONS, json.dumps(doc, separators=(',', ':')) + '\n')
  shutil.rmtree(out / PARTIAL)
  return doc


def synthesize(gen: LayoutGenerator, layouts: Layouts, settings: Settings, out_dir: str,
               record: dict[str, Any], resume: bool = False) -> Summary:
  """Writes (or, with `resume`, completes) the dataset in `out_dir` (see the module docstring).

  Args:
    gen: the generator.
    layouts: the source layouts.
    settings: the run's settings.
    out_dir: the output folder; new or empty unless resuming.
    record: what synthesis.json holds (the caller's settings, model and source); a resumed run must
      bring the same record.
    resume: continue the run in `out_dir`.

  Raises:
    SynthesisError: `out_dir` is in use (not resuming) or was started with another record.
  """
  out = Path(out_dir)
  recorded = check_out(out_dir, resume)
  if recorded is not None and recorded != record:
    raise SynthesisError(f'{out / RECORD} was written with other settings; resume with the same '
                         'ones, or start a new --out')
  if resume and (out / ANNOTATIONS).exists() and not (out / PARTIAL).exists():
    with open(out / ANNOTATIONS) as f:  # read once: it may be gigabytes
      doc = json.load(f)
    _check_finished_images(out, doc)
    return _summary(doc, gen, resumed_from=settings.num_images, seconds=0.0, rate=None)
  # The record first: a run interrupted at any later point leaves a folder `--resume` takes.
  out.mkdir(parents=True, exist_ok=True)
  files.write_json(out / RECORD, record)
  (out / IMAGES).mkdir(exist_ok=True)
  (out / PARTIAL).mkdir(exist_ok=True)
  _remove_temporaries(out)
  num_batches = math.ceil(settings.num_images / settings.batch_size)
  finished = {i for i in _done_batches(out) if i < num_batches}
  done = sum(min(settings.batch_size, settings.num_images - i * settings.batch_size)
             for i in finished)
  start, first = time.perf_counter(), None
  with tqdm(total=settings.num_images, initial=done, desc='synthesize', unit='image') as bar:
    for i in range(num_batches):
      if i in finished:
        continue
      bar.update(_run_batch(gen, layouts, settings, out, i))
      first = first or (time.perf_counter() - start, bar.n - done)
  seconds = time.perf_counter() - start
  rest = settings.num_images - done - (first[1] if first else 0)
  rate = rest / (seconds - first[0]) if first and rest > 0 and seconds > first[0] else None
  return _summary(_finish(gen, out, record, num_batches), gen, done, seconds, rate)


def _check_finished_images(out: Path, doc: dict) -> None:
  """Refuses a finished dataset whose listed images (`doc`, its annotations.json) are no longer all
  there (deleted afterwards: `--resume` would otherwise call it complete)."""
  names = [image['file_name'] for image in doc['images']]
  missing = [name for name in names if not (out / IMAGES / name).is_file()]
  if missing:
    raise SynthesisError(f'{out} was finished, but {len(missing)} of the {len(names)} images its '
                         f'{ANNOTATIONS} lists are missing ({IMAGES}/{missing[0]}'
                         f'{", ..." if len(missing) > 1 else ""}): they were removed afterwards. '
                         'Generate the dataset again in a new --out')


def _summary(doc: dict, gen: LayoutGenerator, resumed_from: int, seconds: float,
             rate: float | None) -> Summary:
  """The run's figures from its annotations.json document."""
  things = sum(coco_export.is_thing(gen.vocabulary, a['category_id']) for a in doc['annotations'])
  return Summary(len(doc['images']), len(doc['annotations']), things,
                 doc['info']['left_out_empty_masks'], resumed_from, seconds, rate)
