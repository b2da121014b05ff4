r"""Evaluates a generator on the validation split: FID, SceneFID, DS, CAS, YOLO, mask entropy.

  python -m lama_jax.evaluate --workdir runs/coco128 --data_dir data/tfds \
      --metrics fid,scene_fid,ds,cas,mask_entropy \
      --inception_weights pt_inception-2015-12-05-6726825d.pth \
      --lpips_weights alex.pth --alexnet_weights alexnet-owt-7be5be79.pth
  python -m lama_jax.evaluate --workdir runs/shapes64 --data_dir data/tfds   # alignment,mask_entropy

Protocol (the official test.py): every validation layout is sampled --num_samples times (5 for
COCO-Stuff and shapes, 1 for Visual Genome), each image quantised to uint8 exactly as a saved PNG
((x·0.5 + 0.5)·255, truncated). The samples are those `python -m lama_jax.sample --val` writes with
the same --seed, --batch_size and --truncation. Real images are the val images at the generator's
resolution, as the input pipeline gives them.

Metrics:
  fid           FID of all samples against the real val images (--inception_weights: pytorch-fid's
                pt_inception-2015-12-05-6726825d.pth).
  scene_fid     FID of 224×224 crops of every object (label > 0): real crops round box corners up,
                generated ones truncate, as the official scripts. Same weights.
  ds            Diversity score: LPIPS between samples 0 and 1 of each layout, mean ± std
                (--lpips_weights: lpips v0.1 alex.pth, --alexnet_weights: torchvision alexnet).
                With one sample per layout (VG) a second one is drawn for DS only.
  cas           Classification accuracy score: a ResNet trained on 32×32 crops of the generated
                objects, tested on the real val crops (--cas_epochs).
  yolo          YOLO score, detector-agnostic (see below).
  mask_entropy  Mean entropy of the normalised raw and adapted masks, and LAMA's strength |α|.
  alignment     Shapes only: share of thing boxes holding their category's colour (no weights).
  all           Everything; metrics whose weights or flags are missing are skipped with a note.

Real-image statistics are cached in DATA_DIR/fid_stats/<dataset>_<size>_{full,scene}.npz
(with --max_layouts N: ..._first<N>.npz), so later evaluations only run Inception on samples.

YOLO score how-to (two runs, the detector is yours, e.g. YOLOv4 as in the paper):
  1. python -m lama_jax.evaluate --workdir RUN --data_dir D --metrics yolo --yolo_dir Y
     writes Y/<image_id>.png (sample 0 of each layout, upsampled bilinearly to 512×512) and
     Y/manifest.json (the evaluated image ids and the sizes of the written images).
  2. Run the detector on Y/*.png and write its boxes as a COCO results JSON
     ([{"image_id", "category_id", "bbox": [x, y, w, h] in 512×512 pixels, "score"}, ...]).
  3. python -m lama_jax.evaluate --workdir RUN --data_dir D --metrics yolo --detections dets.json \
         --instances annotations/instances_val2017.json [--yolo_dir Y]
     rescales the boxes from 512×512 to each image's original size and reports COCO AP, AP50 and
     AP75 on the evaluated ids only (those of Y/manifest.json when --yolo_dir is given). No sampling.

Results go to --out (default RUN/eval) as metrics.json and metrics.md, and the table is printed.
Bad flags or inputs stop the run before any sampling with one line on stderr and exit code 2.
"""
import argparse
import functools
import json
import math
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

METRICS = ('fid', 'scene_fid', 'ds', 'cas', 'yolo', 'mask_entropy', 'alignment')
DEFAULT_METRICS = {'shapes': ('alignment', 'mask_entropy')}
OTHER_DEFAULT_METRICS = ('fid', 'scene_fid', 'mask_entropy')
DEFAULT_NUM_SAMPLES = {'coco_stuff': 5, 'shapes': 5, 'visual_genome': 1}
YOLO_SIZE = 512
SCENE_CROP = 224
CAS_CROP = 32
_ALL_SAMPLES = ('fid', 'scene_fid', 'cas', 'mask_entropy', 'alignment')  # use all k samples


