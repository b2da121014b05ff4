"""A small line plot in PIL (no plotting library): one line with points per series, over x."""
import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
  """About `count` round tick values covering [lo, hi]."""
  if not math.isfinite(lo) or not math.isfinite(hi):
    return [0.0, 1.0]
  if hi - lo < 1e-9:
    lo, hi = lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3)
  raw = (hi - lo) / max(count - 1, 1)
  mag = 10 ** math.floor(math.log10(raw))
  step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
  ticks = []
  v = math.floor(lo / step) * step
  while v < hi + step * 0.999:
    ticks.append(round(v, 10))
    v += step
  return ticks


def _fmt_tick(v: float) -> str:
  return f'{v:g}' if abs(v) >= 1e-3 or v == 0 else f'{v:.1e}'


def _axes(draw: ImageDraw.ImageDraw, font, frame: tuple[int, int, int, int], px,
          xticks: Sequence[float], yticks: Sequence[float]) -> None:
  """Grid lines, ticks and tick labels, and the two axes."""
  left, right, top, bottom = frame
  for v in yticks:
    _, y = px(xticks[0], v)
    draw.line([(left, y), (right, y)], fill=(225, 225, 225))
    draw.line([(left - 5, y), (left, y)], fill='black')
    text = _fmt_tick(v)
    draw.text((left - 8 - draw.textlength(text, font=font), y - 6), text, fill='black', font=font)
  for v in xticks:
    x, _ = px(v, yticks[0])
    draw.line([(x, bottom), (x, bottom + 5)], fill='black')
    text = _fmt_tick(v)
    draw.text((x - draw.textlength(text, font=font) / 2, bottom + 8), text, fill='black',
              font=font)
  draw.line([(left, top), (left, bottom), (right, bottom)], fill='black', width=1)


def _labels(img: Image.Image, draw: ImageDraw.ImageDraw, font, frame, title: str, xlabel: str,
            ylabel: str) -> None:
  """The title, the x label and the rotated y label."""
  left, right, top, bottom = frame
  draw.text(((left + right) / 2 - draw.textlength(xlabel, font=font) / 2, bottom + 28), xlabel,
            fill='black', font=font)
  label_img = Image.new('RGB', (int(draw.textlength(ylabel, font=font)) + 4, 14), 'white')
  ImageDraw.Draw(label_img).text((2, 1), ylabel, fill='black', font=font)
  label_img = label_img.rotate(90, expand=True)
  img.paste(label_img, (8, int((top + bottom) / 2 - label_img.height / 2)))
  draw.text((left, 12), title, fill='black', font=font)


def line_plot(x: Sequence[float], series: dict[str, tuple[Sequence[float], Color]], title: str,
              xlabel: str, ylabel: str, width: int = 640, height: int = 420,
              x_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
  """A uint8 [height, width, 3] plot of `series` {legend: (y values, colour)} over `x`.

  Non-finite values are left out; the x axis covers at least `x_range`.
  """
  font = ImageFont.load_default()
  img = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(img)
  frame = left, right, top, bottom = 70, width - 30, 40, height - 60
  values = [v for ys, _ in series.values() for v in ys if math.isfinite(v)]
  yticks = nice_ticks(min(values, default=0.0), max(values, default=1.0))
  xticks = nice_ticks(min(x_range[0], min(x)), max(x_range[1], max(x)), 6)
  (xlo, xhi), (ylo, yhi) = (xticks[0], xticks[-1]), (yticks[0], yticks[-1])

  def px(a, b):
    return (left + (a - xlo) / (xhi - xlo) * (right - left),
            bottom - (b - ylo) / (yhi - ylo) * (bottom - top))

  _axes(draw, font, frame, px, xticks, yticks)
  _labels(img, draw, font, frame, title, xlabel, ylabel)
  for k, (legend, (ys, color)) in enumerate(series.items()):
    pts = [px(a, b) for a, b in zip(x, ys) if math.isfinite(b)]
    if len(pts) > 1:
      draw.line(pts, fill=color, width=2)
    for a, b in pts:
      draw.ellipse([a - 4, b - 4, a + 4, b + 4], fill=color, outline='black')
    lx, ly = right - 190, top + 8 + 16 * k  # legend
    draw.line([(lx, ly + 6), (lx + 20, ly + 6)], fill=color, width=2)
    draw.ellipse([lx + 7, ly + 3, lx + 13, ly + 9], fill=color)
    draw.text((lx + 26, ly), legend, fill='black', font=font)
  return np.asarray(img)
