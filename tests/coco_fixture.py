"""A tiny COCO-Stuff-format folder whose filtering outcome is known by construction.

Each image exercises one rule of the official loader. `EXPECTED[split]` maps the image ids that must
survive to their kept (label, pixel box) lists, in order: instances first, then stuff.
"""
import json
import os

from PIL import Image

PERSON, CAR, DOG = 1, 3, 18  # thing ids
GRASS, SKY, OTHER = 124, 157, 183  # stuff ids
BIG = (5, 5, 40, 30)  # a box far above 2% of every image below

# image id -> (width, height, [(kind, category, bbox, extra annotation fields)])
# kind: 'i' instance, 's' stuff. Default image 100x50: 2% is an area of 100.
IMAGES = {
    'train': {
        1: (100, 50, [('s', SKY, (0, 0, 100, 20), {}), ('i', PERSON, BIG, {}),
                      ('i', CAR, (50, 10, 30, 30), {})]),  # plain keep; stuff listed first
        2: (100, 50, [('i', PERSON, BIG, {'iscrowd': 1}), ('i', CAR, BIG, {}),
                      ('i', DOG, BIG, {}), ('s', GRASS, BIG, {})]),  # crowd dropped
        3: (100, 50, [('i', PERSON, BIG, {}), ('i', DOG, BIG, {}), ('s', OTHER, BIG, {}),
                      ('s', SKY, BIG, {})]),  # `other` dropped
        4: (100, 50, [('i', PERSON, (0, 0, 11, 9), {}),  # 99: just under 2%
                      ('i', CAR, (0, 0, 10, 10), {}),  # exactly 2%: not strictly above
                      ('i', DOG, (0, 0, 10.1, 10), {'area': 1.0}),  # 101: just over; bbox rules
                      ('i', PERSON, BIG, {}), ('s', SKY, BIG, {})]),
        5: (100, 50, [('i', PERSON, BIG, {}), ('i', CAR, BIG, {}), ('i', DOG, BIG, {}),
                      ('i', PERSON, BIG, {})]),  # no stuff annotation: dropped
        6: (100, 50, [('i', PERSON, BIG, {}), ('i', CAR, BIG, {}), ('i', DOG, BIG, {}),
                      ('s', OTHER, BIG, {})]),  # only `other` stuff still counts as having stuff
        7: (100, 50, [('i', PERSON, BIG, {}), ('s', SKY, BIG, {})]),  # 2 objects: too few
        8: (100, 50, [('i', PERSON, BIG, {})] * 7 + [('s', SKY, BIG, {}),
                                                   ('s', GRASS, BIG, {})]),  # 9: too many
        9: (100, 50, [('i', CAR, BIG, {})] * 6 + [('s', SKY, BIG, {}),
                                                ('s', GRASS, BIG, {})]),  # exactly 8: kept
        10: (60, 120, [('i', PERSON, (0, 0, 12, 12), {}),  # 144 = 2% of 7200: dropped
                       ('i', CAR, (6, 12, 13, 12), {}), ('s', SKY, (0, 0, 60, 40), {}),
                       ('s', GRASS, (0, 60, 60, 60), {})]),  # portrait, non-square
        11: (120, 40, [('i', PERSON, (10, 10, 0, 20), {}),  # zero-size: skipped and counted
                       ('i', CAR, BIG, {}), ('i', DOG, (60, 0, 60, 40), {}),
                       ('s', SKY, BIG, {})]),  # landscape, non-square
        12: (100, 50, [('i', PERSON, (0, 0, 9, 9), {}), ('i', CAR, (0, 0, 9, 9), {}),
                       ('s', SKY, (0, 0, 9, 9), {}), ('s', GRASS, BIG, {})]),  # small: too few
        13: (100, 50, [('i', PERSON, (-500, -500, 600, 530), {}),  # far outside: clipped
                       ('i', DOG, (60.5, 10, 40.2, 30), {}),  # sub-pixel overhang: kept as is
                       ('i', CAR, (200, 200, 10, 10), {}),  # wholly outside: skipped
                       ('s', GRASS, BIG, {'segmentation': {'size': [10, 10], 'counts': [100]}})]),
        14: (100, 50, [('i', DOG, (-1, 0, 101, 30), {}),  # overhangs by the tolerance: as is
                       ('i', PERSON, BIG, {}), ('s', GRASS, BIG, {})]),
    },
    'val': {
        101: (80, 80, [('i', PERSON, BIG, {}), ('i', CAR, BIG, {}), ('s', SKY, BIG, {})]),
        102: (80, 80, [('i', PERSON, BIG, {}), ('s', SKY, BIG, {})]),  # too few
    },
}
_KEEP = {
    1: [(PERSON, BIG), (CAR, (50, 10, 30, 30)), (SKY, (0, 0, 100, 20))],
    2: [(CAR, BIG), (DOG, BIG), (GRASS, BIG)],
    3: [(PERSON, BIG), (DOG, BIG), (SKY, BIG)],
    4: [(DOG, (0, 0, 10.1, 10)), (PERSON, BIG), (SKY, BIG)],
    6: [(PERSON, BIG), (CAR, BIG), (DOG, BIG)],
    9: [(CAR, BIG)] * 6 + [(SKY, BIG), (GRASS, BIG)],
    10: [(CAR, (6, 12, 13, 12)), (SKY, (0, 0, 60, 40)), (GRASS, (0, 60, 60, 60))],
    11: [(CAR, BIG), (DOG, (60, 0, 60, 40)), (SKY, BIG)],
    13: [(PERSON, (0, 0, 100, 30)), (DOG, (60.5, 10, 40.2, 30)), (GRASS, BIG)],
    14: [(DOG, (-1, 0, 101, 30)), (PERSON, BIG), (GRASS, BIG)],
    101: [(PERSON, BIG), (CAR, BIG), (SKY, BIG)],
}
EXPECTED = {split: {i: _KEEP[i] for i in images if i in _KEEP} for split, images in IMAGES.items()}
DEGENERATE = {'train': 1, 'val': 0}
# What image 13 makes `prepare` count beyond the official rules (the mask of another size is
# stored as a full box, so it is also an object without segmentation).
OUTSIDE = {'train': {'clipped_boxes': 1, 'skipped_boxes_outside': 1, 'masks_wrong_size': 1},
           'val': {'clipped_boxes': 0, 'skipped_boxes_outside': 0, 'masks_wrong_size': 0}}