class EvalError(Exception):
  """A user error: printed as one line, exit code 2."""


# ---------------------------------------------------------------------------------------------
# Flags and metric selection.


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m lama_jax.evaluate',
                              description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True,
                 help='training workdir (latest checkpoint), or an exported or converted generator '
                      'directory')
  p.add_argument('--data_dir', required=True, help='where `prepare` wrote the datasets')
  p.add_argument('--metrics', default=None,
                 help=f'comma-separated, from {",".join(METRICS)} or "all" (default: '
                      'alignment,mask_entropy for shapes, else fid,scene_fid,mask_entropy)')
  p.add_argument('--inception_weights', help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
  p.add_argument('--lpips_weights', help='lpips v0.1 alex.pth (linear layers)')
  p.add_argument('--alexnet_weights', help="torchvision's alexnet state dict")
  p.add_argument('--yolo_dir', help='write one sample per layout at 512×512 here for a detector')
  p.add_argument('--detections', help='COCO results JSON of the detector on --yolo_dir images')
  p.add_argument('--instances', help='instances_val2017.json, the ground truth for --detections')
  p.add_argument('--num_samples', type=int, default=None,
                 help='samples per layout (default 5 for COCO-Stuff and shapes, 1 for VG)')
  p.add_argument('--batch_size', type=int, default=16, help='layouts per generator batch')
  p.add_argument('--inception_batch_size', type=int, default=50, help='images per Inception pass')
  p.add_argument('--seed', type=int, default=0, help='sampling seed (as `sample --val`)')
  p.add_argument('--truncation', type=float, default=2.0,
                 help='z entries beyond ±T are redrawn once (official); 0 or less: plain N(0, 1)')
  p.add_argument('--max_layouts', type=int, default=None,
                 help='evaluate only the first N val layouts (quick runs; not comparable)')
  p.add_argument('--cas_epochs', type=int, default=20, help='CAS classifier training epochs')
  p.add_argument('--dataset', help="the val split to use (default: the generator's dataset)")
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: the latest)')
  p.add_argument('--out', default=None, help='output folder (default: WORKDIR/eval)')
  return p


def select_metrics(text: str | None, dataset: str, args: argparse.Namespace
                   ) -> tuple[list[str], list[str]]:
  """The metrics to compute, in table order, and notes on skipped ones.

  Raises:
    EvalError: an unknown metric, or one whose weights or flags are missing (naming the flag).
  """
  if text is None:
    asked = list(DEFAULT_METRICS.get(dataset, OTHER_DEFAULT_METRICS))
  else:
    asked = [m.strip() for m in text.split(',') if m.strip()]
  if not asked:
    raise EvalError('--metrics is empty')
  want_all = 'all' in asked
  unknown = [m for m in asked if m not in METRICS and m != 'all']
  if unknown:
    raise EvalError(f'unknown metric(s) {",".join(unknown)} in --metrics; choose from '
                    f'{",".join(METRICS)} or all')
  if want_all:
    asked = list(METRICS)
  notes, chosen = [], []
  for metric in METRICS:
    if metric not in asked:
      continue
    problem = _missing_requirement(metric, dataset, args)
    if problem is None:
      chosen.append(metric)
    elif want_all:
      notes.append(f'{metric} skipped: {problem}')
    else:
      raise EvalError(f'{metric}: {problem}')
  if args.detections and not args.instances:
    raise EvalError('--detections needs --instances (instances_val2017.json)')
  return chosen, notes


def _missing_requirement(metric: str, dataset: str, args: argparse.Namespace) -> str | None:
  if metric in ('fid', 'scene_fid') and not args.inception_weights:
    return 'needs --inception_weights (pytorch-fid pt_inception-2015-12-05-6726825d.pth)'
  if metric == 'ds':
    if not args.lpips_weights:
      return 'needs --lpips_weights (lpips v0.1 alex.pth)'
    if not args.alexnet_weights:
      return 'needs --alexnet_weights (torchvision alexnet state dict)'
  if metric == 'yolo' and not args.yolo_dir and not args.detections:
    return ('needs --yolo_dir DIR (writes images for your detector) or --detections F with '
            '--instances F (scores its boxes)')
  if metric == 'alignment' and dataset != 'shapes':
    return f'works on the shapes dataset only, not {dataset}'
  return None


