"""tf.data input pipeline: prepared TFRecords -> batches {image, boxes, labels}.

`prepare` stored each image already resized to the training size (square, aspect ignored, like the
official loader; bilinear with antialiasing and rounding to 8 bits, as PIL's BILINEAR resize does:
`common.resize_image`), one prepared copy per size. Here each example is only scaled to [-1, 1],
optionally mirrored, and its objects are padded with the official padding (label 0, box (-0.6, -0.6,
0.5, 0.5)).

Flip modes for training:
  'official': every image appears twice per epoch, once as is and once mirrored (x -> 1 - (x + w)),
              so an epoch is twice the split (the official `left_right_flip=True`).
  'random':   each example is mirrored with probability 1/2 (seeded).
  'none':     no flip.

With `with_masks=True` batches also carry 'masks' float32 [B, O, 32, 32] in [0, 1]: the prepared
ground-truth box-local object masks (see `lama_jax.datasets.common`), mirrored with the image (the box
flip plus a left-right flip of each 32×32 mask), padding objects all zeros. Place them in the image
with `lama_jax.models.mask.masks_to_layout(boxes, masks, image_size)`.

Each process reads its own, equally sized part of the training split (TFDS `even_splits` over
`jax.process_count()`), so hosts never see the same image and all take the same number of steps.
"""
import contextlib
import functools
import logging as std_logging
import re
from typing import Iterator

from absl import logging
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from lama_jax.datasets import builders
from lama_jax.datasets import common

tf.config.set_visible_devices([], 'GPU')  # TensorFlow must never take the accelerators from JAX

PAD_LABEL = 0  # `__image__`
PAD_BOX = (-0.6, -0.6, 0.5, 0.5)  # the official loader's padding box
MASK_SIZE = 32  # side of the prepared box-local object masks
DEFAULT_MAX_OBJECTS = {'coco_stuff': 8, 'visual_genome': 10, 'shapes': 8}
FLIP_MODES = ('official', 'random', 'none')
_SPLIT_ALIASES = {'validation': 'val', 'test': 'val'}


def _builder(data_dir: str, dataset: str, image_size: int | None) -> tfds.core.DatasetBuilder:
  """The prepared copy at `image_size` (None: any prepared size, for what all sizes share)."""
  if dataset not in builders.BUILDERS:
    raise common.DatasetError(f'Unknown dataset {dataset!r}; choose from '
                              f'{sorted(builders.BUILDERS)}.')
  sizes = builders.prepared_sizes(data_dir, dataset)
  if image_size is None and sizes:
    image_size = sizes[0]
  builder = builders.make(dataset, data_dir, image_size or common.DEFAULT_SIZE)
  if not builder.info.splits:
    raise common.DatasetNotPreparedError(
        builders.not_prepared_message(data_dir, dataset, image_size))
  return builder


def _split_name(builder: tfds.core.DatasetBuilder, split: str) -> str:
  split = _SPLIT_ALIASES.get(split, split)
  if split not in builder.info.splits:
    raise common.DatasetError(f'{builder.name} has splits {list(builder.info.splits)}, '
                              f'not {split!r}.')
  return split


def num_examples(data_dir: str, dataset: str, split: str, image_size: int | None = None) -> int:
  """Images in a prepared split ('train' or 'val'), before flip doubling (the same at every
  prepared size; `image_size` None takes any)."""
  builder = _builder(data_dir, dataset, image_size)
  return builder.info.splits[_split_name(builder, split)].num_examples


def steps_per_epoch(data_dir: str, dataset: str, global_batch_size: int,
                    flip: str = 'official', image_size: int | None = None) -> int:
  """Training steps in one epoch (the official flip doubles it), equal on every process."""
  per_process = num_examples(data_dir, dataset, 'train', image_size) // jax.process_count()
  copies = 2 if flip == 'official' else 1
  return per_process * copies // (global_batch_size // jax.process_count())


