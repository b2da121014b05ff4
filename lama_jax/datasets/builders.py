"""Imports the TFDS builders so that `tfds.builder(NAME, data_dir=...)` finds them.

NAME is 'coco_stuff', 'visual_genome' or 'shapes'; each has one config per stored image size
('coco_stuff/128px', in DATA_DIR/coco_stuff/128px/VERSION/); `make` returns the builder of one size,
`prepared_sizes` what a data dir holds, `not_prepared_message` how to prepare what is missing.
"""
# pylint: disable=unused-import
import tensorflow as tf
import tensorflow_datasets as tfds

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
  return BUILDERS[dataset](data_dir=data_dir, config=config.name if named else config)


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


def not_prepared_message(data_dir: str, dataset: str, image_size: int | None) -> str:
  """What `data_dir` holds of `dataset` instead of `image_size`, and the command to prepare it."""
  want = str(image_size) if image_size else ','.join(map(str, common.STANDARD_SIZES))
  run = (f'python -m lama_jax.prepare --dataset {dataset} --image_sizes {want} --manual_dir DIR '
         f'--data_dir {data_dir}')
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