def _check_files(args: argparse.Namespace, metrics: Sequence[str]) -> None:
  flags = []
  if 'fid' in metrics or 'scene_fid' in metrics:
    flags.append('inception_weights')
  if 'ds' in metrics:
    flags += ['lpips_weights', 'alexnet_weights']
  if 'yolo' in metrics and args.detections:
    flags += ['detections', 'instances']
  for flag in flags:
    path = getattr(args, flag)
    if not os.path.isfile(path):
      raise EvalError(f'--{flag} {path}: no such file')


def _one_line(e: BaseException) -> str:
  return ' '.join(str(e).split())


def _load_weights(flag: str, loader, *paths):
  try:
    return loader(*paths)
  except (KeyError, ValueError, OSError, RuntimeError, ImportError) as e:
    raise EvalError(f'--{flag} {paths[0]}: cannot load: {_one_line(e)}') from None


# ---------------------------------------------------------------------------------------------
# Streaming accumulators: nothing holds every image or feature of the split.


class Moments:
  """Running mean and covariance (unbiased, as np.cov) of feature rows, in float64."""

  def __init__(self):
    self.n, self.sum, self.outer = 0, None, None

  def add(self, feats: np.ndarray) -> None:
    feats = np.asarray(feats, np.float64)
    if not len(feats):
      return
    if self.sum is None:
      self.sum = np.zeros(feats.shape[1])
      self.outer = np.zeros((feats.shape[1], feats.shape[1]))
    self.n += len(feats)
    self.sum += feats.sum(0)
    self.outer += feats.T @ feats

  def stats(self) -> tuple[np.ndarray, np.ndarray]:
    if self.n < 2:
      raise EvalError(f'FID needs at least 2 images, got {self.n}')
    mu = self.sum / self.n
    sigma = (self.outer - self.n * np.outer(mu, mu)) / (self.n - 1)
    return mu, sigma


class InceptionStats:
  """Buffers uint8 images (any size) and feeds them to Inception in full batches."""

  def __init__(self, extract, batch_size: int):
    self.extract, self.batch_size = extract, batch_size
    self.buffer: list[np.ndarray] = []
    self.moments = Moments()

  def add(self, images: Sequence[np.ndarray]) -> None:
    self.buffer.extend(images)
    while len(self.buffer) >= self.batch_size:
      batch, self.buffer = self.buffer[:self.batch_size], self.buffer[self.batch_size:]
      self.moments.add(self.extract(np.stack(batch)))

  def stats(self) -> tuple[np.ndarray, np.ndarray]:
    if self.buffer:
      self.moments.add(self.extract(np.stack(self.buffer)))
      self.buffer = []
    return self.moments.stats()


def make_inception(weights: str, batch_size: int):
  """See `_make_inception`; reuses the compiled extractor while the weights file is unchanged."""
  stat = os.stat(weights)
  return _make_inception(os.path.abspath(weights), stat.st_mtime_ns, stat.st_size, batch_size)


