"""The studio's generator side: validation, z draws per object, generation and the pictures.

One `Engine` serves every page. It samples batch 1 padded to the model's `max_objects`, so one
compiled program serves every layout; `warm_up` compiles it (and the z draws) at start-up, and
`compilations` counts XLA compilations since then (it stays 0 while boxes come and go).
"""
import dataclasses
import functools
import html
import threading
import time

import jax
import numpy as np

from lama_jax import LayoutGenerator
from lama_jax import layouts as layouts_lib
from lama_jax import visualize
from lama_jax.studio.session import Session

_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
_compile_lock = threading.Lock()
_compile_count = 0
_listening = False


def _on_event_duration(event: str, duration: float, **kwargs) -> None:
  del duration, kwargs
  if event == _COMPILE_EVENT:
    global _compile_count
    with _compile_lock:
      _compile_count += 1


def compile_count() -> int:
  """XLA compilations in this process since the first Engine was made."""
  global _listening
  with _compile_lock:
    if not _listening:
      jax.monitoring.register_event_duration_secs_listener(_on_event_duration)
      _listening = True
    return _compile_count


def _derived_seed(*parts: int) -> int:
  return int(np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(1)[0]
             & 0x7FFFFFFF)


def truncation_arg(truncation: float) -> float | None:
  """The studio's truncation control → `sample_z`'s argument (0 or less: plain N(0, 1))."""
  return float(truncation) if truncation > 0 else None


@dataclasses.dataclass(frozen=True)
class Rendered:
  """One generated sample of a session's layout.

  Attributes:
    image: uint8 [H, W, 3], as `sample` writes it.
    mask, raw_mask: uint8 [H, W, 3], the adapted and raw masks coloured by category.
    masks, raw_masks: float32 [O, H, W] per object, in layout order.
    labels: int32 [O] the objects' category ids.
    seconds: the generator call's wall time.
  """
  image: np.ndarray
  mask: np.ndarray
  raw_mask: np.ndarray
  masks: np.ndarray
  raw_masks: np.ndarray
  labels: np.ndarray
  seconds: float


class Engine:
  """A loaded generator serving the studio's pages."""

  def __init__(self, gen: LayoutGenerator):
    self.gen = gen
    vocab = gen.vocabulary
    self.categories = [n for i, n in sorted(vocab.id_to_name.items()) if i != layouts_lib.PAD_LABEL
                       and not (n.startswith('__') and n.endswith('__'))]  # unused ids
    self.colors = visualize.category_colors(gen.num_classes)
    self.compilations_at_start = compile_count()

  @property
  def compilations(self) -> int:
    """XLA compilations since `warm_up` (0 unless something recompiled)."""
    return compile_count() - self.compilations_at_start

  def warm_up(self, truncation: float = 2.0) -> float:
    """Compiles generation and the z draws (batch 1, `max_objects` slots); returns seconds."""
    t0 = time.perf_counter()
    category = self.categories[0]
    session = Session(truncation=truncation).loaded('warm_up', [(category, (0.25, 0.25, 0.5, 0.5))])
    self.render(session)
    self.render(session.resampled(0).resampled(None))  # the single z draws of resampled objects
    for t in {truncation, 0.0}:  # both z-drawing programs (truncated and plain)
      self._table(0, t)
      self._single(0, t)
    self.compilations_at_start = compile_count()
    return time.perf_counter() - t0

  @functools.lru_cache(maxsize=64)
  def _table(self, seed: int, truncation: float) -> tuple[np.ndarray, np.ndarray]:
    """The seed's own draws: `sample_z(1, seed, num_objects=max_objects)` (as `sample --fix_z`)."""
    z_obj, z_im = self.gen.sample_z(1, seed, truncation_arg(truncation))
    return z_obj[0], z_im[0]

  @functools.lru_cache(maxsize=4096)
  def _single(self, seed: int, truncation: float) -> tuple[np.ndarray, np.ndarray]:
    z_obj, z_im = self.gen.sample_z(1, seed, truncation_arg(truncation), num_objects=1)
    return z_obj[0, 0], z_im[0]

  def object_z(self, seed: int, truncation: float, uid: int, draws: int) -> np.ndarray:
    """Object `uid`'s z after `draws` resamplings: slot `uid` of the seed's table while it has one
    and was never resampled, else a draw of its own from (seed, uid, draws)."""
    if draws == 0 and uid < self.gen.max_objects:
      return self._table(seed, truncation)[0][uid]
    return self._single(_derived_seed(seed, 1, uid, draws), truncation)[0]

  def image_z(self, seed: int, truncation: float, draws: int) -> np.ndarray:
    if draws == 0:
      return self._table(seed, truncation)[1]
    return self._single(_derived_seed(seed, 2, draws), truncation)[1]

  def validate(self, session: Session, source: str = 'canvas') -> layouts_lib.Layout:
    """The session's layout checked as `sample` checks a layout file.

    Raises:
      LayoutError: too many objects, an unknown category, a degenerate or out-of-image box.
    """
    if not session.objects:
      raise layouts_lib.LayoutError(f'{source}: the layout is empty: draw a box')
    try:
      return layouts_lib.parse_layouts(session.layout_json(), self.gen.vocabulary,
                                       self.gen.max_objects, source)[0]
    except layouts_lib.LayoutError as e:  # one layout: its index and name say nothing here
      raise layouts_lib.LayoutError(str(e).replace(f'layout 0 {session.name!r}, ', '').replace(
          f'layout 0 {session.name!r}: ', '')) from None

  def render(self, session: Session, layout: layouts_lib.Layout | None = None) -> Rendered:
    """Generates the session's layout with its objects' z (validated unless `layout` is given)."""
    layout = layout or self.validate(session)
    seed, trunc = session.seed, session.truncation
    z_obj = np.stack([self.object_z(seed, trunc, o.uid, o.draws) for o in session.objects])
    z_im = self.image_z(seed, trunc, session.image_draws)
    t0 = time.perf_counter()
    out = self.gen.generate(layout.boxes[None], layout.labels[None], z_obj=z_obj[None],
                            z_im=z_im[None], seed=seed)
    seconds = time.perf_counter() - t0
    labels = layout.labels[None]
    n = self.gen.num_classes
    return Rendered(image=visualize.to_uint8_truncated(out.image)[0],
                    mask=visualize.colorize_masks(out.mask, labels, n)[0],
                    raw_mask=visualize.colorize_masks(out.raw_mask, labels, n)[0],
                    masks=out.mask[0], raw_masks=out.raw_mask[0], labels=layout.labels,
                    seconds=seconds)

  def color_hex(self, category: str) -> str:
    r, g, b = self.colors[self.gen.vocabulary.name_to_id[category]]
    return f'#{r:02x}{g:02x}{b:02x}'

  def legend_html(self, session: Session) -> str:
    """Colour swatches of the layout's categories, in layout order."""
    seen = list(dict.fromkeys(o.category for o in session.objects))
    items = ''.join(
        f'<span class="studio-swatch"><i style="background:{self.color_hex(c)}"></i>'
        f'{html.escape(c)}</span>' for c in seen if c in self.gen.vocabulary.name_to_id)
    return f'<div class="studio-legend">{items}</div>'
