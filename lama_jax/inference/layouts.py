"""The layout format users write: parsing and validation into generator inputs.

A layout file is JSON, one layout or a list of layouts:

  {"name": "beach", "objects": [
    {"category": "sky-other", "bbox": [0.0, 0.0, 1.0, 0.45]},
    {"category": "person",    "bbox": [0.40, 0.35, 0.15, 0.55]}]}

`category` is a name from the generator's vocabulary or an integer id; `bbox` is normalised
(x, y, w, h) with the origin at the top left, inside [0, 1]. Every problem is a `LayoutError` whose
one-line message names the file, the layout, the object and what is wrong.
"""
import dataclasses
import difflib
import json
import math
import re
import sys
from typing import Any, Sequence

import numpy as np

from lama_jax.datasets.vocabulary import Vocabulary
from lama_jax.errors import LamaError
from lama_jax.number_checks import is_int, is_number

PAD_LABEL = 0  # `__image__`
PAD_BOX = (-0.6, -0.6, 0.5, 0.5)  # the official loader's padding box
_NAME_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.\-]*$')
# Output files are NAME_k_raw_mask.png, written as .NAME_k_raw_mask.png.XXXXXXXX.tmp first: a name
# of 200 characters keeps that within the 255 bytes a file name may have.
MAX_NAME_LENGTH = 200
_TOLERANCE = 1e-6  # boxes may overshoot [0, 1] by rounding error
# Sizes below it are float32 zeros or subnormals, which the generator's division by the box size
# (masks_to_layout) turns into NaN images: 1e-40 passed `w > 0` in float64 and drew NaN everywhere.
_MIN_SIZE = float(np.finfo(np.float32).tiny)
MAX_SEED = 2**32 - 1
MAX_OBJECTS = 64  # the most objects per layout a model may take (COCO-Stuff 8, VG 10)


class LayoutError(LamaError, ValueError):
  """A layout that cannot be generated; the message names file, layout, object and problem."""


