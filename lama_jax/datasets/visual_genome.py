"""Visual Genome, the sg2im split and vocabulary, as a TFDS builder.

We read the official preprocessed files (what LAMA's `data/vg.py` reads), not the raw VG JSON: the
split, the 179-class vocabulary and the object filtering then match the official ones by construction.
Make them with the official `scripts/download_vg.sh` and `scripts/preprocess_vg.py` (sg2im's).

Manual folder layout (MANUAL_DIR, the official `datasets/vg`):
  train.h5, val.h5   sg2im HDF5: image_ids, image_paths, object_names, object_boxes (pixels x, y, w, h),
                     objects_per_image, relationships_per_image, relationship_{subjects,objects}
  vocab.json         sg2im vocabulary; object_idx_to_name[0] == '__image__'
  images/            the VG images, addressed by image_paths (e.g. VG_100K/2345678.jpg)

Objects per image follow the official loader's count rule, deterministically: objects that take part
in a relationship come first (up to 10); when fewer than 10, orphan objects fill up to 9 in all. The
official loader picks these at random each epoch and appends an `__image__` object; we pick the first
ones in file order and add no `__image__` object (label 0 is padding in our batches anyway).
VG has no segmentations: every object's stored 'masks' entry is a full box (all ones).
"""
import dataclasses
import json
import math
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from lama_jax.datasets import vocabulary as vocabulary_lib
from lama_jax.datasets import common

MAX_OBJECTS = 10  # the official loader's max_objects for VG
SPLITS = ('train', 'val')
_H5_KEYS = ('image_ids', 'image_paths', 'object_names', 'object_boxes', 'objects_per_image',
            'relationships_per_image', 'relationship_subjects', 'relationship_objects')
_WHOLE_NUMBER_KEYS = ('image_ids', 'object_names', 'objects_per_image', 'relationships_per_image',
                      'relationship_subjects', 'relationship_objects')


@dataclasses.dataclass
class SplitStats:
  images: int = 0
  objects: int = 0
  skipped_degenerate_boxes: int = 0
  skipped_images_without_objects: int = 0  # every object had an empty box (not in sg2im's files)


def load_vocabulary(manual_dir: str) -> vocabulary_lib.Vocabulary:
  """Reads sg2im's vocab.json into our vocabulary format."""
  path = os.path.join(manual_dir, 'vocab.json')
  if not os.path.isfile(path):
    raise common.DatasetError(f'Missing {path} (the sg2im vocabulary from preprocess_vg.py).')
  try:
    with open(path) as f:
      names = json.load(f)['object_idx_to_name']
    if not isinstance(names, list):
      raise TypeError(f'object_idx_to_name is a {type(names).__name__}, not a list of names')
    # Vocabulary raises ValueError when names[0] is not '__image__'.
    return vocabulary_lib.Vocabulary(dataset='visual_genome', num_classes=len(names),
                                     id_to_name={i: str(n) for i, n in enumerate(names)})
  except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
    raise common.DatasetError(f'{path} is not an sg2im vocab.json (object_idx_to_name): {e!r}') from e


def _chosen_objects(data: dict, i: int) -> list[int]:
  """Indices of image i's objects, by the official count rule (see the module docstring)."""
  num_objects = int(data['objects_per_image'][i])
  if not 0 <= num_objects <= data['object_names'].shape[1]:
    raise IndexError(f'objects_per_image is {num_objects}, outside 0..'
                     f'{data["object_names"].shape[1]} (the columns of object_names)')
  with_rels = set()
  for r in range(int(data['relationships_per_image'][i])):
    with_rels.update((int(data['relationship_subjects'][i, r]),
                      int(data['relationship_objects'][i, r])))
  with_rels = sorted(with_rels)
  bad = [j for j in with_rels if not 0 <= j < num_objects]
  if bad:  # a negative index would silently pick an object from the end of the row
    raise IndexError(f'relationships name objects {bad}, but it has {num_objects} '
                     '(objects_per_image)')
  if len(with_rels) > MAX_OBJECTS - 1:
    return with_rels[:MAX_OBJECTS]
  orphans = [j for j in range(num_objects) if j not in set(with_rels)]
  return with_rels + orphans[:MAX_OBJECTS - 1 - len(with_rels)]


def _check_shapes(data: dict, path: str) -> None:
  """Raises DatasetError unless the sg2im arrays have the shapes `select_images` indexes them
  with, whole numbers where it takes indices, ids and labels, and the image ids unique int64s
  (they are the TFDS keys)."""
  n = np.shape(data['image_ids'])[:1]
  names = np.shape(data['object_names'])
  rels = np.shape(data['relationship_subjects'])
  if not (len(n) == 1 and all(np.shape(data[k])[:1] == n for k in _H5_KEYS)
          and len(names) == 2 and np.shape(data['object_boxes']) == (*names, 4)
          and len(rels) == 2 and np.shape(data['relationship_objects']) == rels):
    shapes = ', '.join(f'{k} {list(np.shape(data[k]))}' for k in _H5_KEYS)
    raise common.DatasetError(
        f'{path}: the sg2im datasets do not fit together ({shapes}); expected image_ids, '
        'image_paths, objects_per_image, relationships_per_image [N], object_names [N, O], '
        'object_boxes [N, O, 4], relationship_subjects and relationship_objects [N, R].')
  not_whole = [k for k in _WHOLE_NUMBER_KEYS if not np.issubdtype(data[k].dtype, np.integer)]
  if not_whole:  # int() would silently truncate 2.5, or fail on b'x' with a traceback
    raise common.DatasetError(f'{path}: {", ".join(not_whole)} must hold whole numbers, not '
                              f'{", ".join(str(data[k].dtype) for k in not_whole)}.')
  ids = data['image_ids']
  if ids.size and not common.INT64_MIN <= ids.min() <= ids.max() <= common.INT64_MAX:
    raise common.DatasetError(f'{path}: image ids must fit in 64 bits (they are stored as int64), '
                              f'got {ids.max()}.')
  ids, counts = np.unique(ids, return_counts=True)
  if (counts > 1).any():
    raise common.DatasetError(f'{path}: image ids {ids[counts > 1][:5].tolist()} appear more than '
                              'once.')


