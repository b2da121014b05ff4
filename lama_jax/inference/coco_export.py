"""Generated images and masks as a COCO-format dataset (the detection ecosystem's annotation file).

Categories are the generator's vocabulary with its own ids: for COCO-Stuff those are the COCO ids
(things 1-90, stuff 92-182, `other` 183), so the file drops into tools that know COCO. `isthing` and
`supercategory` ('thing' / 'stuff') follow the vocabulary's split; a vocabulary without one (Visual
Genome) is all things.

Each layout object becomes one annotation: `bbox` is the layout box in pixels, `segmentation` the
RLE of the object's binarised adapted mask restricted to the box, `area` that mask's pixel count.

Binarisation: the adapted mask is unnormalised (raw mask times LAMA's factors in (0, 2)); the
generator's norm layers divide it by its sum over objects (+1e-4) and mix the objects' styles with
those weights. A pixel is given to an object when the object's normalised share there exceeds
`threshold` (default 0.5: the object's style dominates the pixel). At 0.5 at most one object owns a
pixel, so the masks are disjoint, as COCO's panoptic-style masks are. The pixel must also lie inside
the box (its centre within the box's pixel extent).
"""
from typing import Any, Sequence

import numpy as np
from pycocotools import mask as mask_utils

from lama_jax.datasets import shapes
from lama_jax.datasets.vocabulary import Vocabulary
from lama_jax.metrics.mask_entropy import normalize_mask

DEFAULT_THRESHOLD = 0.5
# The largest thing id per vocabulary; larger ids are stuff. COCO: things 1-90 (91 unused), stuff
# 92-182 and 183 `other` (the COCO-Stuff convention).
_LAST_THING_ID = {'coco_stuff': 91, 'shapes': max(shapes.THING_COLORS)}


def is_thing(vocab: Vocabulary, category_id: int) -> bool:
  """Whether a category is a thing (countable object) rather than stuff, per the vocabulary."""
  last = _LAST_THING_ID.get(vocab.dataset)
  return last is None or category_id <= last


def _unused(name: str) -> bool:
  return name.startswith('__') and name.endswith('__')


def categories(vocab: Vocabulary) -> list[dict[str, Any]]:
  """The COCO `categories` list: every named category of the vocabulary (not padding, not unused)."""
  out = []
  for cid, name in sorted(vocab.id_to_name.items()):
    if cid == 0 or _unused(name):
      continue
    thing = is_thing(vocab, cid)
    out.append({'id': cid, 'name': name, 'supercategory': 'thing' if thing else 'stuff',
                'isthing': int(thing)})
  return out


def box_pixels(box: np.ndarray, height: int, width: int) -> np.ndarray:
  """Boolean [H, W]: pixels whose centre lies inside the normalised (x, y, w, h) box."""
  x, y, w, h = (float(v) for v in box)
  cols = (np.arange(width) + 0.5) / width
  rows = (np.arange(height) + 0.5) / height
  return ((rows >= y) & (rows <= y + h))[:, None] & ((cols >= x) & (cols <= x + w))[None, :]


def binary_masks(mask: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                 threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
  """Per-object binary masks of one image.

  Args:
    mask: [O, H, W] adapted (unnormalised) mask, every object of the image (padding ones are 0).
    boxes: [O, 4] normalised (x, y, w, h).
    labels: [O] category ids, 0 = padding.
    threshold: an object owns a pixel where its normalised share exceeds this.

  Returns:
    bool [O, H, W]; padding objects are empty.
  """
  _, h, w = mask.shape
  share = normalize_mask(mask)  # [O, H, W], what the norm layers weight the styles with
  inside = np.stack([box_pixels(b, h, w) for b in boxes])
  return (share > threshold) & inside & (np.asarray(labels) > 0)[:, None, None]


def encode(binary: np.ndarray) -> dict[str, Any]:
  """A [H, W] boolean mask as COCO compressed RLE (JSON-ready: counts as str)."""
  rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
  return {'size': [int(s) for s in rle['size']], 'counts': rle['counts'].decode('ascii')}


def pixel_box(box: np.ndarray, height: int, width: int) -> list[float]:
  """A normalised (x, y, w, h) box in pixels, clipped to the image, rounded to 1/100 pixel."""
  x0, y0 = np.clip(box[0], 0, 1) * width, np.clip(box[1], 0, 1) * height
  x1 = np.clip(box[0] + box[2], 0, 1) * width
  y1 = np.clip(box[1] + box[3], 0, 1) * height
  return [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)]


def image_annotations(image_id: int, first_id: int, binary: np.ndarray, boxes: np.ndarray,
                      labels: np.ndarray) -> tuple[list[dict[str, Any]], int]:
  """The annotations of one image: one per object whose mask is not empty.

  Args:
    image_id: the COCO image id.
    first_id: the annotation id of object slot 0 (slot j gets first_id + j, so ids never depend on
      which objects were left out).
    binary: [O, H, W] from `binary_masks`.
    boxes: [O, 4] normalised; labels: [O] category ids (0 = padding, skipped).

  Returns:
    (annotations, how many real objects were left out because their mask is empty).
  """
  _, h, w = binary.shape
  out, empty = [], 0
  for j, (m, box, label) in enumerate(zip(binary, boxes, labels)):
    if label <= 0:
      continue
    area = int(m.sum())
    if area == 0:
      empty += 1
      continue
    out.append({'id': first_id + j, 'image_id': image_id, 'category_id': int(label),
                'bbox': pixel_box(box, h, w), 'area': area, 'segmentation': encode(m),
                'iscrowd': 0})
  return out, empty


def document(info: dict[str, Any], images: Sequence[dict[str, Any]],
             annotations: Sequence[dict[str, Any]], vocab: Vocabulary) -> dict[str, Any]:
  """The whole annotation file."""
  return {'info': info, 'licenses': [], 'images': list(images),
          'annotations': list(annotations), 'categories': categories(vocab)}