@dataclasses.dataclass(frozen=True)
class Layout:
  """One validated layout.

  Attributes:
    name: used in output file names.
    labels: [O] int32 category ids (> 0).
    boxes: [O, 4] float32 normalised (x, y, w, h).
    categories: the category names, for drawing.
  """
  name: str
  labels: np.ndarray
  boxes: np.ndarray
  categories: tuple[str, ...]

  def arrays(self, num_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [num_objects, 4], labels [num_objects]) padded the official way."""
    n = len(self.labels)
    boxes = np.tile(np.asarray(PAD_BOX, np.float32), (num_objects, 1))
    labels = np.full((num_objects,), PAD_LABEL, np.int32)
    boxes[:n], labels[:n] = self.boxes, self.labels
    return boxes, labels


def _unused(name: str) -> bool:
  return name.startswith('__') and name.endswith('__')


def resolve_category(category: Any, vocab: Vocabulary) -> tuple[int, str]:
  """A category name or id → (id, name). Raises LayoutError with the problem (no location)."""
  if isinstance(category, str):
    ids = vocab.name_to_id
    if category in ids and not _unused(category):
      return ids[category], category
    if category == vocab.id_to_name.get(PAD_LABEL):
      raise LayoutError(f'category {category!r} is the padding class, not a category')
    names = [n for n in ids if not _unused(n)]
    # COCO-Stuff's stuff names have suffixes ('sky-other', 'wall-brick'): 'sky' suggests those.
    close = [n for n in names if n.split('-')[0] == category]
    close += [n for n in difflib.get_close_matches(category, names, n=3) if n not in close]
    hint = f' (did you mean {", ".join(map(repr, close[:3]))}?)' if close else ''
    if category.strip().isdigit() and int(category) in vocab.id_to_name:
      hint = f' (an id is a JSON number: {int(category)}, {vocab.id_to_name[int(category)]!r})'
    raise LayoutError(f'unknown category {category!r} for {vocab.dataset}{hint}')
  if isinstance(category, (int, np.integer)) and not isinstance(category, (bool, np.bool_)):
    category = int(category)  # a NumPy id (from an array of labels) is an id too
    if category == PAD_LABEL:
      raise LayoutError('category id 0 is the padding class (__image__), not a category')
    name = vocab.id_to_name.get(category)
    if not 0 < category < vocab.num_classes or name is None or _unused(name):
      raise LayoutError(f'unknown category id {category} for {vocab.dataset} '
                        f'(ids 1..{vocab.num_classes - 1})')
    return category, name
  raise LayoutError('category must be a name or an integer id, not '
                    f'{json.dumps(category, default=repr)}')


def check_box(box: Any) -> np.ndarray:
  """A bbox → float32 [4]. Raises LayoutError with the problem (no location)."""
  if not isinstance(box, (list, tuple, np.ndarray)) or len(box) != 4 or not all(
      is_number(v) for v in box):
    shown = json.dumps(box, default=repr) if not isinstance(box, np.ndarray) else str(box.tolist())
    raise LayoutError(f'bbox must be four numbers [x, y, w, h], got {shown}')
  try:
    x, y, w, h = (float(v) for v in box)
  except OverflowError:  # JSON integers have no limit: 1 followed by 400 zeros was a traceback
    raise LayoutError('bbox holds an integer too large for a float (of '
                      f'{max(len(str(abs(v))) for v in box if is_int(v))} digits)') from None
  if not all(math.isfinite(v) for v in (x, y, w, h)):
    raise LayoutError(f'bbox {[x, y, w, h]} is not finite')
  if w <= 0 or h <= 0:
    raise LayoutError(f'bbox {[x, y, w, h]} has zero or negative size (w={w:g}, h={h:g})')
  if min(w, h) < _MIN_SIZE:
    raise LayoutError(f'bbox {[x, y, w, h]} is too small (w={w:g}, h={h:g}; the generator '
                      f'takes sizes from {_MIN_SIZE:.3g}, float32\'s smallest normal number)')
  if x < -_TOLERANCE or y < -_TOLERANCE or x + w > 1 + _TOLERANCE or y + h > 1 + _TOLERANCE:
    raise LayoutError(f'bbox {[x, y, w, h]} is outside [0, 1] (x + w = {x + w:g}, '
                      f'y + h = {y + h:g})')
  return np.asarray([x, y, w, h], np.float32)


def parse_layouts(data: Any, vocab: Vocabulary, max_objects: int, source: str = '<layouts>'
                  ) -> list[Layout]:
  """Validates decoded JSON (one layout or a list) against the vocabulary and the model's size.

  Args:
    data: a dict with `objects` (and optionally `name`), or a list of them.
    vocab: the generator's vocabulary.
    max_objects: the most objects the generator takes.
    source: where the data came from (the file name), for messages.

  Returns:
    The layouts, in order.

  Raises:
    LayoutError: the first problem found, located as `source: layout I 'NAME', object J: problem`.
  """
  items = data if isinstance(data, list) else [data]
  if not items:
    raise LayoutError(f'{source}: the list of layouts is empty')
  layouts, seen = [], {}
  for i, item in enumerate(items):
    where = f'{source}: layout {i}'
    if not isinstance(item, dict):
      raise LayoutError(f'{where}: not a layout (expected an object with "objects", got '
                        f'{type(item).__name__})')
    name = item.get('name', f'layout{i}' if len(items) > 1 else 'layout')
    if not isinstance(name, str) or not _NAME_RE.match(name):
      # The rule in full: a name that is all allowed characters but starts with "." or "-" (a
      # hidden file, an option-like name) is refused too, and the message must say why.
      # Shown as written (not as "\u00fc" escapes), and "ASCII": "ünï" is letters to its author.
      raise LayoutError(f'{where}: name {json.dumps(name, ensure_ascii=False)} must be a non-empty '
                        'string of ASCII letters, digits, "_", "-" or ".", not starting with "." or '
                        '"-" (it names the output files)')
    if len(name) > MAX_NAME_LENGTH:
      raise LayoutError(f'{where}: name {name[:20]!r}... is {len(name)} characters long, more than '
                        f'{MAX_NAME_LENGTH} (it names the output files)')
    where = f'{source}: layout {i} {name!r}'
    if name in seen:
      raise LayoutError(f'{where}: the name is already used by layout {seen[name]}')
    seen[name] = i
    if 'objects' not in item:
      raise LayoutError(f'{where}: missing "objects" (a list of {{"category", "bbox"}})')
    objects = item['objects']
    if not isinstance(objects, list):
      raise LayoutError(f'{where}: "objects" must be a list, not {type(objects).__name__}')
    if not objects:
      raise LayoutError(f'{where}: "objects" is empty')
    if len(objects) > max_objects:
      raise LayoutError(f'{where}: {len(objects)} objects, more than the model takes '
                        f'({max_objects})')
    labels, boxes, names = [], [], []
    for j, obj in enumerate(objects):
      owhere = f'{where}, object {j}'
      if not isinstance(obj, dict):
        raise LayoutError(f'{owhere}: not an object with "category" and "bbox"')
      if 'category' in obj:
        owhere += f' ({obj["category"]!r})' if isinstance(obj['category'], (str, int)) else ''
      for key in ('category', 'bbox'):
        if key not in obj:
          raise LayoutError(f'{owhere}: missing "{key}"')
      try:
        label, cname = resolve_category(obj['category'], vocab)
        box = check_box(obj['bbox'])
      except LayoutError as e:
        raise LayoutError(f'{owhere}: {e}') from None
      labels.append(label)
      boxes.append(box)
      names.append(cname)
    layouts.append(Layout(name, np.asarray(labels, np.int32), np.stack(boxes), tuple(names)))
  return layouts


def decode_layouts(text: str, source: str) -> Any:
  """Layout JSON text → a layout (dict) or a list of them; LayoutErrors start with `source`."""
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise LayoutError(f'{source}: broken JSON at line {e.lineno}, column {e.colno}: '
                      f'{e.msg}') from None
  if not isinstance(data, (dict, list)):
    raise LayoutError(f'{source}: not a layout or a list of layouts (got a JSON '
                      f'{type(data).__name__})')
  return data


def read_layout_file(path: str, source: str | None = None) -> Any:
  """A layout file's layout or list of layouts (`decode_layouts`), named `source` (or `path`)."""
  source = source or path
  try:
    with open(path, encoding='utf-8-sig') as f:  # UTF-8, with or without the BOM editors write
      text = f.read()
  except OSError as e:
    raise LayoutError(f'{source}: cannot read the layout file: {e.strerror}') from None
  except UnicodeDecodeError:
    raise LayoutError(f'{source}: not a text (UTF-8) file') from None
  return decode_layouts(text, source)


