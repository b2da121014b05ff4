"""Checks that a COCO segmentation decodes before pycocotools sees it.

pycocotools checks none of this: a non-finite or huge polygon coordinate makes it allocate until the
process is killed, and RLE counts that do not cover the mask leave the rest of it uninitialised
memory, stored silently as the object's mask.
"""
import math

import numpy as np

from lama_jax import number_checks
from lama_jax.datasets import common


def _rle_string_counts(text: str) -> np.ndarray:
  """The run lengths of a compressed COCO RLE string (pycocotools' `rleFrString`, vectorised).

  Each run length is a group of characters ('0' + 6 bits): 5 bits of the value each, least
  significant first; bit 0x20 says the group goes on, bit 0x10 of its last character is the sign.
  From the fourth run on, the value is the difference to the run two before.

  Raises:
    ValueError: characters outside ASCII, the string ends inside a group, or a group too long for
      a run length.
  """
  chars = np.frombuffer(text.encode('ascii'), np.uint8).astype(np.int64) - 48
  if not chars.size:
    return chars
  last = (chars & 0x20) == 0  # the last character of its group
  if not last[-1]:
    raise ValueError('the string ends inside a run length')
  starts = np.flatnonzero(np.r_[True, last[:-1]])
  group = np.cumsum(np.r_[0, last[:-1]])  # per character, the index of its run
  place = np.arange(chars.size) - starts[group]  # per character, its place in the group
  if place.max() > 11:  # more than 60 bits: no run length of an image
    raise ValueError('a run length is too long')
  values = np.add.reduceat((chars & 0x1f) << (5 * place), starts)
  negative = last & (chars & 0x10 != 0)
  values[group[negative]] -= 1 << (5 * (place[negative] + 1))
  counts = values.copy()
  if counts.size > 3:  # undo the differences, separately for the odd and the even runs
    counts[3::2] = values[1] + np.cumsum(values[3::2])
    counts[4::2] = values[2] + np.cumsum(values[4::2])
  return counts


def _rle_runs(counts) -> np.ndarray | None:
  """The run lengths of an RLE's counts (a list, or a compressed string), or None if malformed."""
  try:
    if isinstance(counts, str):
      return _rle_string_counts(counts)
    if isinstance(counts, list) and all(number_checks.is_int(v) for v in counts):
      return np.array(counts, np.int64)
  except (ValueError, OverflowError):
    pass
  return None


def segmentation_problem(segmentation) -> str | None:
  """What makes a COCO segmentation field undecodable, or None when it decodes (or is empty).

  pycocotools checks none of this: a non-finite or huge polygon coordinate makes it allocate
  until the process is killed, and RLE counts that do not cover the mask leave the rest of it
  uninitialised memory.
  """
  if isinstance(segmentation, list):
    for polygon in segmentation:
      if not isinstance(polygon, list) or not all(number_checks.is_number(v) for v in polygon):
        return f'the polygon {polygon!r:.60} is not a list of x, y numbers'
      if not all(math.isfinite(v) for v in polygon):
        return f'the polygon {polygon!r:.60} has a non-finite coordinate'
    return None
  if not common.has_segmentation(segmentation):
    return None
  size, counts = segmentation['size'], segmentation['counts']
  if not (isinstance(size, list) and len(size) == 2 and all(number_checks.is_int(v) and v > 0 for v in size)):
    return f'the RLE size {size!r:.60} is not [height, width]'
  runs = _rle_runs(counts)
  if runs is None or (runs < 0).any():
    return (f'the RLE counts {counts!r:.60} are neither non-negative whole numbers nor a COCO '
            'RLE string')
  if runs.sum() != size[0] * size[1]:
    return (f'the RLE counts cover {runs.sum()} pixels, but its size {size[0]}x{size[1]} has '
            f'{size[0] * size[1]}')
  return None


def polygons_far_outside(polygons: list, width: int, height: int) -> bool:
  """Whether a polygon point lies more than an image width or height outside its image.

  pycocotools rasterises the whole outline, in memory that grows with its length: a point 1e9
  pixels away needs tens of gigabytes.
  """
  points = [(x, y) for polygon in polygons for x, y in zip(polygon[::2], polygon[1::2])]
  return any(not (-width <= x <= 2 * width and -height <= y <= 2 * height) for x, y in points)
