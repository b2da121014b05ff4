"""Shapes alignment: high on drawn shapes images, low on noise and on mislabelled layouts."""
import math

import numpy as np
from PIL import Image, ImageDraw

from lama_jax.metrics import shapes_alignment
from lama_jax.metrics.shapes_alignment import STUFF_COLORS, THING_COLORS


def _draw_thing(draw, label, x0, y0, x1, y1):
  color = THING_COLORS[label][1]
  cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2
  if label == 1:
    draw.ellipse([x0, y0, x1, y1], fill=color)
  elif label == 2:
    draw.rectangle([x0, y0, x1, y1], fill=color)
  elif label == 3:
    draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=color)
  elif label == 4:
    draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=color)
  elif label == 5:
    draw.rectangle([cx - r / 3, y0, cx + r / 3, y1], fill=color)
    draw.rectangle([x0, cy - r / 3, x1, cy + r / 3], fill=color)
  elif label == 6:
    draw.polygon([(cx + r * math.cos(a), cy + r * math.sin(a))
                  for a in np.linspace(0, 2 * math.pi, 7)[:-1]], fill=color)
  elif label == 7:
    draw.ellipse([x0, y0, x1, y1], outline=color, width=max(2, round(r / 3)))
  else:
    pts = [(cx + (r if k % 2 == 0 else r / 2.5) * math.sin(k * math.pi / 5),
            cy - (r if k % 2 == 0 else r / 2.5) * math.cos(k * math.pi / 5)) for k in range(10)]
    draw.polygon(pts, fill=color)


def make_shapes_batch(n=6, size=64, seed=0):
  """Shapes images drawn with PIL: two stuff regions, three non-overlapping things."""
  rng = np.random.default_rng(seed)
  images, boxes, labels = [], [], []
  for _ in range(n):
    top, bottom = rng.choice(list(STUFF_COLORS), 2, replace=False)
    img = Image.new('RGB', (size, size), STUFF_COLORS[top][1])
    draw = ImageDraw.Draw(img)
    draw.rectangle([0, size // 2, size, size], fill=STUFF_COLORS[bottom][1])
    things = rng.choice(list(THING_COLORS), 3, replace=False)
    img_boxes, img_labels = [[0, 0, 1, 1]], [0]  # the image object, as in the layouts
    for k, label in enumerate(things):
      side = int(rng.integers(size // 5, size // 3))
      x0 = k * size // 3 + int(rng.integers(0, size // 3 - side + 1))
      y0 = int(rng.integers(0, size - side))
      _draw_thing(draw, int(label), x0, y0, x0 + side - 1, y0 + side - 1)
      img_boxes.append([x0 / size, y0 / size, side / size, side / size])
      img_labels.append(int(label))
    img_boxes.append([0, 0.5, 1, 0.5])  # a stuff box: not scored
    img_labels.append(int(bottom))
    images.append(np.asarray(img))
    boxes.append(img_boxes)
    labels.append(img_labels)
  return np.stack(images), np.array(boxes, np.float32), np.array(labels)


def test_high_on_drawn_shapes():
  images, boxes, labels = make_shapes_batch(n=12)
  result = shapes_alignment(images, boxes, labels)
  assert result['num_boxes'] == 36
  assert result['overall'] > 0.9
  assert set(result['per_category']) == {name for name, _ in THING_COLORS.values()}


def test_every_category_recognised_alone():
  size = 64
  for label in THING_COLORS:
    img = Image.new('RGB', (size, size), STUFF_COLORS[10][1])
    _draw_thing(ImageDraw.Draw(img), label, 16, 16, 47, 47)
    result = shapes_alignment(np.asarray(img), [[16 / 64, 16 / 64, 32 / 64, 32 / 64]], [label])
    assert result['overall'] == 1.0, THING_COLORS[label][0]


def test_low_on_noise_and_on_wrong_labels():
  images, boxes, labels = make_shapes_batch(n=12, seed=1)
  noise = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
  assert shapes_alignment(noise, boxes, labels)['overall'] < 0.2
  shifted = np.where((labels >= 1) & (labels <= 8), labels % 8 + 1, labels)  # every thing mislabelled
  assert shapes_alignment(images, boxes, shifted)['overall'] < 0.2
  assert math.isnan(shapes_alignment(images[:1], boxes[:1, :1], labels[:1, :1])['overall'])