@functools.lru_cache(maxsize=1)
def _make_inception(weights: str, mtime_ns: int, size: int, batch_size: int):  # pylint: disable=unused-argument
  """images uint8 [N, H, W, 3] (any H, W) → [N, 2048]; one compiled Inception for every size.

  Images are resized to 299×299 by a small jitted program (the same bilinear resize the model
  would apply), so full images and 224×224 crops share one compiled Inception.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lama_jax.metrics import inception  # pylint: disable=g-import-not-at-top
  from lama_jax.models.resize import resize_bilinear  # pylint: disable=g-import-not-at-top
  variables = _load_weights('inception_weights', inception.load_inception_params, weights)
  extractor = inception.InceptionFeatureExtractor(variables, batch_size=batch_size,
                                                  resize_input=False)
  size = inception.INPUT_SIZE
  resize = jax.jit(lambda x: resize_bilinear(x.astype(jnp.float32) / 255.0, size, size))

  def extract(images: np.ndarray) -> np.ndarray:
    n = len(images)  # at most batch_size (InceptionStats); padded: one resize program per size
    if n < batch_size:
      images = np.concatenate([images, np.zeros((batch_size - n, *images.shape[1:]), np.uint8)])
    return extractor(np.asarray(resize(jnp.asarray(images))), progress=False)[:n]
  return extract


class MaskEntropy:
  """Mean per-image entropy of the normalised raw and adapted masks."""

  def __init__(self):
    self.n, self.raw, self.adapted = 0, 0.0, 0.0

  def add(self, mask: np.ndarray, raw_mask: np.ndarray) -> None:
    from lama_jax.metrics import mask_entropy, normalize_mask  # pylint: disable=g-import-not-at-top
    n = len(mask)
    # Padding channels are exactly zero: they add nothing to the normalisation or the entropy.
    self.raw += mask_entropy(normalize_mask(raw_mask)) * n
    self.adapted += mask_entropy(normalize_mask(mask)) * n
    self.n += n

  def result(self, alpha: float | None) -> dict[str, Any]:
    out = {'raw': self.raw / self.n, 'adapted': self.adapted / self.n, 'num_images': self.n}
    if alpha is not None:
      out['abs_alpha'] = abs(min(max(alpha, -1.0), 1.0))
    return out


class Alignment:
  """shapes_alignment summed over batches."""

  def __init__(self):
    from lama_jax.metrics.shapes_alignment import THING_COLORS  # pylint: disable=g-import-not-at-top
    self.things = THING_COLORS
    self.hits = {k: 0 for k in THING_COLORS}
    self.totals = {k: 0 for k in THING_COLORS}

  def add(self, images: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> None:
    from lama_jax.metrics import shapes_alignment  # pylint: disable=g-import-not-at-top
    result = shapes_alignment(images, boxes, labels)
    for k, (name, _) in self.things.items():
      total = int(np.sum(labels == k))
      if total:
        self.totals[k] += total
        self.hits[k] += int(round(result['per_category'][name] * total))

  def result(self) -> dict[str, Any]:
    num = sum(self.totals.values())
    return {'overall': sum(self.hits.values()) / num if num else float('nan'),
            'per_category': {name: self.hits[k] / self.totals[k] if self.totals[k] else float('nan')
                             for k, (name, _) in self.things.items()},
            'num_boxes': num}


def _crops(images, boxes, labels, size, rounding) -> tuple[list[np.ndarray], list[int]]:
  from lama_jax.metrics.fid import object_crops  # pylint: disable=g-import-not-at-top
  crops, crop_labels = [], []
  for image, bx, lb in zip(images, boxes, labels):
    crops += object_crops(image, bx, lb, size=size, rounding=rounding)
    crop_labels += [int(l) for l in lb if l > 0]
  return crops, crop_labels


def _pair_distances(lpips_fn, a: np.ndarray, b: np.ndarray, batch_size: int) -> np.ndarray:
  """LPIPS per pair of uint8 images, padded to one compiled batch shape."""
  a = a.astype(np.float32) / 127.5 - 1.0
  b = b.astype(np.float32) / 127.5 - 1.0
  n = len(a)
  if n < batch_size:
    pad = ((0, batch_size - n), (0, 0), (0, 0), (0, 0))
    a, b = np.pad(a, pad), np.pad(b, pad)
  return np.asarray(lpips_fn(a, b))[:n]


# ---------------------------------------------------------------------------------------------
# The evaluation.


def _stats_path(data_dir: str, dataset: str, size: int, kind: str, max_layouts: int | None) -> str:
  suffix = f'_first{max_layouts}' if max_layouts else ''
  return os.path.join(data_dir, 'fid_stats', f'{dataset}_{size}_{kind}{suffix}.npz')


def _lama_alpha(variables) -> float | None:
  try:
    return float(np.asarray(variables['params']['lama']['alpha']))
  except (KeyError, TypeError):
    return None


def _yolo_ids(yolo_dir: str | None) -> list[int] | None:
  if not yolo_dir:
    return None
  path = os.path.join(yolo_dir, 'manifest.json')
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return [int(i) for i in json.load(f)['image_ids']]


def evaluate(args: argparse.Namespace, metrics: Sequence[str], notes: list[str]) -> dict[str, Any]:
  """Samples the val split and computes `metrics`; returns the results dict (see main)."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from lama_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  from lama_jax.inference.generator import LayoutGenerator  # pylint: disable=g-import-not-at-top
  from lama_jax.inference.generator_dir import GeneratorDirError  # pylint: disable=g-import-not-at-top
  from lama_jax import visualize  # pylint: disable=g-import-not-at-top
  from lama_jax.sample import _layout_seed, pad_to_batch  # pylint: disable=g-import-not-at-top

  timings: dict[str, float] = {}
  start = time.time()
  try:
    gen = LayoutGenerator.load(args.workdir, args.step)
  except GeneratorDirError as e:
    raise EvalError(_one_line(e)) from None
  dataset = args.dataset or gen.dataset
  size = gen.image_size
  try:
    total = input_pipeline.num_examples(args.data_dir, dataset, 'val')
  except (FileNotFoundError, ValueError) as e:
    raise EvalError(_one_line(e)) from None
  if args.max_layouts:
    total = min(total, args.max_layouts)
  k = args.num_samples or DEFAULT_NUM_SAMPLES.get(dataset, 1)
  if k < 1:
    raise EvalError(f'--num_samples must be at least 1, got {k}')

  # Weights first: a bad file fails before the long sampling.
  extract = lpips_fn = None
  if 'fid' in metrics or 'scene_fid' in metrics:
    extract = make_inception(args.inception_weights, args.inception_batch_size)
  if 'ds' in metrics:
    from lama_jax.metrics import lpips  # pylint: disable=g-import-not-at-top
    lin = _load_weights('lpips_weights', lpips.load_lpips_linear_params, args.lpips_weights)
    alex = _load_weights('alexnet_weights', lpips.load_alexnet_params, args.alexnet_weights)
    lpips_fn = lpips.make_lpips_fn({'net': alex, **lin})
  score_yolo = 'yolo' in metrics and args.detections
  write_yolo = 'yolo' in metrics and args.yolo_dir and not score_yolo
  timings['load'] = time.time() - start

  # What the pass over the split computes.
  real_full = real_scene = None
  paths = {kind: _stats_path(args.data_dir, dataset, size, kind, args.max_layouts)
           for kind in ('full', 'scene')}
  fake_full = InceptionStats(extract, args.inception_batch_size) if 'fid' in metrics else None
  fake_scene = InceptionStats(extract, args.inception_batch_size) if 'scene_fid' in metrics \
      else None
  if fake_full and not os.path.exists(paths['full']):
    real_full = InceptionStats(extract, args.inception_batch_size)
  if fake_scene and not os.path.exists(paths['scene']):
    real_scene = InceptionStats(extract, args.inception_batch_size)
  entropy = MaskEntropy() if 'mask_entropy' in metrics else None
  alignment = Alignment() if 'alignment' in metrics else None
  ds_dists: list[np.ndarray] = []
  cas_fake, cas_fake_labels, cas_real, cas_real_labels = [], [], [], []
  if any(m in metrics for m in _ALL_SAMPLES):
    samples = max(k, 2) if 'ds' in metrics else k
  elif 'ds' in metrics:
    samples = 2
  elif write_yolo:
    samples = 1
  else:
    samples = 0  # only YOLO scoring: the ids are all we need
  if write_yolo:
    os.makedirs(args.yolo_dir, exist_ok=True)
  truncation = args.truncation if args.truncation > 0 else None

  ids: list[int] = []
  ds = input_pipeline.create_eval_dataset(args.data_dir, dataset, size, args.batch_size,
                                          gen.max_objects)
  start = time.time()
  bar = tqdm(total=total, desc=f'sampling {samples}×' if samples else 'reading ids',
             unit='layout')
  for b, batch in enumerate(ds.as_numpy_iterator()):
    n = min(len(batch['image_id']), total - len(ids))
    if n <= 0:
      break
    boxes, labels = batch['boxes'][:n], batch['labels'][:n]
    batch_ids = [int(i) for i in batch['image_id'][:n]]
    ids += batch_ids
    if samples:
      real = visualize.to_uint8(batch['image'][:n])  # rounded, as the pipeline's decoded images
      if real_full:
        real_full.add(list(real))
      if real_scene:
        real_scene.add(_crops(real, boxes, labels, SCENE_CROP, 'ceil')[0])
      if 'cas' in metrics:
        crops, crop_labels = _crops(real, boxes, labels, CAS_CROP, 'ceil')
        cas_real += crops
        cas_real_labels += crop_labels
      pboxes, plabels = pad_to_batch(boxes, labels, args.batch_size)
    first = None
    for r in range(samples):
      out = gen.generate(pboxes, plabels, seed=_layout_seed(args.seed, b * 1000 + r),
                         truncation=truncation, strict=False)
      images = visualize.to_uint8_truncated(out.image[:n])  # exactly what a saved PNG holds
      if r < k:
        if fake_full:
          fake_full.add(list(images))
        if fake_scene:
          fake_scene.add(_crops(images, boxes, labels, SCENE_CROP, 'floor')[0])
        if 'cas' in metrics:
          crops, crop_labels = _crops(images, boxes, labels, CAS_CROP, 'floor')
          cas_fake += crops
          cas_fake_labels += crop_labels
        if entropy:
          entropy.add(out.mask[:n], out.raw_mask[:n])
        if alignment:
          alignment.add(images, boxes, labels)
      if r == 0:
        first = images
        if write_yolo:
          _write_yolo_images(args.yolo_dir, images, batch_ids)
      if r == 1 and lpips_fn is not None:
        ds_dists.append(_pair_distances(lpips_fn, first, images, args.batch_size))
    bar.update(n)
  bar.close()
  timings['sampling'] = time.time() - start
  if not ids:
    raise EvalError(f'the {dataset} val split in {args.data_dir} is empty')

  results: dict[str, Any] = {}
  start = time.time()
  if fake_full:
    from lama_jax.metrics.fid import cached_statistics  # pylint: disable=g-import-not-at-top
    from lama_jax.metrics.frechet import frechet_distance  # pylint: disable=g-import-not-at-top
    real_stats = cached_statistics(paths['full'], real_full.stats if real_full else None)
    results['fid'] = frechet_distance(*real_stats, *fake_full.stats())
  if fake_scene:
    from lama_jax.metrics.fid import cached_statistics  # pylint: disable=g-import-not-at-top
    from lama_jax.metrics.frechet import frechet_distance  # pylint: disable=g-import-not-at-top
    real_stats = cached_statistics(paths['scene'], real_scene.stats if real_scene else None)
    results['scene_fid'] = frechet_distance(*real_stats, *fake_scene.stats())
  if ds_dists:
    d = np.concatenate(ds_dists)
    results['ds'] = {'mean': float(d.mean()), 'std': float(d.std(ddof=1)) if d.size > 1 else 0.0,
                     'num_pairs': int(d.size)}
  timings['features'] = time.time() - start
  if 'cas' in metrics:
    start = time.time()
    if not cas_fake or not cas_real:
      raise EvalError('cas: the evaluated layouts hold no objects')
    from lama_jax.metrics.cas import train_and_score  # pylint: disable=g-import-not-at-top
    acc = train_and_score(np.stack(cas_fake), np.asarray(cas_fake_labels), np.stack(cas_real),
                          np.asarray(cas_real_labels), num_classes=gen.num_classes,
                          epochs=args.cas_epochs, seed=args.seed)
    results['cas'] = {'accuracy': acc, 'train_crops': len(cas_fake), 'test_crops': len(cas_real)}
    timings['cas'] = time.time() - start
  if 'yolo' in metrics:
    if score_yolo:
      results['yolo'] = _score_yolo(args, _yolo_ids(args.yolo_dir) or ids)
    else:
      _write_yolo_manifest(args, ids, size, dataset, gen.step)
      notes.append(f'yolo: wrote {len(ids)} images and manifest.json to {args.yolo_dir}; run your '
                   'detector on them, then score with --detections F --instances F')
  if entropy:
    results['mask_entropy'] = entropy.result(_lama_alpha(gen.variables))
  if alignment:
    results['alignment'] = alignment.result()
  return {'workdir': os.path.abspath(args.workdir), 'step': gen.step, 'dataset': dataset,
          'image_size': size, 'num_layouts': len(ids), 'num_samples': k,
          'max_layouts': args.max_layouts, 'seed': args.seed, 'truncation': truncation,
          'metrics': results, 'notes': notes,
          'timings_s': {key: round(v, 2) for key, v in timings.items()}}


