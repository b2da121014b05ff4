"""What training reads, by dataset: train batches, validation layouts, epochs, the vocabulary.

The train loop asks these functions and never tests the dataset's name itself: 'synthetic' draws
random batches (`synthetic.py`), 'shapes' is generated and prepared on first use, and every prepared
dataset goes through the tf.data pipeline (`input_pipeline.py`).
"""
from collections.abc import Iterator, Mapping
import os
import time
from typing import Any

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from lama_jax import files
from lama_jax.datasets import builders
from lama_jax.datasets import common
from lama_jax.datasets import input_pipeline
from lama_jax.datasets import preparation
from lama_jax.datasets import shapes
from lama_jax.datasets import synthetic
from lama_jax.datasets import vocabulary as vocabulary_lib

SYNTHETIC = 'synthetic'
_VAL_SEED = 12345  # the synthetic "validation" layouts


def vocabulary_name(data: Mapping[str, Any]) -> str:
  """The vocabulary of `config.data`: its `vocabulary` field, else the dataset's own."""
  if data['vocabulary']:
    return data['vocabulary']
  if data['dataset'] == SYNTHETIC:
    return 'shapes'
  return vocabulary_lib.dataset_vocabulary_name(data['dataset'], data['data_dir'])


def load_vocabulary(data: Mapping[str, Any], num_classes: int) -> vocabulary_lib.Vocabulary:
  """The vocabulary of `config.data`; numbered names (with a warning) when its file is missing or
  its size is not the model's `num_classes`."""
  try:
    vocab = vocabulary_lib.load_vocabulary(vocabulary_name(data))
  except (FileNotFoundError, ValueError) as e:
    logging.warning('Categories named by their ids: %s', e)
    return vocabulary_lib.Vocabulary.numbered(data['dataset'], num_classes)
  if vocab.num_classes != num_classes:
    logging.warning('Categories named by their ids: the %s vocabulary has %d classes, the model %d.',
                    vocab.dataset, vocab.num_classes, num_classes)
    return vocabulary_lib.Vocabulary.numbered(data['dataset'], num_classes)
  return vocab


def ensure_prepared(data: Mapping[str, Any], image_size: int) -> None:
  """Generates the shapes set and prepares it at `image_size` on first use; other datasets are
  prepared by the user."""
  if data['dataset'] != 'shapes':
    return
  if image_size not in builders.prepared_sizes(data['data_dir'], 'shapes'):
    _prepare_shapes(data, image_size)
  _warn_other_shapes_size(data, image_size)


def _prepare_shapes(data: Mapping[str, Any], image_size: int) -> None:
  start = time.time()
  if jax.process_index() == 0:
    # Named as the user set it, not as `prepare`'s --data_dir.
    files.check_folder_target(data['data_dir'], '--config.data.data_dir')
    manual = data['shapes']['manual_dir']
    if not (os.path.isdir(manual) and os.listdir(manual)):
      # A file there (or above) is named with its field, not as 'File exists' from makedirs.
      files.check_folder_target(manual, '--config.data.shapes.manual_dir')
      logging.info('Generating the shapes set in %s.', manual)
      shapes.generate(manual, data['shapes']['num_train'], data['shapes']['num_val'], seed=0)
    preparation.prepare('shapes', manual, data['data_dir'], image_sizes=(image_size,))
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('shapes_prepared')
  logging.info('Shapes set ready in %.1f s.', time.time() - start)


def _warn_other_shapes_size(data: Mapping[str, Any], image_size: int) -> None:
  """Says when the shapes set found prepared is not the size the config asks: a set generated
  earlier is used as it is, so a changed num_train or num_val alone changes nothing."""
  held = {split: input_pipeline.num_examples(data['data_dir'], 'shapes', split, image_size)
          for split in ('train', 'val')}
  asked = {split: data['shapes'][f'num_{split}'] for split in held}
  if held != asked:
    logging.warning(
        'The shapes set in %s holds %d train and %d val images, not the %d and %d of '
        'config.data.shapes.num_train and num_val: it was generated earlier and is used as it is '
        '(remove %s and %s to generate it anew).', data['data_dir'], held['train'], held['val'],
        asked['train'], asked['val'], data['shapes']['manual_dir'],
        os.path.join(data['data_dir'], 'shapes'))


def steps_per_epoch(data: Mapping[str, Any], global_batch_size: int, image_size: int) -> int:
  """Training steps per epoch of `data` at `image_size` (a fixed count for synthetic batches).

  Raises:
    common.DatasetError: the train split holds less than one batch. The schedule counts in epochs:
      with no step per epoch every learning-rate milestone would fall on step 0 and
      `num_train_steps=-1` would train for no step at all.
  """
  if data['dataset'] == SYNTHETIC:
    return synthetic.STEPS_PER_EPOCH
  steps = input_pipeline.steps_per_epoch(data['data_dir'], data['dataset'], global_batch_size,
                                         data['flip'], image_size)
  if steps == 0:
    images = input_pipeline.num_examples(data['data_dir'], data['dataset'], 'train', image_size)
    flipped = f' ({2 * images} with the official flip)' if data['flip'] == 'official' else ''
    processes = f', split over {jax.process_count()} processes' if jax.process_count() > 1 else ''
    raise common.DatasetError(
        f'--config.batch_size={global_batch_size}: more than the {data["dataset"]} train split in '
        f'{data["data_dir"]} holds: {images} images{flipped}{processes}, so an epoch would have no '
        'step; lower the batch size or train on more images')
  return steps


def train_batches(data: Mapping[str, Any], image_size: int, num_classes: int,
                  global_batch_size: int, seed: int, with_masks: bool = False
                  ) -> Iterator[dict[str, np.ndarray]]:
  """This process's share of every global batch, endlessly, in a fixed order for `seed`."""
  if data['dataset'] == SYNTHETIC:
    return synthetic.synthetic_batches(image_size, data['max_objects'], num_classes,
                                       global_batch_size // jax.process_count(), seed, with_masks)
  ds = input_pipeline.create_train_dataset(
      data['data_dir'], data['dataset'], image_size, global_batch_size, data['max_objects'],
      flip=data['flip'], seed=seed % (2**31), shuffle_buffer=data['shuffle_buffer'],
      with_masks=with_masks)
  return input_pipeline.numpy_batches(ds, data['data_dir'], data['dataset'], image_size, 'train')


def val_layouts(data: Mapping[str, Any], image_size: int, num_classes: int, count: int,
                with_masks: bool = False) -> dict[str, np.ndarray]:
  """The first `count` validation examples (fixed order): image, boxes, labels[, masks]."""
  keys = ('image', 'boxes', 'labels') + (('masks',) if with_masks else ())
  if data['dataset'] == SYNTHETIC:
    batch = next(synthetic.synthetic_batches(image_size, data['max_objects'], num_classes, count,
                                             _VAL_SEED, with_masks))
    return {k: batch[k] for k in keys}
  ds = input_pipeline.create_eval_dataset(data['data_dir'], data['dataset'], image_size,
                                          min(count, 64), data['max_objects'],
                                          with_masks=with_masks)
  parts = []
  for batch in input_pipeline.numpy_batches(ds, data['data_dir'], data['dataset'], image_size,
                                            'val'):
    parts.append(batch)
    if sum(len(p['labels']) for p in parts) >= count:
      break
  return {k: np.concatenate([p[k] for p in parts])[:count] for k in keys}
