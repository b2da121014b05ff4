"""One driver: samples the validation layouts once and feeds every requested evaluator.

Batch b, sample r is generated with `sampling.sample_seed(seed, b, r)` from layouts padded as
`sampling.val_batches` pads them, so the samples are exactly those `python -m lama_jax.sample --val`
writes for the same --seed, --batch_size and --truncation. Each image is quantised to uint8 exactly
as a saved PNG ((x·0.5 + 0.5)·255, truncated); real images are the val images at the generator's
resolution, rounded, as the input pipeline decodes them.
"""
import dataclasses
import os
from pathlib import Path
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from lama_jax import visualize
from lama_jax.datasets import input_pipeline
from lama_jax.evaluation import registry
from lama_jax.evaluation.common import (EvalError, Evaluator, NotComputed, SampleBatch, Settings,
                                        Target)
from lama_jax.inference import generator_dir
from lama_jax.inference import portable_runtime
from lama_jax.inference import sampling
from lama_jax.inference.generator import LayoutGenerator
from lama_jax.inference.sampling import ValBatch

# Given semantic masks [B, O, H, W] for a (padded) batch, in place of the generator's own.
MasksFn = Callable[[ValBatch], np.ndarray]


def feed(gen: LayoutGenerator, batches: Iterable[ValBatch], evaluators: Sequence[Evaluator],
         seed: int, truncation: float | None, masks_fn: MasksFn | None = None,
         progress: tqdm | None = None) -> list[int]:
  """Samples every batch as often as the most demanding evaluator asks; returns the layouts' ids.

  With no evaluator asking for samples, each batch is passed once (repeat 0) without images.
  """
  draws = max((e.repeats for e in evaluators), default=0)
  ids: list[int] = []
  for batch in batches:
    n = batch.count
    ids += [int(i) for i in batch.image_ids]
    masks = None if masks_fn is None else masks_fn(batch)
    real = None if batch.images is None else visualize.to_uint8(batch.images)
    for r in range(max(draws, 1)):
      samples = SampleBatch(r, batch.boxes[:n], batch.labels[:n], batch.image_ids, real)
      if draws:
        out = gen.generate(batch.boxes, batch.labels, truncation=truncation, strict=False,
                           seed=sampling.sample_seed(seed, batch.index, r), masks=masks)
        samples.images = visualize.to_uint8_truncated(out.image[:n])
        samples.masks, samples.raw_masks = out.mask[:n], out.raw_mask[:n]
      for evaluator in evaluators:
        evaluator.add(samples)
    if progress is not None:
      progress.update(n)
  return ids


FAILED_PREFIX = 'not computed: '  # a note that starts so names an evaluator that failed


def failures(report: Mapping[str, Any]) -> list[str]:
  """The notes of `report` that name evaluators which could not compute their result."""
  return [note.removeprefix(FAILED_PREFIX) for note in report['notes']
          if note.startswith(FAILED_PREFIX)]


def results(evaluators: Sequence[Evaluator]) -> tuple[dict[str, Any], list[str], dict[str, float]]:
  """Each evaluator's result (those that report one), their notes, and seconds per evaluator.

  An evaluator that cannot compute its result from the samples (no objects to crop, a classifier
  whose loss diverged) is left out with a note naming why, so the others' results, which took
  the whole sampling to make, are still reported.
  """
  out, notes, seconds = {}, [], {}
  for evaluator in evaluators:
    start = time.time()
    try:
      value = evaluator.result()
    except NotComputed as e:
      value = None
      notes.append(f'{FAILED_PREFIX}{e}' if str(e).startswith(f'{evaluator.name}: ')
                   else f'{FAILED_PREFIX}{evaluator.name}: {e}')
    seconds[evaluator.name] = time.time() - start
    if value is not None:
      out[evaluator.name] = value
    notes += evaluator.notes
  return out, notes, seconds


def sample_split(gen: LayoutGenerator, dataset: str, evaluators: Sequence[Evaluator],
                 settings: Settings, masks_fn: MasksFn | None = None, desc: str | None = None
                 ) -> list[int]:
  """Feeds the first `settings.max_layouts` val layouts of `dataset` to `evaluators`; their ids.

  Raises:
    EvalError: the split is empty, or has fewer layouts than an evaluator needs.
  """
  # At the generator's size: a data dir without it then says which size to prepare.
  in_split = input_pipeline.num_examples(settings.data_dir, dataset, 'val', gen.image_size)
  total = min(in_split, settings.max_layouts or in_split)
  if not in_split:
    raise EvalError(f'the {dataset} val split in {settings.data_dir} is empty')
  for evaluator in evaluators:  # before the sampling, not after it
    if total < evaluator.min_layouts:
      given = (f'--max_layouts {settings.max_layouts}' if total < in_split
               else f'the {dataset} val split in {settings.data_dir} has {total}')
      raise EvalError(f'{evaluator.name} needs at least {evaluator.min_layouts} val layouts; '
                      f'{given}')
  draws = max((e.repeats for e in evaluators), default=0)
  batches = sampling.val_batches(settings.data_dir, dataset, gen.image_size, settings.batch_size,
                                 gen.max_objects, settings.max_layouts,
                                 with_masks=masks_fn is not None)
  with tqdm(total=total, unit='layout',
            desc=desc or (f'sampling {draws}×' if draws else 'reading ids')) as bar:
    ids = feed(gen, batches, evaluators, settings.seed, settings.truncation, masks_fn, bar)
  if not ids:
    raise EvalError(f'the {dataset} val split in {settings.data_dir} is empty')
  return ids