def _write_yolo_images(yolo_dir: str, images: np.ndarray, ids: Sequence[int]) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from lama_jax.sample import write_png  # pylint: disable=g-import-not-at-top
  for image, image_id in zip(images, ids):
    big = Image.fromarray(image).resize((YOLO_SIZE, YOLO_SIZE), Image.BILINEAR)
    write_png(os.path.join(yolo_dir, f'{image_id}.png'), np.asarray(big))


def _write_yolo_manifest(args, ids, size, dataset, step) -> None:
  manifest = {'dataset': dataset, 'step': step, 'generated_size': size, 'seed': args.seed,
              'image_ids': ids,
              'images': [{'id': i, 'file_name': f'{i}.png', 'height': YOLO_SIZE,
                          'width': YOLO_SIZE} for i in ids]}
  tmp = os.path.join(args.yolo_dir, 'manifest.json.tmp')
  with open(tmp, 'w') as f:
    json.dump(manifest, f, indent=1)
  os.replace(tmp, os.path.join(args.yolo_dir, 'manifest.json'))


def _score_yolo(args, ids: Sequence[int]) -> dict[str, float]:
  from lama_jax.metrics import yolo_score  # pylint: disable=g-import-not-at-top
  try:
    with open(args.instances) as f:
      instances = json.load(f)
    with open(args.detections) as f:
      dets = json.load(f)
    sizes = yolo_score.image_sizes_from_instances(instances)
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise EvalError(f'yolo: cannot read --detections/--instances: {_one_line(e)}') from None
  if not isinstance(dets, list):
    raise EvalError(f'--detections {args.detections}: not a COCO results list')
  keep = set(ids)
  missing = sorted(keep - set(sizes))
  if missing:
    raise EvalError(f'--instances {args.instances} lacks {len(missing)} evaluated image ids '
                    f'(e.g. {missing[:3]}); is it the right split?')
  dets = yolo_score.rescale_detections([d for d in dets if d.get('image_id') in keep],
                                       (YOLO_SIZE, YOLO_SIZE), sizes)
  return yolo_score.coco_ap(instances, dets, ids)


