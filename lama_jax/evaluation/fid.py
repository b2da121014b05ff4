"""FID and SceneFID evaluators: Inception statistics of the samples against the real val images.

Real-image statistics are cached in DATA_DIR/fid_stats/<dataset>_<size>_{full,scene}.npz (with a
layout limit N: ..._first<N>.npz), so later evaluations only run Inception on samples. A cache
records the Inception weights' SHA-256, the prepared val split's files (names, sizes, modification
times: a split prepared again may hold other images) and, for SceneFID, the generator's max_objects,
which decides the objects cropped; one written for others is computed again and replaced. SceneFID
compares 224×224 crops of every object (label > 0): real crops round box corners up, generated
ones truncate, as the official scripts do.
"""
import functools
import hashlib
import json
import os
from typing import ClassVar

import numpy as np
import tensorflow as tf

from lama_jax.datasets import builders
from lama_jax.evaluation.common import EvalError, Evaluator, SampleBatch, Settings, Target
from lama_jax.evaluation.inception_features import Extractor, InceptionStats, make_inception
from lama_jax.metrics import fid as fid_lib
from lama_jax.metrics import frechet

SCENE_CROP = 224


def stats_path(data_dir: str, dataset: str, size: int, kind: str, max_layouts: int | None) -> str:
  """Where the real statistics of `kind` ('full' or 'scene') are cached."""
  suffix = f'_first{max_layouts}' if max_layouts else ''
  return os.path.join(data_dir, 'fid_stats', f'{dataset}_{size}_{kind}{suffix}.npz')


def weights_digest(path: str) -> str:
  """The SHA-256 of a weights file, in hex (what a statistics cache was computed with)."""
  stat = os.stat(path)
  return _file_sha256(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
  """Keyed by size and modification time too: FID and SceneFID of one run hash the ~100 MB
  Inception file once, and a file replaced since is hashed anew."""
  del size, mtime_ns
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()


def split_fingerprint(data_dir: str, dataset: str, size: int) -> str:
  """A digest of the prepared val split's files: name, size and modification time of each (through
  tf.io.gfile, so a gs:// data dir works too); '' when there are none."""
  builder = builders.BUILDERS.get(dataset)
  if builder is None:
    return ''
  folder = tf.io.gfile.join(data_dir, dataset, f'{size}px', str(builder.VERSION))
  paths = sorted(tf.io.gfile.glob(tf.io.gfile.join(folder, f'{dataset}-val.*')))
  if not paths:
    return ''
  entries = [(os.path.basename(p), s.length, s.mtime_nsec)
             for p, s in ((p, tf.io.gfile.stat(p)) for p in paths)]
  return hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def crop_objects(images: np.ndarray, boxes: np.ndarray, labels: np.ndarray, size: int,
                 rounding: str) -> tuple[list[np.ndarray], list[int]]:
  """size × size crops of every object (label > 0) of a batch, and their labels."""
  crops, crop_labels = [], []
  for image, bx, lb in zip(images, boxes, labels):
    crops += fid_lib.object_crops(image, bx, lb, size=size, rounding=rounding)
    crop_labels += [int(l) for l in lb if l > 0]
  return crops, crop_labels


class _FrechetEvaluator(Evaluator):
  """The Fréchet distance of Inception features of `pictures` of real and generated images."""
  weights = ('inception_weights',)
  needs_real = True
  kind: ClassVar[str] = ''  # the cache's name: 'full' or 'scene'

  def __init__(self, extract: Extractor, batch_size: int, cache_path: str, repeats: int,
               source: str | None = None):
    super().__init__()
    self.repeats, self.cache_path, self.source = repeats, cache_path, source
    self.fake = InceptionStats(extract, batch_size)
    try:  # read now: a damaged cache is said before sampling, not after
      self.cached = fid_lib.read_statistics(cache_path, source)
    except ValueError as e:
      raise EvalError(f'{e}; delete it and evaluate computes the real statistics again') from None
    self.real = None if self.cached is not None else InceptionStats(extract, batch_size)
    if self.cached is None and os.path.exists(cache_path):
      self.notes.append(f'{self.name}: the real statistics in {cache_path} were computed with '
                        'other Inception weights or settings; computed again')

  @classmethod
  def create(cls, settings: Settings, target: Target) -> '_FrechetEvaluator':
    extract = make_inception(settings.inception_weights, settings.inception_batch_size)
    path = stats_path(settings.data_dir, target.dataset, target.image_size, cls.kind,
                      settings.max_layouts)
    return cls(extract, settings.inception_batch_size, path,
               settings.samples_per_layout(target.dataset), cls.source_of(settings, target))

  @classmethod
  def source_of(cls, settings: Settings, target: Target) -> str:
    """What the real statistics depend on beyond the cache's name."""
    split = split_fingerprint(settings.data_dir, target.dataset, target.image_size)
    return (f'inception_weights sha256 {weights_digest(settings.inception_weights)}, '
            f'val split {split or "none"}')

  def pictures(self, images: np.ndarray, samples: SampleBatch, rounding: str) -> list[np.ndarray]:
    raise NotImplementedError

  def add(self, samples: SampleBatch) -> None:
    if samples.repeat == 0 and self.real is not None:
      self.real.add(self.pictures(samples.real, samples, 'ceil'))
    if samples.repeat < self.repeats:
      self.fake.add(self.pictures(samples.images, samples, 'floor'))

  def result(self) -> float:
    real = (self.cached if self.cached is not None else
            fid_lib.cached_statistics(self.cache_path, self.real.stats, self.source))
    # Through the module, so tests can stand in a cheaper distance.
    return float(frechet.frechet_distance(*real, *self.fake.stats()))


class Fid(_FrechetEvaluator):
  """FID of all samples against the real val images."""
  name = 'fid'
  kind = 'full'
  min_layouts = 2  # the real images' covariance

  def pictures(self, images, samples, rounding):
    return list(images)


class SceneFid(_FrechetEvaluator):
  """FID of 224×224 crops of every object."""
  name = 'scene_fid'
  kind = 'scene'

  @classmethod
  def source_of(cls, settings, target):
    return f'{super().source_of(settings, target)}, max_objects {target.max_objects}'

  def pictures(self, images, samples, rounding):
    return crop_objects(images, samples.boxes, samples.labels, SCENE_CROP, rounding)[0]
