"""Dataset files to TFRecords through the TFDS builders (the library behind `prepare`)."""
from collections.abc import Sequence
import contextlib
import os
import sys

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


def prepare(dataset: str, manual_dir: str, data_dir: str,
            image_sizes: Sequence[int] = common.STANDARD_SIZES) -> dict[str, dict]:
  """Builds the TFRecords of one dataset, one copy per image size.

  Args:
    dataset: 'coco_stuff', 'visual_genome' or 'shapes'.
    manual_dir: the folder with the dataset's files (see each builder's docstring).
    data_dir: the TFDS data dir to write into; the result is `data_dir/DATASET/{S}px/VERSION`.
    image_sizes: the sizes S to store the images at (the resolutions you will train or evaluate
      at); sizes already prepared are kept as they are.

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
  if not image_sizes or any(s < 1 for s in image_sizes):
    raise common.DatasetError(f'image sizes must be positive, got {list(image_sizes)}.')
  if any(s > common.MAX_SIZE for s in image_sizes):
    raise common.DatasetError(f'image sizes must be at most {common.MAX_SIZE}, got '
                              f'{list(image_sizes)}.')
  files.check_folder_target(data_dir, '--data_dir')
  config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
  # TFDS removes its own temporary folder on failure; these remove the folders around it that a
  # failed or interrupted first preparation would leave empty, but keep the sizes it finished.
  def finished_a_size() -> bool:
    return bool(builders.prepared_sizes(data_dir, dataset))
  with contextlib.ExitStack() as stack:
    for folder in (data_dir, os.path.join(data_dir, dataset)):
      stack.enter_context(files.output_dir(folder, keep=finished_a_size))
    stack.enter_context(files.output_dir(os.path.join(data_dir, 'downloads')))
    # TFDS prints its progress lines to stdout, where `prepare` prints only the JSON lines.
    stack.enter_context(contextlib.redirect_stdout(sys.stderr))
    for size in sorted(set(image_sizes)):
      builder = builders.make(dataset, data_dir, size)
      # DATASET/{S}px too: a size interrupted after an earlier one succeeded left it empty.
      with files.output_dir(os.path.dirname(builder.data_dir)):
        builder.download_and_prepare(download_config=config)
  # Reload from disk: what is reported is what was written.
  builder = builders.make(dataset, data_dir, image_sizes[0])
  if dataset == 'visual_genome':
    vocab = vocabulary_lib.Vocabulary.from_json(builder.info.metadata['vocabulary'])
    vocabulary_lib.save_vocabulary(vocab, os.path.join(data_dir, dataset, 'vocab.json'))
  summaries = _summaries(builder)
  logging.info('Prepared %s at %s in %s: %s', dataset, sorted(set(image_sizes)), data_dir,
               summaries)
  return summaries
