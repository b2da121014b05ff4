"""Imports the TFDS builders so that `tfds.builder(NAME, data_dir=...)` finds them.

NAME is 'coco_stuff', 'visual_genome' or 'shapes'; each has one config per stored image size
('coco_stuff/128px', in DATA_DIR/coco_stuff/128px/VERSION/); `make` returns the builder of one size,
`prepared_sizes` what a data dir holds, `not_prepared_message` how to prepare what is missing,
`damaged_error` what to do when prepared files changed since.
"""
# pylint: disable=unused-import
from google.protobuf import json_format
import tensorflow as tf
import tensorflow_datasets as tfds

from lama_jax.cli import one_line
from lama_jax.datasets import common
from lama_jax.datasets.coco_stuff import CocoStuff
from lama_jax.datasets.coco_stuff import Shapes
from lama_jax.datasets.visual_genome import VisualGenome

BUILDERS = {'coco_stuff': CocoStuff, 'visual_genome': VisualGenome, 'shapes': Shapes}


def make(dataset: str, data_dir: str, image_size: int) -> tfds.core.DatasetBuilder:
  """The builder of `dataset` whose images are stored at `image_size` (any positive size)."""
  if dataset not in BUILDERS:
    raise common.DatasetError(f'Unknown dataset {dataset!r}; choose from {sorted(BUILDERS)}.')
  if image_size < 1:
    raise common.DatasetError(f'image size must be positive, got {image_size}.')
  config = common.size_config(image_size)
  named = config.name in BUILDERS[dataset].builder_configs
  try:
    return BUILDERS[dataset](data_dir=data_dir, config=config.name if named else config)
  except json_format.ParseError as e:  # TFDS reads the prepared dataset_info.json here
    raise damaged_error(data_dir, dataset, image_size,
                        f'dataset_info.json: {one_line(e)}') from e


def damaged_error(data_dir: str, dataset: str, image_size: int, detail: str,
                  split: str = '') -> common.DatasetError:
  """The error for prepared files of `dataset` at `image_size` that changed after `prepare` wrote
  them: names their folder and the commands that make them again."""
  folder = tf.io.gfile.join(data_dir, dataset, f'{image_size}px', str(BUILDERS[dataset].VERSION))
  what = f'the prepared {dataset} {split} split' if split else f'the prepared {dataset}'
  return common.DatasetError(
      f'{folder}: cannot read {what} ({detail.rstrip(".")}); its files changed after prepare '
      'wrote them. '
      f'Prepare that size again: delete {tf.io.gfile.join(data_dir, dataset, f"{image_size}px")} '
      f'and run {prepare_command(data_dir, dataset, image_size)}')


def _info_dirs(data_dir: str, dataset: str) -> list[tuple[str, str]]:
  """(config folder or '', version) of every prepared copy of `dataset` in `data_dir`."""
  root = tf.io.gfile.join(data_dir, dataset)
  if not tf.io.gfile.isdir(root):
    return []
  found = []
  for name in (n.rstrip('/') for n in tf.io.gfile.listdir(root)):
    path = tf.io.gfile.join(root, name)
    if tf.io.gfile.exists(tf.io.gfile.join(path, 'dataset_info.json')):
      found.append(('', name))  # before 2.0.0: no configs, DATASET/VERSION/
    elif tf.io.gfile.isdir(path):
      found += [(name, v.rstrip('/')) for v in tf.io.gfile.listdir(path)
                if tf.io.gfile.exists(tf.io.gfile.join(path, v.rstrip('/'), 'dataset_info.json'))]
  return found


def prepared_sizes(data_dir: str, dataset: str) -> list[int]:
  """The image sizes at which `dataset` is prepared (current version) in `data_dir`, ascending."""
  version = str(BUILDERS[dataset].VERSION)
  return sorted(int(config[:-2]) for config, v in _info_dirs(data_dir, dataset)
                if v == version and config.endswith('px') and config[:-2].isdigit())


def prepare_command(data_dir: str, dataset: str, image_size: int | None) -> str:
  """The `prepare` command line that makes `dataset` at `image_size` (None: the standard sizes)."""
  want = str(image_size) if image_size else ','.join(map(str, common.STANDARD_SIZES))
  return (f'python -m lama_jax.prepare --dataset {dataset} --image_sizes {want} --manual_dir DIR '
          f'--data_dir {data_dir}')


def not_prepared_message(data_dir: str, dataset: str, image_size: int | None) -> str:
  """What `data_dir` holds of `dataset` instead of `image_size`, and the command to prepare it."""
  run = prepare_command(data_dir, dataset, image_size)
  version = str(BUILDERS[dataset].VERSION)
  sizes = prepared_sizes(data_dir, dataset)
  if sizes:
    held = ', '.join(f'{s}x{s}' for s in sizes)
    return (f'{data_dir} holds {dataset} prepared at {held}, not at {image_size}x{image_size}. '
            f'Run: {run}')
  older = sorted({v for _, v in _info_dirs(data_dir, dataset) if v != version})
  if older:
    return (f'{data_dir} holds {dataset} version(s) {older}, not the current {version}, which '
            f'stores the images already resized, one copy per image size (training no longer '
            f'decodes and resizes the originals at every read). Re-run: {run}')
  config = f'{image_size or common.DEFAULT_SIZE}px'
  where = tf.io.gfile.join(data_dir, dataset, config, version)
  return f'No prepared {dataset} in {data_dir} (looked for {where}). Run: {run}'