def load_layouts(path: str, vocab: Vocabulary, max_objects: int) -> list[Layout]:
  """Reads and validates a layout JSON file (see `parse_layouts`)."""
  data = read_layout_file(path)
  return parse_layouts(data, vocab, max_objects, source=path)


def as_array(x: Any, what: str, shape: str) -> np.ndarray:
  """np.asarray, with a ragged or non-numeric input named (numpy's own errors say neither)."""
  try:
    array = np.asarray(x)
  except (ValueError, TypeError) as e:
    raise LayoutError(f'{what} must be a regular {shape} array of numbers (rows of equal '
                      f'length): {" ".join(str(e).split()[:8])}...') from None
  if array.dtype == object or not (np.issubdtype(array.dtype, np.integer) or
                                   np.issubdtype(array.dtype, np.floating)):
    raise LayoutError(f'{what} must be real numbers in a regular {shape} array, got dtype '
                      f'{array.dtype}')
  return array


def _check_labels(labels: np.ndarray, num_classes: int) -> None:
  """Labels in their own dtype: integral and in [0, num_classes) before any cast (a cast to int32
  would turn 2**32 + 1 into 1, and 1.9 into 1)."""
  if np.issubdtype(labels.dtype, np.floating):
    bad = ~np.isfinite(labels) | (labels != np.round(labels))
    for i, j in zip(*np.nonzero(bad)):
      raise LayoutError(f'layout {i}, object {j}: label {labels[i, j]} is not an integer')
  for i, j in zip(*np.nonzero((labels < 0) | (labels >= num_classes))):
    raise LayoutError(f'layout {i}, object {j}: label {labels[i, j]} outside [0, {num_classes})')


