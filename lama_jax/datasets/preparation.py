"""Dataset files to TFRecords through the TFDS builders (the library behind `prepare`)."""
import contextlib
import os

from absl import logging
import tensorflow_datasets as tfds

from lama_jax import files
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
    # What else the filters counted (e.g. COCO's clipped_boxes, masks_wrong_size).
    out[split].update({k: int(v) for k, v in stats.items() if k not in out[split]
                       and k != 'images' and isinstance(v, int)})
  return out


def prepare(dataset: str, manual_dir: str, data_dir: str) -> dict[str, dict]:
  """Builds the TFRecords of one dataset.

  Args:
    dataset: 'coco_stuff', 'visual_genome' or 'shapes'.
    manual_dir: the folder with the dataset's files (see each builder's docstring).
    data_dir: the TFDS data dir to write into; the result is `data_dir/DATASET/VERSION`.

  Returns:
    Split name -> {'split', 'images', 'objects', 'skipped_degenerate_boxes', and whatever else
    the builder's filters counted (COCO-Stuff: clipped_boxes, masks_wrong_size, ...)}.

  Raises:
    common.DatasetError: missing or bad input files; the message names them.
  """
  if dataset not in builders.BUILDERS:
    raise common.DatasetError(f'Unknown dataset {dataset!r}; choose from '
                              f'{sorted(builders.BUILDERS)}.')
  if not os.path.isdir(manual_dir):
    raise common.DatasetError(f'--manual_dir {manual_dir} is not a folder.')
  if not os.listdir(manual_dir):
    raise common.DatasetError(f'--manual_dir {manual_dir} is empty. ' + ' '.join(
        builders.BUILDERS[dataset].MANUAL_DOWNLOAD_INSTRUCTIONS.split()))
  files.check_folder_target(data_dir, '--data_dir')
  # TFDS removes its own temporary folder on failure; these remove the folders around it that a
  # failed or interrupted first preparation would leave empty.
  with contextlib.ExitStack() as stack:
    for folder in (data_dir, os.path.join(data_dir, dataset), os.path.join(data_dir, 'downloads')):
      stack.enter_context(files.output_dir(folder))
    builder = builders.BUILDERS[dataset](data_dir=data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, try_download_gcs=False))
  # Reload from disk: what is reported is what was written.
  builder = builders.BUILDERS[dataset](data_dir=data_dir)
  if dataset == 'visual_genome':
    vocab = vocabulary_lib.Vocabulary.from_json(builder.info.metadata['vocabulary'])
    vocabulary_lib.save_vocabulary(vocab, os.path.join(data_dir, dataset, 'vocab.json'))
  summaries = _summaries(builder)
  logging.info('Prepared %s in %s: %s', dataset, builder.data_dir, summaries)
  return summaries