def select_images(manual_dir: str, split: str) -> tuple[list[common.ImageRecord], SplitStats]:
  """Reads one split of the sg2im HDF5 files into image records."""
  import h5py  # pylint: disable=g-import-not-at-top  (only Visual Genome needs it)
  path = os.path.join(manual_dir, f'{split}.h5')
  if not os.path.isfile(path):
    raise common.DatasetError(f'Missing {path} (the sg2im split file from preprocess_vg.py).')
  try:
    with h5py.File(path, 'r') as f:
      missing = [k for k in _H5_KEYS if not isinstance(f.get(k), h5py.Dataset)]
      if missing:
        raise common.DatasetError(f'{path} lacks the sg2im datasets {missing}.')
      data = {k: f[k][()] for k in _H5_KEYS}
  except OSError as e:
    raise common.DatasetError(f'Cannot read {path} as HDF5: {e}') from e
  _check_shapes(data, path)
  stats = SplitStats()
  records = []
  for i, image_id in enumerate(data['image_ids']):
    image_path = data['image_paths'][i]
    try:
      image_path = image_path.decode() if isinstance(image_path, bytes) else str(image_path)
    except UnicodeDecodeError as e:
      raise common.DatasetError(f'{path}: image id {image_id} has an image path that is not '
                                f'UTF-8: {bytes(image_path)!r}.') from e
    boxes, labels = [], []
    try:
      chosen = _chosen_objects(data, i)
    except IndexError as e:
      raise common.DatasetError(f'{path}: image id {image_id}: {e}.') from e
    for j in chosen:
      x, y, w, h = (float(v) for v in data['object_boxes'][i, j])
      if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise common.DatasetError(f'{path}: image id {image_id} object {j} has a non-finite box '
                                  f'{[x, y, w, h]}.')
      if w <= 0 or h <= 0:
        stats.skipped_degenerate_boxes += 1
        logging.warning('%s: image id %d object %d has an empty box; skipped.', path, image_id, j)
        continue
      boxes.append((x, y, w, h))
      labels.append(int(data['object_names'][i, j]))
    if not labels:  # nothing to lay out: it would train the generator on an empty layout
      stats.skipped_images_without_objects += 1
      logging.warning('%s: image id %d has no object with a box; skipped.', path, image_id)
      continue
    records.append(common.ImageRecord(
        image_id=int(image_id), path=os.path.join(manual_dir, 'images', image_path),
        pixel_boxes=np.array(boxes, np.float64).reshape(-1, 4), labels=np.array(labels, np.int64)))
    stats.images += 1
    stats.objects += len(labels)
  return records, stats


class VisualGenome(tfds.core.GeneratorBasedBuilder):
  """Visual Genome, sg2im split: 62,565 train and 5,062 val images, <= 10 objects, 179 classes."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'sg2im h5 split and vocabulary; boxes (x, y, w, h).',
      '1.1.0': "Adds 'masks' uint8 [N, 32, 32]: all ones (full boxes; VG has no segmentation).",
      '2.0.0': common.RESIZED_NOTE,
  }
  BUILDER_CONFIGS = [common.size_config(s) for s in common.STANDARD_SIZES]
  DEFAULT_BUILDER_CONFIG_NAME = common.size_config(common.DEFAULT_SIZE).name
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Point --manual_dir at the official `datasets/vg` folder after `scripts/download_vg.sh` and
  `scripts/preprocess_vg.py`: train.h5, val.h5, vocab.json and images/.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=common.features(self.builder_config.image_size), disable_shuffling=False,
        metadata=tfds.core.MetadataDict(),
        homepage='https://visualgenome.org', description=self.__doc__)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    vocab = load_vocabulary(manual_dir)
    self.info.metadata['vocabulary'] = vocab.to_json()
    generators = {}
    for split in SPLITS:
      records, stats = select_images(manual_dir, split)
      what = f'{self.name} {split}'
      common.check_labels(records, vocab, what)
      common.check_files_exist(records, what)
      if not records:  # TFDS would fail writing the split, with a traceback
        left = (f' with objects ({stats.skipped_images_without_objects} without any box skipped)'
                if stats.skipped_images_without_objects else '')
        raise common.DatasetError(f'{what}: {split}.h5 in {manual_dir} lists no images{left}.')
      self.info.metadata[split] = dataclasses.asdict(stats)
      generators[split] = self._generate_examples(records)
    return generators

  def _generate_examples(self, records: list[common.ImageRecord]):
    for record in records:
      yield record.image_id, common.to_example(record, self.builder_config.image_size)