def check_arrays(boxes: Any, labels: Any, num_classes: int, max_objects: int,
                 strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
  """Validates generator inputs given as arrays; padding (label 0) boxes are replaced.

  The one check of array inputs (`LayoutGenerator.generate`, strict or not); layout files go
  through `parse_layouts`, whose per-object checks (`check_box`) are the same.

  Args:
    boxes: [B, O, 4] normalised (x, y, w, h).
    labels: [B, O] integers (any integer dtype, or integral floats), 0 = padding.
    num_classes: labels must lie in [0, num_classes).
    max_objects: O must not exceed it.
    strict: check every real box fully (finite, positive size, inside [0, 1]); False checks only
      that it is finite, for prepared datasets whose boxes may overshoot the image by a hair.

  Returns:
    (boxes float32 [B, O, 4], padding rows set to the official padding box; labels int32 [B, O]).

  Raises:
    LayoutError: naming the layout (batch row), the object and the problem.
  """
  boxes = as_array(boxes, 'boxes', '[B, O, 4]')
  labels = as_array(labels, 'labels', '[B, O]')
  if boxes.ndim != 3 or boxes.shape[-1] != 4:
    raise LayoutError(f'boxes must have shape [B, O, 4], got {list(boxes.shape)}')
  if labels.shape != boxes.shape[:2]:
    raise LayoutError(f'labels must have shape [B, O] = {list(boxes.shape[:2])} to match boxes, '
                      f'got {list(labels.shape)}')
  b, o = labels.shape
  if b == 0:
    raise LayoutError('boxes and labels hold no layouts (B = 0)')
  if o > max_objects:
    raise LayoutError(f'{o} objects per layout, more than the model takes ({max_objects})')
  _check_labels(labels, num_classes)
  labels = labels.astype(np.int32)  # safe now: every label is an integer in [0, num_classes)
  real = labels != PAD_LABEL
  for i, j in zip(*np.nonzero(real)):
    try:
      if strict:
        check_box(boxes[i, j].astype(np.float64).tolist())
      elif not np.all(np.isfinite(boxes[i, j])):
        raise LayoutError(f'bbox {boxes[i, j].tolist()} is not finite')
    except LayoutError as e:
      raise LayoutError(f'layout {i}, object {j} (label {labels[i, j]}): {e}') from None
  boxes = np.where(real[..., None], boxes.astype(np.float32), np.asarray(PAD_BOX, np.float32))
  return boxes.astype(np.float32), labels


def check_int(value: Any, name: str, low: int, high: int) -> int:
  """`value` if it is an integer (NumPy's too, not a bool) in [low, high], else a LayoutError: a
  float would be used truncated (or as jnp.arange(1.5)'s two rows), a huge one overflow int32."""
  if not is_int(value):
    raise LayoutError(f'{name} must be an integer, not {value!r}')
  if not low <= value <= high:
    raise LayoutError(f'{name} {value} is outside [{low}, {high}]')
  return int(value)


def check_sampling(seed: Any, truncation: Any) -> float | None:
  """Raises LayoutError for a seed that is not an integer in [0, 2**32) (JAX keys keep 32 bits:
  larger or negative seeds would alias others) or a truncation that is not positive or None.

  Returns the truncation as a float (or None): an int past int32 (2**31) was an OverflowError
  traceback from the jitted program, one past float64 inf (it truncates nothing either way).
  """
  check_int(seed, 'seed', 0, MAX_SEED)
  if truncation is None:
    return None
  if not (is_number(truncation) and truncation > 0):
    raise LayoutError(f'truncation must be a positive number or None, not {truncation!r}')
  return math.inf if truncation > sys.float_info.max else float(truncation)


def stack_layouts(layouts: Sequence[Layout], num_objects: int) -> tuple[np.ndarray, np.ndarray]:
  """Layouts → (boxes [N, num_objects, 4], labels [N, num_objects]), padded.

  Raises:
    LayoutError: no layouts, one that is not a `Layout` (JSON layouts go through `parse_layouts`)
      or one with more than `num_objects` objects (NumPy's errors said none of this).
  """
  if not layouts:
    raise LayoutError('no layouts to stack (the list is empty)')
  for i, layout in enumerate(layouts):
    if not isinstance(layout, Layout):
      raise LayoutError(f'layout {i} is a {type(layout).__name__}, not a Layout (parse_layouts '
                        'makes Layouts from JSON layouts)')
    if len(layout.labels) > num_objects:
      raise LayoutError(f'layout {i} {layout.name!r}: {len(layout.labels)} objects, more than '
                        f'{num_objects}')
  pairs = [layout.arrays(num_objects) for layout in layouts]
  return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
