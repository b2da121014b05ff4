"""COCO-Stuff 2017 (and the synthetic shapes set, which uses its layout) as TFDS builders.

The official loader's rules (LAMA `data/cocostuff_loader.py`, from sg2im), applied exactly:
  * only images that have at least one stuff annotation (of any kind) are kept;
  * an object is kept when its box covers strictly more than 2% of the image (w*h / (W*H) > 0.02),
    it is not crowd, and its category is not `other` (id 183);
  * images with 3 to 8 kept objects are kept; objects are ordered instances first, then stuff, each in
    annotation-file order; labels are the raw COCO category ids.
Beyond the official rules (none of which fires on COCO-Stuff 2017 itself): a box reaching more than
one pixel outside its image is clipped to it before the size rule (skipped when nothing of it is
inside), and an RLE mask whose size is not its image's, or a polygon reaching more than an image
size outside it, is stored as a full box; `prepare` reports these counts (clipped_boxes,
skipped_boxes_outside, masks_wrong_size, masks_outside_image) with the split. A segmentation that
cannot be decoded (a non-finite polygon point, RLE counts that do not cover its size) is an error.
TFDS stores the images in a fixed order (shuffled once by key hash, deterministically). Boxes are
normalised by the image size, which must match the size the annotations state. Each object's
segmentation (polygons or RLE; stuff annotations are RLE) is stored as a 32×32 box-local mask
(`common` describes the format); an object with an empty segmentation gets a full box. Images are
stored resized, one builder config per size ('64px', '128px', '256px', ...; `common.SizeConfig`).

Manual folder layout (MANUAL_DIR):
  annotations/instances_{train,val}2017.json, annotations/stuff_{train,val}2017.json,
  train2017/*.jpg, val2017/*.jpg
"""
import collections
import dataclasses
import json
import math
import os

from absl import logging
import numpy as np
import tensorflow_datasets as tfds

from lama_jax import number_checks
from lama_jax.datasets import segmentation_checks
from lama_jax.datasets import vocabulary as vocabulary_lib
from lama_jax.datasets import common

MIN_OBJECT_SIZE = 0.02  # a kept box covers strictly more than this fraction of the image
MIN_OBJECTS, MAX_OBJECTS = 3, 8  # kept images have this many kept objects, inclusive
OTHER_NAME = 'other'  # COCO-Stuff id 183, dropped like the official loader does
# Boxes overhanging their image by at most this (pixels) are kept as they are, as the official
# loader keeps them: COCO's own overhangs are sub-pixel (rounding), so its result is unchanged.
OVERHANG_TOLERANCE = 1.0
SPLITS = ('train', 'val')


@dataclasses.dataclass
class SplitStats:
  """What the filters did to one split (written to the dataset's metadata)."""
  images: int = 0  # kept images
  objects: int = 0  # objects in kept images
  skipped_degenerate_boxes: int = 0  # annotations with w <= 0 or h <= 0, skipped
  images_without_stuff: int = 0
  images_too_few_objects: int = 0
  images_too_many_objects: int = 0
  objects_without_segmentation: int = 0  # kept objects stored with a full-box mask
  clipped_boxes: int = 0  # boxes reaching > OVERHANG_TOLERANCE px outside their image, clipped
  skipped_boxes_outside: int = 0  # boxes with nothing inside their image, skipped
  masks_wrong_size: int = 0  # RLE masks whose size is not their image's: stored as full boxes
  masks_outside_image: int = 0  # polygons reaching more than an image size outside: full boxes


