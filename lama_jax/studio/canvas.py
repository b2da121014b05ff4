"""The box-annotation canvas: its boxes, and which box is which after an edit.

The canvas (gradio_image_annotation's `image_annotator`) shows a square background of `SIZE` pixels
and reports its boxes as `{label, xmin, ymin, xmax, ymax}` in those pixels, as a list without ids:
a new box is put first, a deleted one spliced out, and a moved one keeps its place. `match` recovers
which old box each reported box continues, so that an object keeps its noise when it is moved,
resized or relabelled.
"""
import difflib
from typing import Any, NamedTuple, Sequence

import numpy as np

SIZE = 512  # side of the canvas background in pixels: box coordinates are in [0, SIZE]
TOLERANCE_PX = 1  # the canvas rounds coordinates through its display scale: ±1 px is no edit


class CanvasBox(NamedTuple):
  """One box as the canvas reports it: a category name ('' while being created) and pixels."""
  label: str
  xmin: int
  ymin: int
  xmax: int
  ymax: int

  def normalised(self) -> tuple[float, float, float, float]:
    """(x, y, w, h) in [0, 1], with x + w and y + h exactly the rounded right and bottom edges."""
    x0, y0, x1, y1 = (round(v / SIZE, 4) for v in (self.xmin, self.ymin, self.xmax, self.ymax))
    return x0, y0, round(x1 - x0, 6), round(y1 - y0, 6)

  def close_to(self, other: 'CanvasBox') -> bool:
    """Same label and every edge within the canvas's rounding."""
    return self.label == other.label and all(
        abs(a - b) <= TOLERANCE_PX for a, b in zip(self[1:], other[1:]))


def from_normalised(label: str, box: Sequence[float]) -> CanvasBox:
  """A layout box (x, y, w, h) in [0, 1] as canvas pixels."""
  x, y, w, h = (float(v) for v in box)
  return CanvasBox(label, round(x * SIZE), round(y * SIZE), round((x + w) * SIZE),
                   round((y + h) * SIZE))


def read_boxes(value: dict[str, Any] | None) -> list[CanvasBox]:
  """The canvas's reported value (`{'image', 'boxes'}`) → its boxes, in the canvas's order."""
  if not value:
    return []
  boxes = []
  for b in value.get('boxes') or []:
    label = b.get('label') or ''
    boxes.append(CanvasBox(str(label), *(int(round(float(b[k])))
                                         for k in ('xmin', 'ymin', 'xmax', 'ymax'))))
  return boxes


def _cost(a: CanvasBox, b: CanvasBox) -> float | None:
  """How far box a is from being box b after one edit; None if no single edit makes a into b
  (a move or resize keeps the category, a relabel keeps the place)."""
  moved = float(np.abs(np.subtract(a[1:], b[1:])).sum())
  if a.label == b.label:
    return moved
  return 0.5 if moved <= 4 * TOLERANCE_PX else None


def _pair_nearest(old: Sequence[CanvasBox], new: Sequence[CanvasBox], i0: int, j0: int,
                  result: list[int | None]) -> None:
  """Pairs the boxes of a changed run, nearest first; a box left without a partner is new."""
  pairs = sorted((cost, i, j) for i, o in enumerate(old) for j, n in enumerate(new)
                 if (cost := _cost(o, n)) is not None)
  used_old, used_new = set(), set()
  for _, i, j in pairs:
    if i not in used_old and j not in used_new:
      used_old.add(i)
      used_new.add(j)
      result[j0 + j] = i0 + i


def match(old: Sequence[CanvasBox], new: Sequence[CanvasBox]) -> list[int | None]:
  """For each new box, the index of the old box it continues, or None for a box drawn since.

  Unchanged boxes are aligned as a sequence (the canvas keeps their order); within a run of changed
  boxes between them, a box continues the nearest old box that one edit (move, resize, relabel)
  turns into it. Several edits can arrive at once when the page coalesces events.
  """
  result: list[int | None] = [None] * len(new)
  matcher = difflib.SequenceMatcher(a=list(old), b=list(new), autojunk=False)
  for tag, i1, i2, j1, j2 in matcher.get_opcodes():
    if tag == 'equal':
      for k in range(j2 - j1):
        result[j1 + k] = i1 + k
    elif tag == 'replace':
      _pair_nearest(old[i1:i2], new[j1:j2], i1, j1, result)
  return result
