"""Pictures of layouts and masks: category colours, coloured masks, drawn boxes, image grids.

Everything here is NumPy/PIL on uint8 arrays, shared by training (TensorBoard and PNG grids) and
inference (`sample` writes masks and layouts with the same colours).
"""
from collections.abc import Mapping, Sequence
import colorsys

import numpy as np
from PIL import Image
from PIL import ImageDraw

from lama_jax.errors import LamaError


def category_colors(num_classes: int) -> np.ndarray:
  """A fixed colour per category id: [num_classes, 3] uint8; id 0 (`__image__`) is black.

  Hues step by the golden angle so neighbouring ids differ; saturation and value cycle so that large
  vocabularies (COCO-Stuff's 184) stay distinguishable.
  """
  colors = np.zeros((num_classes, 3), np.uint8)
  for i in range(1, num_classes):
    hue = (i * 0.618033988749895) % 1.0
    sat = (0.95, 0.65, 0.8)[i % 3]
    val = (1.0, 0.75, 0.9)[(i // 3) % 3]
    colors[i] = np.round(np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255)
  return colors


def colorize_masks(mask: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Colours object masks by category.

  Each pixel takes the mask-weighted mean colour of the objects covering it; where the objects' masks
  sum to less than 1 the colour fades to black in proportion, so empty regions stay black. Padding
  objects (label 0) are ignored.

  Args:
    mask: [B, O, H, W] non-negative masks (raw masks in [0, 1], adapted masks up to 2).
    labels: [B, O] int category ids.
    num_classes: size of the vocabulary (for the colour table).

  Returns:
    uint8 [B, H, W, 3].

  Raises:
    LamaError: a label that is not a whole number or outside [0, num_classes).
  """
  mask = np.asarray(mask, np.float32)
  labels = np.asarray(labels)
  # Integral float labels, which `generate` takes, index the colours as ids (they were an IndexError).
  if not (np.issubdtype(labels.dtype, np.integer) or np.all(labels == np.round(labels))):
    raise LamaError(f'colorize_masks: labels must be whole numbers (category ids), got '
                    f'{labels.dtype} values such as {labels[labels != np.round(labels)][0]}')
  if labels.size and not 0 <= labels.min() <= labels.max() < num_classes:  # not an IndexError
    raise LamaError(f'colorize_masks: labels run over [{labels.min()}, {labels.max()}], outside '
                    f'[0, {num_classes}) for num_classes={num_classes}')
  labels = labels.astype(np.int64)
  mask = np.where((labels > 0)[:, :, None, None], np.maximum(mask, 0.0), 0.0)
  colors = category_colors(num_classes).astype(np.float32)[labels]  # [B, O, 3]
  total = mask.sum(1)  # [B, H, W]
  weights = mask / np.maximum(total, 1.0)[:, None]
  out = np.einsum('bohw,boc->bhwc', weights, colors)
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _name(names: Mapping[int, str] | Sequence[str] | None, label: int) -> str:
  if names is None:
    return str(label)
  try:
    return str(names[label])
  except (KeyError, IndexError):
    return str(label)


def draw_layout(image_uint8: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
                names: Mapping[int, str] | Sequence[str] | None = None,
                num_classes: int | None = None) -> np.ndarray:
  """Draws layout boxes with their category names on top of images.

  Args:
    image_uint8: [H, W, 3] or [B, H, W, 3] uint8 images (e.g. zeros for a bare layout).
    boxes: [O, 4] or [B, O, 4] normalised (x, y, w, h), top-left origin.
    labels: [O] or [B, O] category ids; 0 (padding) is skipped.
    names: id -> name (a dict, e.g. `Vocabulary.id_to_name`, or a list); None writes the ids.
    num_classes: size of the colour table; defaults to max(labels) + 1.

  Returns:
    uint8 images of the input's shape.

  Raises:
    LamaError: an image that is not whole numbers in [0, 255] (a generated image in [-1, 1] would
      be cast to an almost black one), or a real object's box that is not finite.
  """
  image = np.asarray(image_uint8)
  if image.dtype != np.uint8:
    if not (np.issubdtype(image.dtype, np.number) and
            np.array_equal(image, np.clip(np.round(image), 0, 255))):
      raise LamaError(f'draw_layout takes uint8 images (whole numbers in [0, 255]), got '
                      f'{image.dtype} values such as {float(image.flat[0]):g}; '
                      'visualize.to_uint8 converts generated images in [-1, 1]')
    image = image.astype(np.uint8)
  boxes, labels = np.asarray(boxes, np.float32), np.asarray(labels)
  if image.ndim == 4:
    return np.stack([draw_layout(im, b, l, names, num_classes or int(labels.max()) + 1)
                     for im, b, l in zip(image, boxes, labels)])
  h, w, _ = image.shape
  colors = category_colors(num_classes or int(labels.max(initial=0)) + 1)
  pil = Image.fromarray(image)
  draw = ImageDraw.Draw(pil)
  for j, ((x, y, bw, bh), label) in enumerate(zip(boxes, labels)):
    label = int(label)
    if label <= 0:
      continue
    if not np.all(np.isfinite((x, y, bw, bh))):
      raise LamaError(f'draw_layout: object {j} (label {label}) has box '
                      f'[{", ".join(f"{v:g}" for v in (x, y, bw, bh))}], not finite')
    x0, y0 = int(round(x * (w - 1))), int(round(y * (h - 1)))
    x1, y1 = int(round((x + bw) * (w - 1))), int(round((y + bh) * (h - 1)))
    color = tuple(int(c) for c in colors[label % len(colors)])
    draw.rectangle([x0, y0, max(x1, x0), max(y1, y0)], outline=color, width=1)
    draw.text((x0 + 2, y0 + 1), _name(names, label), fill=color)
  return np.asarray(pil)


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Images in [-1, 1] to uint8 [0, 255], rounded (for pictures and decoded real images)."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_uint8_truncated(images: np.ndarray) -> np.ndarray:
  """Generated images in [-1, 1] to uint8 as the official test.py saves them: (x·0.5 + 0.5)·255,
  truncated. Sample PNGs and the evaluation use this, so scores match what the official code saw."""
  return (np.clip(np.asarray(images, np.float32) * 0.5 + 0.5, 0.0, 1.0) * 255).astype(np.uint8)


def make_grid(images: np.ndarray, ncol: int = 8, pad: int = 2) -> np.ndarray:
  """Tiles [N, H, W, 3] uint8 images into one [rows·(H+pad)+pad, ncol·(W+pad)+pad, 3] picture."""
  images = np.asarray(images, np.uint8)
  n, h, w, c = images.shape
  ncol = max(1, min(ncol, n))
  nrow = -(-n // ncol)
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, q = divmod(i, ncol)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = (
        images[i])
  return grid


def _text_strip(texts: Sequence[str], sizes: Sequence[int], thickness: int, vertical: bool
                ) -> np.ndarray:
  """A white strip with each text centred in its cell (cells of `sizes` pixels along the strip)."""
  length = sum(sizes)
  pil = Image.new('RGB', (thickness, length) if vertical else (length, thickness), 'white')
  draw = ImageDraw.Draw(pil)
  start = 0
  for text, size in zip(texts, sizes):
    left, top, right, bottom = draw.textbbox((0, 0), text)
    tw, th = right - left, bottom - top
    if vertical:
      draw.text((max(2, (thickness - tw) // 2), start + (size - th) // 2), text, fill='black')
    else:
      draw.text((start + max(2, (size - tw) // 2), (thickness - th) // 2), text, fill='black')
    start += size
  return np.asarray(pil)


def labelled_grid(rows: Sequence[Sequence[np.ndarray]], column_titles: Sequence[str] | None = None,
                  row_titles: Sequence[str] | None = None, pad: int = 2) -> np.ndarray:
  """Tiles equally sized uint8 pictures row by row, with a title above each column and/or beside
  each row, so a reader can tell which is real, generated, raw mask or adapted mask."""
  ncol = max(len(r) for r in rows)
  h, w, _ = np.asarray(rows[0][0]).shape
  blank = np.full((h, w, 3), 255, np.uint8)
  tiles = [np.asarray(t, np.uint8) for r in rows for t in (*r, *[blank] * (ncol - len(r)))]
  grid = make_grid(np.stack(tiles), ncol, pad)
  if column_titles:
    sizes = [pad + w] * ncol
    sizes[-1] += pad
    grid = np.concatenate([_text_strip(column_titles, sizes, 14, vertical=False), grid], 0)
  if row_titles:
    sizes = [pad + h] * len(rows)
    sizes[-1] += pad
    top = grid.shape[0] - sum(sizes)
    width = 8 + 6 * max(len(t) for t in row_titles)
    strip = _text_strip(row_titles, sizes, width, vertical=True)
    strip = np.concatenate([np.full((top, width, 3), 255, np.uint8), strip], 0)
    grid = np.concatenate([strip, grid], 1)
  return grid