def _load_annotations(path: str, lists: tuple[str, ...]) -> dict:
  """An annotation file's JSON object, checked to hold the `lists` the official loader reads.

  Read as UTF-8 (a byte-order mark allowed), whatever the locale; pycocotools' index of it is not
  needed.
  """
  if not os.path.isfile(path):
    raise common.DatasetError(
        f'Missing annotation file {path}. Expected the COCO-Stuff 2017 layout: '
        'annotations/{instances,stuff}_{train,val}2017.json and {train,val}2017/ image folders.')
  try:
    with open(path, encoding='utf-8-sig') as f:
      data = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise common.DatasetError(f'Annotation file {path} is not valid COCO JSON: {e!r}') from e
  if not isinstance(data, dict):
    raise common.DatasetError(f'Annotation file {path} is not valid COCO JSON: the top level is '
                              'not an object with images, annotations and categories.')
  missing = [key for key in lists if not isinstance(data.get(key), list)]
  if missing:
    raise common.DatasetError(f'Annotation file {path} is not valid COCO JSON: it has no '
                              f'{" and no ".join(missing)} list.')
  return data


def _category_names(data: dict, path: str) -> dict[int, str]:
  """Category id -> name of an annotation file."""
  names = {}
  for category in data['categories']:
    if not (isinstance(category, dict) and type(category.get('id')) is int
            and isinstance(category.get('name'), str)):
      raise common.DatasetError(f'{path}: category {category!r:.80} has no integer id and name.')
    names[category['id']] = category['name']
  return names


def _check_image(img, path: str) -> None:
  """Raises DatasetError unless `img` is a COCO image entry: an integer id, a file_name and a
  positive width and height (what the records and the TFDS keys are made of)."""
  if not isinstance(img, dict) or type(img.get('id')) is not int:
    raise common.DatasetError(f'{path}: image entry {img!r:.80} has no integer id.')
  if not common.INT64_MIN <= img['id'] <= common.INT64_MAX:  # TFDS failed deep inside on these
    raise common.DatasetError(f'{path}: image id {img["id"]} does not fit in 64 bits.')
  if not isinstance(img.get('file_name'), str) or not img['file_name']:
    raise common.DatasetError(f'{path}: image id {img["id"]} has no file_name.')
  size = img.get('width'), img.get('height')
  if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in size):
    raise common.DatasetError(f'{path}: image id {img["id"]} has no positive width/height '
                              f'(got {size[0]!r}, {size[1]!r}).')


def _box(ann: dict, path: str) -> tuple[float, float, float, float]:
  bbox = ann.get('bbox')
  # Numbers only: float() would also take the strings "5" and "nan" and JSON's true.
  if not (isinstance(bbox, list) and len(bbox) == 4 and all(number_checks.is_number(v) for v in bbox)):
    raise common.DatasetError(f'{path}: annotation id {ann.get("id")} has a malformed bbox '
                              f'{bbox!r} (need [x, y, w, h], four numbers).')
  x, y, w, h = (float(v) for v in bbox)
  if not all(math.isfinite(v) for v in (x, y, w, h)):
    raise common.DatasetError(f'{path}: annotation id {ann.get("id")} has a non-finite bbox {bbox}.')
  return x, y, w, h


def clip_box(box: tuple[float, float, float, float], width: int, height: int
             ) -> tuple[float, float, float, float] | None:
  """`box` (x, y, w, h pixels) unchanged when it overhangs its image by at most
  OVERHANG_TOLERANCE; else clipped to the image, or None when nothing of it is inside."""
  x, y, w, h = box
  t = OVERHANG_TOLERANCE
  if x >= -t and y >= -t and x + w <= width + t and y + h <= height + t:
    return box
  x0, y0 = max(x, 0.0), max(y, 0.0)
  x1, y1 = min(x + w, float(width)), min(y + h, float(height))
  if x1 <= x0 or y1 <= y0:
    return None
  return x0, y0, x1 - x0, y1 - y0


