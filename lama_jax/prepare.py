r"""Turns dataset files into TFRecords through the TFDS builders in `lama_jax/datasets/`.

Usage:
  python -m lama_jax.prepare --dataset coco_stuff --manual_dir /path/to/coco --data_dir data/tfds
  python -m lama_jax.prepare --dataset visual_genome --manual_dir /path/to/datasets/vg --data_dir ...
  python -m lama_jax.prepare --dataset shapes --manual_dir data/shapes --data_dir data/tfds

Nothing is downloaded. Each finished split prints one JSON line to stdout:
  {"split": "train", "images": N, "objects": M, "skipped_degenerate_boxes": K}
TFDS writes into a temporary folder and renames it when every split is done, so an interrupted run
leaves no half-written dataset; a finished one is reused, not rebuilt.
"""
from collections.abc import Sequence
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

from lama_jax import vocabulary as vocabulary_lib
from lama_jax.datasets import builders
from lama_jax.datasets import common

tf.config.set_visible_devices([], 'GPU')


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
    data_dir: the TFDS data dir to write into; the result is `data_dir/DATASET/VERSION` (the builder's version).

  Returns:
    Split name -> {'split', 'images', 'objects', 'skipped_degenerate_boxes'}.

  Raises:
    common.DatasetError: missing or bad input files; the message names them.
  """
  if dataset not in builders.BUILDERS:
    raise common.DatasetError(f'Unknown dataset {dataset!r}; choose from {sorted(builders.BUILDERS)}.')
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


FLAGS = flags.FLAGS


def _define_flags() -> None:
  flags.DEFINE_enum('dataset', None, sorted(builders.BUILDERS), 'Which dataset to prepare.')
  flags.DEFINE_string('manual_dir', None, 'Folder with the dataset files (COCO-Stuff 2017 layout '
                      'for coco_stuff and shapes; train.h5, val.h5, vocab.json, images/ for '
                      'visual_genome).')
  flags.DEFINE_string('data_dir', 'data/tfds', 'Where the TFRecords go (a TFDS data dir).')
  flags.mark_flags_as_required(['dataset', 'manual_dir'])


def _run(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    summaries = prepare(FLAGS.dataset, FLAGS.manual_dir, FLAGS.data_dir)
  except common.DatasetError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)
  for summary in summaries.values():
    print(json.dumps(summary), flush=True)


def main() -> None:
  _define_flags()
  app.run(_run)


if __name__ == '__main__':
  main()