class _TfdsDtypeNotice(std_logging.Filter):
  """TFDS's own SkipDecoding reads the deprecated `FeatureConnector.dtype`, and TFDS then logged
  'Please change your code...' amid the training's progress lines: a notice for TFDS, not for us."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return '.dtype` is deprecated' not in record.getMessage()


@contextlib.contextmanager
def _without_tfds_dtype_notice() -> Iterator[None]:
  logger, notice = std_logging.getLogger('absl'), _TfdsDtypeNotice()
  logger.addFilter(notice)
  try:
    yield
  finally:
    logger.removeFilter(notice)


def _read(builder: tfds.core.DatasetBuilder, split, shuffle: bool, seed: int, with_masks: bool,
          with_images: bool = True) -> tf.data.Dataset:
  """The stored examples; what is not wanted (masks, images) is dropped undecoded after reading."""
  options = tf.data.Options()
  options.deterministic = True
  read_config = tfds.ReadConfig(shuffle_seed=seed, options=options)
  dropped = (() if with_masks else ('masks',)) + (() if with_images else ('image',))
  with _without_tfds_dtype_notice():
    ds = builder.as_dataset(split=split, shuffle_files=shuffle, read_config=read_config,
                            decoders={k: tfds.decode.SkipDecoding() for k in dropped} or None)
  if not dropped:
    return ds

  @tf.autograph.experimental.do_not_convert  # plain Python at trace time: autograph loses closures
  def drop(ex):
    return {k: v for k, v in ex.items() if k not in dropped}
  return ds.map(drop)


def _preprocess(example: dict, flip: tf.Tensor, image_size: int, max_objects: int,
                with_masks: bool = False) -> dict:
  """Mirrors one example when `flip` and pads its objects (the image stays uint8: `_scale`)."""
  image = example['image']  # uint8 [H, W, 3], stored already resized
  boxes = tf.cast(example['boxes'][:max_objects], tf.float32)  # [N, 4]
  labels = tf.cast(example['labels'][:max_objects], tf.int32)  # [N]
  x, y, w, h = tf.unstack(boxes, axis=-1)
  # A cond, not a select: the image is only copied when it is mirrored.
  image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  boxes = tf.where(flip, tf.stack([1.0 - (x + w), y, w, h], axis=-1), boxes)
  pad = max_objects - tf.shape(labels)[0]
  boxes = tf.concat([boxes, tf.tile(tf.constant([PAD_BOX], tf.float32), [pad, 1])], axis=0)
  labels = tf.pad(labels, [[0, pad]], constant_values=PAD_LABEL)
  out = {'image': tf.ensure_shape(image, (image_size, image_size, 3)),
         'boxes': tf.ensure_shape(boxes, (max_objects, 4)),
         'labels': tf.ensure_shape(labels, (max_objects,))}
  if with_masks:
    masks = tf.cast(example['masks'][:max_objects], tf.float32)  # [N, 32, 32], stored {0, 1}
    masks = tf.cond(flip, lambda: tf.reverse(masks, axis=[2]), lambda: masks)
    masks = tf.pad(masks, [[0, pad], [0, 0], [0, 0]])
    out['masks'] = tf.ensure_shape(masks, (max_objects, MASK_SIZE, MASK_SIZE))
  if 'image_id' in example:
    out['image_id'] = example['image_id']
  return out


def _scale(batch: dict) -> dict:
  """uint8 images to float32 in [-1, 1], once per batch (4× less to copy per example before)."""
  return {**batch, 'image': tf.cast(batch['image'], tf.float32) / 127.5 - 1.0}


@functools.cache  # once per process: a run builds its train, eval and layout pipelines
def _warn_truncation(dataset: str, max_objects: int) -> None:
  if max_objects < DEFAULT_MAX_OBJECTS[dataset]:
    logging.warning('max_objects=%d < %d: images with more objects keep only their first %d.',
                    max_objects, DEFAULT_MAX_OBJECTS[dataset], max_objects)


def create_train_dataset(data_dir: str, dataset: str, image_size: int, global_batch_size: int,
                         max_objects: int, flip: str = 'official', seed: int = 0,
                         shuffle_buffer: int = 2048, with_masks: bool = False) -> tf.data.Dataset:
  """The infinite, shuffled training stream of this process.

  Args:
    data_dir: the TFDS data dir given to `prepare`.
    dataset: 'coco_stuff', 'visual_genome' or 'shapes'.
    image_size: output side in pixels.
    global_batch_size: batch over all processes; each yields global_batch_size // process_count.
    max_objects: O, objects per image after padding (COCO 8, VG 10, shapes 8).
    flip: 'official', 'random' or 'none' (see the module docstring).
    seed: shuffling (and random flip) seed; the same seed gives the same stream.
    shuffle_buffer: examples in the shuffle buffer (the stored images: 48 KB each at 128, 192 KB
      at 256, so the default 2048 holds 100 / 400 MB).
    with_masks: also yield the ground-truth 'masks' float32 [B, O, 32, 32] in [0, 1], flipped with
      the image, padding objects zero (for training the mask-to-image part on them, Sec. 3).

  Returns:
    A dataset of {'image': float32 [B, H, W, 3] in [-1, 1], 'boxes': float32 [B, O, 4],
    'labels': int32 [B, O]} (+ 'masks' when with_masks), B = global_batch_size //
    jax.process_count(), last partial batch dropped.
  """
  if flip not in FLIP_MODES:
    raise ValueError(f'flip must be one of {FLIP_MODES}, not {flip!r}.')
  count, index = jax.process_count(), jax.process_index()
  if global_batch_size % count:
    raise ValueError(f'global_batch_size {global_batch_size} is not divisible by the '
                     f'{count} processes.')
  _warn_truncation(dataset, max_objects)
  builder = _builder(data_dir, dataset, image_size)
  split = tfds.even_splits(_split_name(builder, 'train'), n=count, drop_remainder=True)[index]
  ds = _read(builder, split, shuffle=True, seed=seed, with_masks=with_masks)
  if flip == 'official':
    # Each record twice, unflipped and flipped; the shuffle below mixes the copies over the epoch.
    ds = ds.map(lambda ex: {**{k: tf.stack([v, v]) for k, v in ex.items()},
                            'flip': tf.constant([False, True])}).unbatch()
  ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
  if flip == 'random':
    coins = tf.data.Dataset.random(seed=seed).map(lambda r: r % 2 == 1)
    ds = tf.data.Dataset.zip(ds, coins).map(lambda ex, c: {**ex, 'flip': c})
  elif flip == 'none':
    ds = ds.map(lambda ex: {**ex, 'flip': tf.constant(False)})
  ds = ds.map(lambda ex: _preprocess({k: v for k, v in ex.items() if k != 'image_id'},
                                     ex['flip'], image_size, max_objects, with_masks),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(global_batch_size // count, drop_remainder=True)
  return ds.map(_scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def create_eval_dataset(data_dir: str, dataset: str, image_size: int, batch_size: int,
                        max_objects: int, with_masks: bool = False) -> tf.data.Dataset:
  """One pass over the whole val split in a fixed order, no flip, last partial batch kept.

  Every process sees the whole split (callers that split evaluation across hosts shard it).

  Returns:
    A dataset of {'image', 'boxes', 'labels'} as in training plus 'image_id' int64 [B], the
    dataset's original image ids; with `with_masks`, 'masks' float32 [B, O, 32, 32] as in training.
  """
  _warn_truncation(dataset, max_objects)
  builder = _builder(data_dir, dataset, image_size)
  ds = _read(builder, _split_name(builder, 'val'), shuffle=False, seed=0, with_masks=with_masks)
  ds = ds.map(lambda ex: _preprocess(ex, tf.constant(False), image_size, max_objects, with_masks),
              num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.batch(batch_size, drop_remainder=False)
  return ds.map(_scale, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def read_layouts(data_dir: str, dataset: str, split: str, max_objects: int,
                 limit: int | None = None) -> dict[str, np.ndarray]:
  """The layouts of a prepared split in stored order, without decoding its images.

  Returns:
    {'boxes': float32 [N, max_objects, 4], 'labels': int32 [N, max_objects], 'image_id': int64 [N]}
    for the first `limit` (default all) examples, padded the official way (objects beyond
    max_objects dropped).
  """
  _warn_truncation(dataset, max_objects)
  builder = _builder(data_dir, dataset, None)  # the layouts are the same at every prepared size
  ds = _read(builder, _split_name(builder, split), shuffle=False, seed=0, with_masks=False,
             with_images=False)
  if limit is not None:
    ds = ds.take(limit)
  size = builder.builder_config.image_size
  rows = list(numpy_batches(ds, data_dir, dataset, size, split))
  boxes = np.tile(np.asarray(PAD_BOX, np.float32), (len(rows), max_objects, 1))
  labels = np.full((len(rows), max_objects), PAD_LABEL, np.int32)
  for i, row in enumerate(rows):
    n = min(len(row['labels']), max_objects)
    boxes[i, :n], labels[i, :n] = row['boxes'][:n], row['labels'][:n]
  return {'boxes': boxes, 'labels': labels,
          'image_id': np.asarray([row['image_id'] for row in rows], np.int64)}


def as_numpy(batch: dict) -> dict[str, np.ndarray]:
  """A batch's tensors as NumPy arrays."""
  return {k: np.asarray(v) for k, v in batch.items()}