def _usable_segmentation(ann: dict, width: int, height: int, path: str, stats: SplitStats):
  """The annotation's segmentation, or None (a full-box mask, counted) for an RLE of another size
  or a polygon reaching far outside its image.

  Raises:
    DatasetError: a segmentation that cannot be decoded (`segmentation_checks.segmentation_problem`).
  """
  seg = ann.get('segmentation')
  problem = segmentation_checks.segmentation_problem(seg)
  if problem:
    raise common.DatasetError(f'{path}: annotation id {ann.get("id")} has a malformed '
                              f'segmentation: {problem}.')
  if isinstance(seg, dict) and 'size' in seg and list(seg['size']) != [height, width]:
    stats.masks_wrong_size += 1
    logging.warning('%s: annotation id %s has a %s mask on a %dx%d image; stored as a full box.',
                    path, ann.get('id'), 'x'.join(map(str, seg['size'][::-1])), width, height)
    return None
  if isinstance(seg, list) and segmentation_checks.polygons_far_outside(seg, width, height):
    stats.masks_outside_image += 1
    logging.warning('%s: annotation id %s has a polygon reaching far outside its %dx%d image; '
                    'stored as a full box.', path, ann.get('id'), width, height)
    return None
  return seg


def _kept_box(ann: dict, path: str, width: int, height: int, stats: SplitStats
              ) -> tuple[float, float, float, float] | None:
  """The annotation's box, clipped to its image (`clip_box`); None (counted) when it is empty or
  wholly outside."""
  x, y, w, h = _box(ann, path)
  if w <= 0 or h <= 0:
    stats.skipped_degenerate_boxes += 1
    logging.warning('%s: annotation id %s has an empty box %s; skipped.', path, ann.get('id'),
                    ann['bbox'])
    return None
  box = clip_box((x, y, w, h), width, height)
  if box != (x, y, w, h):
    logging.warning('%s: annotation id %s: box %s reaches outside its %dx%d image; %s.', path,
                    ann.get('id'), ann['bbox'], width, height,
                    'skipped' if box is None else 'clipped')
    if box is None:
      stats.skipped_boxes_outside += 1
    else:
      stats.clipped_boxes += 1
  return box


def select_images(manual_dir: str, split: str) -> tuple[list[common.ImageRecord], SplitStats]:
  """Applies the official COCO-Stuff rules to one split.

  Args:
    manual_dir: the COCO-Stuff 2017 folder (layout in the module docstring).
    split: 'train' or 'val'.

  Returns:
    (kept images in the instances file's order, statistics).

  Raises:
    DatasetError: a missing or malformed annotation file, an annotation pointing at an image or
      category that the files do not define.
  """
  paths = [os.path.join(manual_dir, 'annotations', f'{kind}_{split}2017.json')
           for kind in ('instances', 'stuff')]
  instances = _load_annotations(paths[0], ('images', 'annotations', 'categories'))
  stuff = _load_annotations(paths[1], ('annotations', 'categories'))
  images = {}
  for img in instances['images']:
    _check_image(img, paths[0])
    if img['id'] in images:  # the official loader would keep it twice; which file is meant?
      raise common.DatasetError(f'{paths[0]}: image id {img["id"]} is listed twice.')
    images[img['id']] = img
  names = {**_category_names(instances, paths[0]), **_category_names(stuff, paths[1])}

  stats = SplitStats()
  objects = collections.defaultdict(list)  # image id -> [(box, label)]
  with_stuff = set()
  for coco, path in ((instances, paths[0]), (stuff, paths[1])):
    for ann in coco['annotations']:
      if not isinstance(ann, dict):
        raise common.DatasetError(f'{path}: annotation {ann!r:.80} is not an object.')
      image_id, category = ann.get('image_id'), ann.get('category_id')
      if type(image_id) is not int or image_id not in images:  # JSON ids are ints, not '1'
        raise common.DatasetError(f'{path}: annotation id {ann.get("id")} points at image id '
                                  f'{image_id!r}, which {paths[0]} does not list.')
      if type(category) is not int or category not in names:
        raise common.DatasetError(f'{path}: annotation id {ann.get("id")} has category id '
                                  f'{category!r}, which neither annotation file defines.')
      if coco is stuff:
        with_stuff.add(image_id)
      width, height = images[image_id]['width'], images[image_id]['height']
      box = _kept_box(ann, path, width, height, stats)
      if box is None:
        continue
      x, y, w, h = box
      if (w * h / (width * height) > MIN_OBJECT_SIZE and ann.get('iscrowd', 0) != 1
          and names[category] != OTHER_NAME):
        objects[image_id].append(((x, y, w, h), category,
                                  _usable_segmentation(ann, width, height, path, stats)))

  records = []
  for image_id, img in images.items():
    if image_id not in with_stuff:
      stats.images_without_stuff += 1
      continue
    objs = objects.get(image_id, [])
    if len(objs) < MIN_OBJECTS:
      stats.images_too_few_objects += 1
      continue
    if len(objs) > MAX_OBJECTS:
      stats.images_too_many_objects += 1
      continue
    records.append(common.ImageRecord(
        image_id=int(image_id), path=os.path.join(manual_dir, f'{split}2017', img['file_name']),
        pixel_boxes=np.array([b for b, _, _ in objs], np.float64).reshape(-1, 4),
        labels=np.array([c for _, c, _ in objs], np.int64),
        width=int(img['width']), height=int(img['height']),
        segmentations=[s for _, _, s in objs]))
    stats.objects_without_segmentation += sum(not common.has_segmentation(s) for _, _, s in objs)
    stats.images += 1
    stats.objects += len(objs)
  return records, stats