def dataset_of(workdir: str, dataset: str | None = None) -> str:
  """`dataset`, or the dataset named in the generator directory's generator.json ('' if none).

  Raises:
    EvalError: `workdir` is not a directory, or has no generator.json (nor a portable manifest).
    LamaError: its generator.json or manifest.json is damaged or not one (checked as the loader
      checks it, so that it is named now, not taken for an unknown dataset whose default metrics
      want weights).
  """
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise EvalError(f'--workdir {workdir}: a file, not a directory')
  if not os.path.isdir(workdir):
    raise EvalError(f'--workdir {workdir}: no such directory')
  portable = portable_runtime.is_portable(workdir)
  path = os.path.join(workdir, portable_runtime.MANIFEST if portable
                      else generator_dir.GENERATOR_JSON)
  if not os.path.exists(path):  # a folder in its place is named by the reader below
    generator_dir.check_foreign_manifest(Path(workdir))
    raise EvalError(f'{workdir} has no generator.json: not a generator directory, training '
                    'workdir or portable artifact')
  if dataset:
    return dataset
  if not portable:
    config, _ = generator_dir.read_generator_config(Path(workdir))
    return str(config.get('dataset', ''))
  try:
    return str(portable_runtime.read_manifest(workdir)['model'].get('dataset', ''))
  except portable_runtime.PortableError as e:
    raise EvalError(str(e)) from None


def evaluate(workdir: str, names: Sequence[str], settings: Settings, step: int | None = None,
             dataset: str | None = None, notes: Sequence[str] = ()) -> dict[str, Any]:
  """Evaluates a generator directory on the val split with the named evaluators; the report.

  Returns:
    {'workdir', 'step', 'dataset', 'image_size', 'num_layouts', 'num_samples', 'max_layouts',
     'seed', 'truncation', 'metrics': {name: result}, 'notes', 'timings_s'}.
  """
  start = time.time()
  gen = LayoutGenerator.load(workdir, step)
  if dataset:  # before the metric networks load
    sampling.check_split_categories(gen, settings.data_dir, dataset)
  target = Target.of(gen, dataset)
  in_split = input_pipeline.num_examples(settings.data_dir, target.dataset, 'val', gen.image_size)
  if settings.max_layouts and settings.max_layouts >= in_split:  # all of them: a full evaluation
    settings = dataclasses.replace(settings, max_layouts=None)
  evaluators = registry.create(names, settings, target)  # a bad weights file fails here
  timings = {'load': time.time() - start}
  start = time.time()
  ids = sample_split(gen, target.dataset, evaluators, settings)
  timings['sampling'] = time.time() - start
  metrics, more_notes, seconds = results(evaluators)
  timings.update(seconds)
  return {'workdir': os.path.abspath(workdir), 'step': gen.step, 'dataset': target.dataset,
          'image_size': target.image_size, 'num_layouts': len(ids),
          'num_samples': settings.samples_per_layout(target.dataset),
          'max_layouts': settings.max_layouts, 'seed': settings.seed,
          'truncation': settings.truncation, 'metrics': metrics, 'notes': [*notes, *more_notes],
          'timings_s': {key: round(v, 2) for key, v in timings.items()}}


def evaluate_layouts(gen: LayoutGenerator, layouts: Mapping[str, np.ndarray],
                     names: Sequence[str], seed: int = 0, truncation: float | None = 2.0,
                     batch_size: int = 64, settings: Settings | None = None) -> dict[str, Any]:
  """Samples each given layout once and scores the samples with the named evaluators.

  For the training loop (e.g. `['alignment']` on the first val layouts of the shapes set).

  Args:
    gen: the generator (eval mode).
    layouts: 'boxes' [N, O, 4] and 'labels' [N, O]; optional 'image' [N, H, W, 3] real images in
      [-1, 1] (FID, SceneFID, CAS need them), 'image_id' [N], and 'masks' [N, O, 32, 32] box-local
      masks: when present the generator is given these masks (placed in their boxes) instead of
      predicting its own, as for a generator trained on ground-truth masks.
    names: evaluator names (`registry.METRICS`).
    seed, truncation: as `sample --val`: batch b of `batch_size` layouts is seeded with
      `sample_seed(seed, b, 0)`.
    batch_size: layouts per generator call (the last batch is padded).
    settings: weights and options for evaluators that need them (default: `Settings()`).

  Returns:
    {name: result}, e.g. {'alignment': {'overall', 'per_category', 'num_boxes'}}.

  Raises:
    EvalError: an evaluator that compares with real images, and no 'image' in `layouts`.
  """
  real = [name for name in names if registry.EVALUATORS[name].needs_real]
  if real and 'image' not in layouts:
    raise EvalError(f'{",".join(real)} compare with real images: give layouts["image"]')
  settings = dataclasses.replace(settings or Settings(), num_samples=1, seed=seed,
                                 truncation=truncation, batch_size=batch_size)
  evaluators = registry.create(names, settings, Target.of(gen))
  masks_fn = (lambda b: gen.place_masks(b.boxes, b.masks)) if 'masks' in layouts else None
  feed(gen, _layout_batches(layouts, batch_size), evaluators, seed, truncation, masks_fn)
  return results(evaluators)[0]


def _layout_batches(layouts: Mapping[str, np.ndarray], batch_size: int) -> Iterable[ValBatch]:
  """`layouts` in batches of `batch_size`, the last one padded as the val batches are."""
  for index, start in enumerate(range(0, len(layouts['labels']), batch_size)):
    part = {k: np.asarray(v[start:start + batch_size]) for k, v in layouts.items()}
    count = len(part['labels'])
    masks = part.get('masks')
    yield ValBatch(index, count, sampling.pad_rows(part['boxes'], batch_size),
                   sampling.pad_rows(part['labels'], batch_size), part.get('image'),
                   part.get('image_id', np.arange(start, start + count)),
                   None if masks is None else sampling.pad_rows(masks, batch_size))