# What reading prepared TFRecords raises when they changed after `prepare` wrote them: a flipped
# bit or a cut (DataLossError), a removed file (NotFoundError), an emptied one (TFDS's count check,
# FailedPreconditionError).
_DAMAGED = (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.FailedPreconditionError)


def _tf_detail(e: tf.errors.OpError) -> str:
  """TensorFlow's message without its function-node prefix and op suffix."""
  text = re.sub(r'^\{\{[^}]*\}\}\s*', '', e.message)
  return ' '.join(re.sub(r'\s*\[Op:[^\]]*\].*$', '', text, flags=re.S).split())


def numpy_batches(ds: tf.data.Dataset, data_dir: str, dataset: str, image_size: int,
                  split: str) -> Iterator[dict[str, np.ndarray]]:
  """`ds`'s batches as NumPy arrays (a pipeline of this module over that prepared split).

  Raises:
    common.DatasetError: the prepared files cannot be read; names their folder and, when they were
      damaged after `prepare`, the commands that make them again (not a TensorFlow traceback).
  """
  it = ds.as_numpy_iterator()
  while True:
    try:
      batch = next(it)
    except StopIteration:
      return
    except tf.errors.PermissionDeniedError as e:
      raise common.DatasetError(f'cannot read the prepared {dataset} {split} split in {data_dir}: '
                                f'{_tf_detail(e)}.') from e
    except _DAMAGED as e:
      raise builders.damaged_error(data_dir, dataset, image_size, _tf_detail(e), split) from e
    yield as_numpy(batch)