class CocoStuff(tfds.core.GeneratorBasedBuilder):
  """COCO-Stuff 2017 with the official LAMA filters: 74,777 train and 3,097 val images."""

  VERSION = tfds.core.Version('2.0.0')
  RELEASE_NOTES = {
      '1.0.0': 'Official LAMA/sg2im filters; raw COCO ids; boxes (x, y, w, h).',
      '1.1.0': "Adds 'masks' uint8 [N, 32, 32] {0, 1}: each object's segmentation sampled at the "
               'box-local grid of masks_to_layout (full box when it has none).',
      '2.0.0': common.RESIZED_NOTE,
  }
  BUILDER_CONFIGS = [common.size_config(s) for s in common.STANDARD_SIZES]
  DEFAULT_BUILDER_CONFIG_NAME = common.size_config(common.DEFAULT_SIZE).name
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Point --manual_dir at a folder holding the COCO 2017 images and the COCO-Stuff 2017 annotations:
    annotations/instances_train2017.json, annotations/instances_val2017.json  (COCO 2017)
    annotations/stuff_train2017.json, annotations/stuff_val2017.json          (COCO-Stuff 2017)
    train2017/*.jpg, val2017/*.jpg
  """
  VOCABULARY = 'coco_stuff'

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=common.features(self.builder_config.image_size), disable_shuffling=False,
        metadata=tfds.core.MetadataDict(),
        homepage='https://github.com/nightrome/cocostuff',
        description=self.__doc__)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    vocab = vocabulary_lib.load_vocabulary(self.VOCABULARY)
    generators = {}
    for split in SPLITS:
      records, stats = select_images(manual_dir, split)
      what = f'{self.name} {split}'
      common.check_labels(records, vocab, what)
      common.check_files_exist(records, what)
      if not records:
        raise common.DatasetError(f'{what}: no image passes the filters ({stats}).')
      self.info.metadata[split] = dataclasses.asdict(stats)
      logging.info('%s: %s', what, stats)
      generators[split] = self._generate_examples(records)
    return generators

  def _generate_examples(self, records: list[common.ImageRecord]):
    for record in records:
      yield record.image_id, common.to_example(record, self.builder_config.image_size)


class Shapes(CocoStuff):
  """The synthetic shapes set (`python -m lama_jax.datasets.shapes`), same rules as COCO-Stuff."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Point --manual_dir at the output of `python -m lama_jax.datasets.shapes --out DIR`.
  """
  VOCABULARY = 'shapes'
