"""Shapes alignment score: does each thing box of a generated shapes image hold its category?

A weights-free stand-in for the YOLO score on the synthetic shapes set, where
every category has its own flat colour. Each pixel of a thing box is given the
nearest palette colour (8 things + 5 stuff), or none when it is farther than
`max_distance` in RGB from all of them. A box holds its category when

  1. at least `min_fraction` of its pixels have the category's colour, and
  2. that colour has strictly more pixels in the box than any other thing colour.

Defaults: `max_distance` = 60 (half the distance between the closest thing colours
is about 40, so clean and mildly blurred shapes pass, but uniform noise lands
within 60 of a given colour for at most ~5% of its pixels), and `min_fraction` =
0.10 (a ring or star of the set covers 25-45% of its box; 10% leaves room for
blobby, shrunken or partly occluded objects while staying above the noise rate).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

# The palette of the synthetic shapes set, defined here on purpose rather than
# imported from the dataset module, so the metric stays fixed if the data changes.
THING_COLORS: dict[int, tuple[str, tuple[int, int, int]]] = {
    1: ('disk', (220, 40, 40)),
    2: ('square', (240, 210, 30)),
    3: ('triangle', (30, 60, 220)),
    4: ('diamond', (210, 40, 200)),
    5: ('cross', (30, 210, 220)),
    6: ('hexagon', (245, 130, 20)),
    7: ('ring', (245, 245, 245)),
    8: ('star', (20, 20, 20)),
}
STUFF_COLORS: dict[int, tuple[str, tuple[int, int, int]]] = {
    9: ('sky', (135, 190, 235)),
    10: ('wall', (150, 150, 150)),
    11: ('grass', (70, 140, 50)),
    12: ('sand', (210, 190, 130)),
    13: ('water', (40, 90, 150)),
}
_PALETTE_LABELS = np.array(list(THING_COLORS) + list(STUFF_COLORS))  # [13]
_PALETTE = np.array([c for _, c in THING_COLORS.values()] + [c for _, c in STUFF_COLORS.values()],
                    np.float32)  # [13, 3]
NONE = 0  # pixel label for "no palette colour near enough"


def classify_pixels(image: np.ndarray, max_distance: float = 60.0) -> np.ndarray:
  """Labels each pixel with its nearest palette category (1..13), or 0 if none is near.

  Args:
    image: [H, W, 3] uint8 RGB.
    max_distance: largest RGB Euclidean distance that still counts as a colour.

  Returns:
    [H, W] int labels.
  """
  pixels = np.asarray(image, np.float32)[..., None, :]  # [H, W, 1, 3]
  dist2 = np.sum((pixels - _PALETTE) ** 2, axis=-1)  # [H, W, 13]
  nearest = np.argmin(dist2, axis=-1)
  labels = _PALETTE_LABELS[nearest]
  return np.where(np.take_along_axis(dist2, nearest[..., None], -1)[..., 0] <= max_distance ** 2,
                  labels, NONE)


def _box_pixels(box: np.ndarray, height: int, width: int) -> tuple[slice, slice]:
  # Every pixel the box touches; at least one pixel so tiny boxes are still judged.
  x, y, w, h = (float(v) for v in box)
  x0 = min(max(int(math.floor(x * width)), 0), width - 1)
  y0 = min(max(int(math.floor(y * height)), 0), height - 1)
  x1 = max(min(int(math.ceil((x + w) * width)), width), x0 + 1)
  y1 = max(min(int(math.ceil((y + h) * height)), height), y0 + 1)
  return slice(y0, y1), slice(x0, x1)


def box_holds_category(pixel_labels: np.ndarray, label: int,
                       min_fraction: float = 0.1) -> bool:
  """Whether a box's pixel labels (any shape) show thing `label` (rules in the module doc)."""
  counts = np.bincount(pixel_labels.reshape(-1), minlength=len(_PALETTE_LABELS) + 1)
  own = counts[label]
  others = np.delete(counts[1:len(THING_COLORS) + 1], label - 1)
  return bool(own >= min_fraction * pixel_labels.size and own > others.max())


def shapes_alignment(images: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                     max_distance: float = 60.0, min_fraction: float = 0.1) -> dict[str, Any]:
  """Fraction of thing boxes whose generated content has the category's colour.

  Args:
    images: [N, H, W, 3] uint8 generated images.
    boxes: [N, O, 4] normalised (x, y, w, h) boxes of the layouts.
    labels: [N, O] category ids; only things (1..8) are scored, padding (0) and
      stuff (9..13) are skipped.
    max_distance: RGB distance beyond which a pixel has no palette colour.
    min_fraction: share of the box the category's colour must cover.

  Returns:
    {'overall': accuracy over all thing boxes, 'per_category': {name: accuracy}
    for all eight things (NaN where a category has no box), 'num_boxes': int}.
  """
  images = np.asarray(images)
  boxes = np.asarray(boxes, np.float64)
  labels = np.asarray(labels)
  if images.ndim == 3:
    images, boxes, labels = images[None], boxes[None], labels[None]
  n, height, width, _ = images.shape
  hits = {k: 0 for k in THING_COLORS}
  totals = {k: 0 for k in THING_COLORS}
  for i in range(n):
    pixel_labels = None  # classified lazily: layouts without things cost nothing
    for box, label in zip(boxes[i], labels[i]):
      label = int(label)
      if label not in THING_COLORS:
        continue
      if pixel_labels is None:
        pixel_labels = classify_pixels(images[i], max_distance)
      rows, cols = _box_pixels(box, height, width)
      totals[label] += 1
      hits[label] += box_holds_category(pixel_labels[rows, cols], label, min_fraction)
  num_boxes = sum(totals.values())
  return {
      'overall': sum(hits.values()) / num_boxes if num_boxes else float('nan'),
      'per_category': {THING_COLORS[k][0]: hits[k] / totals[k] if totals[k] else float('nan')
                       for k in THING_COLORS},
      'num_boxes': num_boxes,
  }