# ---------------------------------------------------------------------------------------------
# The table.


def _fmt(x: float, scale: float = 1.0, digits: int = 2) -> str:
  return 'nan' if x is None or not math.isfinite(x) else f'{x * scale:.{digits}f}'


def markdown_table(report: dict[str, Any]) -> str:
  """The results as Markdown tables shaped like the paper's (Table 1, Table 4)."""
  m = report['metrics']
  name = os.path.basename(report['workdir'].rstrip('/')) or report['workdir']
  lines = [f'# Evaluation of {name} (step {report["step"]})', '',
           f'{report["dataset"]} val, {report["num_layouts"]} layouts × {report["num_samples"]} '
           f'samples, {report["image_size"]}×{report["image_size"]}, seed {report["seed"]}'
           + (f' (first {report["max_layouts"]} layouts only)' if report['max_layouts'] else ''),
           '']
  cols = []
  if 'fid' in m:
    cols.append(('FID ↓', _fmt(m['fid'])))
  if 'scene_fid' in m:
    cols.append(('SceneFID ↓', _fmt(m['scene_fid'])))
  if 'ds' in m:
    cols.append(('DS ↑', f'{_fmt(m["ds"]["mean"])} ± {_fmt(m["ds"]["std"])}'))
  if 'cas' in m:
    cols.append(('CAS ↑', _fmt(m['cas']['accuracy'], 100)))
  if 'yolo' in m:
    cols.append(('YOLO AP / AP50 / AP75 ↑',
                 ' / '.join(_fmt(m['yolo'][k], 100) for k in ('AP', 'AP50', 'AP75'))))
  if cols:
    head = ['Method', 'Resolution'] + [c for c, _ in cols]
    row = [name, f'{report["image_size"]}×{report["image_size"]}'] + [v for _, v in cols]
    lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head),
              '| ' + ' | '.join(row) + ' |', '']
  if 'mask_entropy' in m:
    e = m['mask_entropy']
    lines += ['Mask entropy (Table 4)', '',
              '| Method | H(raw mask) | H(adapted mask) | abs(α) |', '|---|---|---|---|',
              f'| {name} | {_fmt(e["raw"], digits=4)} | {_fmt(e["adapted"], digits=4)} | '
              f'{_fmt(e.get("abs_alpha"), digits=4)} |', '']
  if 'alignment' in m:
    a = m['alignment']
    cats = list(a['per_category'])
    lines += [f'Shapes alignment ({a["num_boxes"]} thing boxes, %)', '',
              '| Method | overall | ' + ' | '.join(cats) + ' |', '|' + '---|' * (len(cats) + 2),
              f'| {name} | {_fmt(a["overall"], 100)} | '
              + ' | '.join(_fmt(a['per_category'][c], 100) for c in cats) + ' |', '']
  for note in report['notes']:
    lines.append(f'- {note}')
  return '\n'.join(lines).rstrip() + '\n'


