"""Dataset files to TFRecords through the TFDS builders (the library behind `prepare`)."""
import os

from absl import logging
import tensorflow_datasets as tfds

from lama_jax.datasets import builders
from lama_jax.datasets import common
from lama_jax.datasets import vocabulary as vocabulary_lib


def _summaries(builder: tfds.core.DatasetBuilder) -> dict[str, dict]:
  out = {}
  for split, info in builder.info.splits.items():
    stats = builder.info.metadata.get(split, {}) if builder.info.metadata else {}
    out[split] = {'split': split, 'images': int(info.num_examples),
                  'objects': int(stats.get('objects', -1)),
                  'skipped_degenerate_boxes': int(stats.get('skipped_degenerate_boxes', 0))}
  return out


def prepare(dataset: str, manual_dir: str, data_dir: str) -> dict[str, dict]:
  """Builds the TFRecords of one dataset.

  Args:
    dataset: 'coco_stuff', 'visual_genome' or 'shapes'.
    manual_dir: the folder with the dataset's files (see each builder's docstring).
    data_dir: the TFDS data dir to write into; the result is `data_dir/DATASET/VERSION`.

  Returns:
    Split name -> {'split', 'images', 'objects', 'skipped_degenerate_boxes'}.

  Raises:
    common.DatasetError: missing or bad input files; the message names them.
  """
  if dataset not in builders.BUILDERS:
    raise common.DatasetError(f'Unknown dataset {dataset!r}; choose from '
                              f'{sorted(builders.BUILDERS)}.')
  if not os.path.isdir(manual_dir):
    raise common.DatasetError(f'--manual_dir {manual_dir} is not a folder.')
  builder = builders.BUILDERS[dataset](data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False))
  # Reload from disk: what is reported is what was written.
  builder = builders.BUILDERS[dataset](data_dir=data_dir)
  if dataset == 'visual_genome':
    vocab = vocabulary_lib.Vocabulary.from_json(builder.info.metadata['vocabulary'])
    vocabulary_lib.save_vocabulary(vocab, os.path.join(data_dir, dataset, 'vocab.json'))
  summaries = _summaries(builder)
  logging.info('Prepared %s in %s: %s', dataset, builder.data_dir, summaries)
  return summaries