_CATEGORIES = {
    'instances': [{'id': PERSON, 'name': 'person'}, {'id': CAR, 'name': 'car'},
                  {'id': DOG, 'name': 'dog'}],
    'stuff': [{'id': GRASS, 'name': 'grass'}, {'id': SKY, 'name': 'sky-other'},
              {'id': OTHER, 'name': 'other'}],
}


def image_colour(image_id: int) -> tuple[int, int, int]:
  return (image_id * 20 % 256, 100, 255 - image_id * 10 % 256)


def write_coco(root: str) -> str:
  """Writes the fixture folder under `root`; returns it."""
  os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
  ann_id = 1
  for split, images in IMAGES.items():
    os.makedirs(os.path.join(root, f'{split}2017'), exist_ok=True)
    data = {kind: {'images': [], 'annotations': [], 'categories': cats}
            for kind, cats in _CATEGORIES.items()}
    for image_id, (w, h, objects) in images.items():
      name = f'{image_id:012d}.jpg'
      # A left-right ramp, so a mirrored image is told apart from the original.
      img = Image.new('RGB', (w, h), image_colour(image_id))
      for x in range(w // 2):
        for y in range(h):
          img.putpixel((x, y), (250, 250, 250))
      img.save(os.path.join(root, f'{split}2017', name), quality=95)
      for d in data.values():
        d['images'].append({'id': image_id, 'file_name': name, 'width': w, 'height': h})
      for kind, category, bbox, extra in objects:
        ann = {'id': ann_id, 'image_id': image_id, 'category_id': category, 'bbox': list(bbox),
               'area': bbox[2] * bbox[3], 'iscrowd': 0, 'segmentation': [], **extra}
        data['instances' if kind == 'i' else 'stuff']['annotations'].append(ann)
        ann_id += 1
    for kind, d in data.items():
      with open(os.path.join(root, 'annotations', f'{kind}_{split}2017.json'), 'w') as f:
        json.dump(d, f)
  return root