def _write(path: str, text: str) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def _json_safe(x: Any) -> Any:
  """NaN and infinities as null: strict JSON readers reject them."""
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def _dataset_of(workdir: str) -> str:
  path = os.path.join(workdir, 'generator.json')
  if not os.path.isfile(path):
    raise EvalError(f'{workdir} has no generator.json: not a generator directory or training '
                    'workdir')
  try:
    with open(path) as f:
      return str(json.load(f).get('dataset', ''))
  except (OSError, ValueError, AttributeError):
    return ''  # the loader reports a broken generator.json


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    for flag in ('batch_size', 'inception_batch_size', 'cas_epochs'):
      if getattr(args, flag) < 1:
        raise EvalError(f'--{flag} must be at least 1, got {getattr(args, flag)}')
    if args.num_samples is not None and args.num_samples < 1:
      raise EvalError(f'--num_samples must be at least 1, got {args.num_samples}')
    if args.max_layouts is not None and args.max_layouts < 1:
      raise EvalError(f'--max_layouts must be at least 1, got {args.max_layouts}')
    if not os.path.isdir(args.workdir):
      raise EvalError(f'--workdir {args.workdir}: no such directory')
    dataset = _dataset_of(args.workdir)
    dataset = args.dataset or dataset
    metrics, notes = select_metrics(args.metrics, dataset, args)
    _check_files(args, metrics)
    if not metrics:
      raise EvalError('no metric left to compute: ' + '; '.join(notes))
    report = evaluate(args, metrics, notes)
    out = args.out or os.path.join(args.workdir, 'eval')
    os.makedirs(out, exist_ok=True)
    table = markdown_table(report)
    _write(os.path.join(out, 'metrics.json'), json.dumps(_json_safe(report), indent=1) + '\n')
    _write(os.path.join(out, 'metrics.md'), table)
    print(table)
    print(f'wrote {os.path.join(out, "metrics.json")} and metrics.md')
    return 0
  except EvalError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2


if __name__ == '__main__':
  sys.exit(main())
