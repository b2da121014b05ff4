"""The studio's gradio page: the canvas, the three pictures, the object list and the controls.

Every handler takes the page's `Session` and returns a new one, or keeps the old one and says why
in the status line: a bad edit never reaches the generator, and the canvas is put back as it was.
All generating events share one queue slot (`concurrency_id='generate'`): the generator uses every
core for one sample, so running two at once would only slow both.
"""
import atexit
import dataclasses
import html
import json
import math
import os
import secrets
import shlex
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # no calls home; must precede gradio

import gradio as gr  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position

from lama_jax import layouts as layouts_lib  # pylint: disable=wrong-import-position
from lama_jax.layouts import LayoutError  # pylint: disable=wrong-import-position
from lama_jax.number_checks import number_in  # pylint: disable=wrong-import-position
from lama_jax.studio import canvas as canvas_lib  # pylint: disable=wrong-import-position
from lama_jax.studio.downloads import write_downloads  # pylint: disable=wrong-import-position
from lama_jax.studio.engine import Engine  # pylint: disable=wrong-import-position
from lama_jax.studio.session import Session  # pylint: disable=wrong-import-position

MAX_UPLOAD_BYTES = 1 << 20
MAX_SEED = 2**31 - 1
MAX_TRUNCATION = 3.0  # the slider's end
API_MAX_SEED = 2**32 - 1  # /generate takes the `sample` CLI's seeds
QUEUE_SIZE = 256  # waiting requests beyond this are refused (bounded memory under load)
KEPT_SAVES = 32  # Save folders kept on disk; older ones are removed
OUTPUTS = ('state', 'canvas', 'image', 'raw', 'mask', 'legend', 'objects', 'status', 'info',
           'selected', 'category', 'seed', 'truncation')  # every generating handler's, in order
CSS = """
#studio-image img, #studio-raw img, #studio-mask img { image-rendering: pixelated; width: 100%;
  height: 100%; object-fit: contain; }
.studio-legend, .studio-objects { font-size: 0.9em; }
.studio-swatch { margin-right: 0.9em; white-space: nowrap; }
.studio-swatch i, .studio-objects i { display: inline-block; width: 0.9em; height: 0.9em;
  margin-right: 0.3em; vertical-align: -0.1em; border: 1px solid #8886; }
.studio-objects td { padding: 0 0.6em 0 0; }
.studio-error { color: #c0262d; font-weight: 600; }
"""
PENDING = ('A box has no category yet: pick one in its dialog (double-click the box to open it). '
           'It is left out until then.')
START = 'Draw a box on the canvas to start.'
HELP = ('**Draw** a box by dragging on the canvas (box tool, key C) and pick its category '
        '(type to search). **Move or resize** with the hand tool (D); **double-click** a box to '
        'change its category; **delete** the selected box with the bin or the Delete key.')


def example_layouts(folder: str | None, engine: Engine) -> list[tuple[str, layouts_lib.Layout]]:
  """Every layout in the JSON files of `folder` that fits the model (vocabulary and size)."""
  if not folder or not os.path.isdir(folder):
    return []
  found = []
  for path in sorted(Path(folder).glob('*.json')):
    try:
      data = layouts_lib.read_layout_file(str(path))
    except LayoutError:
      continue
    for item in data if isinstance(data, list) else [data]:
      try:
        layout, = layouts_lib.parse_layouts(item, engine.gen.vocabulary, engine.gen.max_objects,
                                            source=path.name)
      except LayoutError:
        continue  # another dataset's categories, or more objects than the model takes
      found.append((f'{path.name}: {layout.name}', layout))
  return found


def _background() -> np.ndarray:
  """The canvas: a light square with a grid at eighths, so positions are easy to judge."""
  size = canvas_lib.SIZE
  image = np.full((size, size, 3), 236, np.uint8)
  for k in range(1, 8):
    image[k * size // 8, :] = image[:, k * size // 8] = 214
  return image


class StudioApp:
  """The page's components and handlers for one loaded generator."""

  def __init__(self, engine: Engine, model_path: str, examples_dir: str | None = None):
    self.engine = engine
    self.model_path = model_path
    self.examples = example_layouts(examples_dir, engine)
    self.workdir = tempfile.mkdtemp(prefix='lama_studio_')  # the canvas and the saved files
    atexit.register(shutil.rmtree, self.workdir, ignore_errors=True)
    self.background = os.path.join(self.workdir, 'canvas.png')
    Image.fromarray(_background()).save(self.background)
    self._saves = 0
    self._save_lock = threading.Lock()

  # ---- what every handler returns ---------------------------------------------------------------

  def _canvas_value(self, session: Session) -> dict[str, Any]:
    boxes = []
    for box in session.canvas_boxes:
      color = tuple(int(c) for c in self.engine.colors[
          self.engine.gen.vocabulary.name_to_id.get(box.label, 0)])
      boxes.append(dict(label=box.label, xmin=box.xmin, ymin=box.ymin, xmax=box.xmax,
                        ymax=box.ymax, color=color))
    return {'image': self.background, 'boxes': boxes}

  def objects_html(self, session: Session) -> str:
    rows = ''.join(
        f'<tr><td>{i}</td><td><i style="background:{self.engine.color_hex(o.category)}"></i>'
        f'{html.escape(o.category)}</td><td>x {o.box[0]:.3f}</td><td>y {o.box[1]:.3f}</td>'
        f'<td>w {o.box[2]:.3f}</td><td>h {o.box[3]:.3f}</td><td>z draw {o.draws}</td></tr>'
        for i, o in enumerate(session.objects))
    return f'<table class="studio-objects">{rows}</table>' if rows else '<i>No objects yet.</i>'

  def _listing(self, session: Session, selected: Any) -> dict[str, Any]:
    return dict(legend=self.engine.legend_html(session), objects=self.objects_html(session),
                **self._selection(session, selected))

  def _selection(self, session: Session, selected: Any) -> dict[str, Any]:
    """The object dropdown (keeping the chosen object while it exists) and its category."""
    choices = [(f'{i}: {o.category}', o.uid) for i, o in enumerate(session.objects)]
    uids = [uid for _, uid in choices]
    value = selected if selected in uids else (uids[-1] if uids else None)
    category = session.objects[session.index_of(value)].category if value is not None else None
    return {'selected': gr.Dropdown(choices=choices, value=value), 'category': category}

  def status_html(self, text: str, error: bool = False) -> str:
    if not text:
      return ''
    cls = ' class="studio-error"' if error else ''
    return f'<div id="studio-status-text"{cls}>{html.escape(text, quote=False)}</div>'

  def _info(self, session: Session, seconds: float) -> str:
    size = self.engine.gen.image_size
    return (f'<div id="studio-info-text">{len(session.objects)} objects, seed {session.seed}, '
            f'image z draw {session.image_draws}: {size}×{size} generated in '
            f'{seconds * 1000:.0f} ms. XLA compilations since start-up: '
            f'{self.engine.compilations}.</div>')

  @staticmethod
  def _out(**values: Any) -> tuple:
    """The handlers' outputs in `OUTPUTS` order; those not given are left as they are."""
    return tuple(values.get(k, gr.skip()) for k in OUTPUTS)

  def _respond(self, old: Session, new: Session, selected: Any = None, canvas: bool = False,
               force: bool = False, seed: bool = False, note: str = '') -> tuple:
    """The outputs for `new`: pictures regenerated when what they depend on changed (or `force`).

    A layout that fails validation keeps `old` and puts `old`'s boxes back on the canvas.
    """
    out: dict[str, Any] = {'state': new}
    if seed:
      out['seed'] = new.seed
    if new.pending:  # a box without a category is no object: the others are still generated
      note = PENDING
    if canvas:
      out['canvas'] = self._canvas_value(new)
    same = (new.objects == old.objects and new.seed == old.seed and new.image_draws ==
            old.image_draws and new.truncation == old.truncation)
    if same and not force:
      if new.pending or old.pending:  # the note comes, or goes (the dialog was cancelled)
        out['status'] = self.status_html(note)
      return self._out(**out)
    if not new.objects:
      return self._out(**out, **self._listing(new, selected), image=None, raw=None, mask=None,
                       info='', status=self.status_html(note or START))
    try:
      layout = self.engine.validate(new)
    except LayoutError as e:
      kept = old.with_objects(old.objects)
      return self._out(state=kept, canvas=self._canvas_value(kept), status=self.status_html(
          f'Not applied: {e}. The layout was left as it was.', error=True))
    out['objects'] = self.objects_html(new)
    if force or [(o.uid, o.category) for o in new.objects] != [
        (o.uid, o.category) for o in old.objects]:  # a move leaves legend and choices alone
      out.update(self._listing(new, selected))
    rendered = self.engine.render(new, layout)
    return self._out(**out, image=rendered.image, raw=rendered.raw_mask, mask=rendered.mask,
                     status=self.status_html(note), info=self._info(new, rendered.seconds))

  def _error(self, session: Session, message: str, **values: Any) -> tuple:
    return self._out(state=session, **values, status=self.status_html(
        f'Not applied: {message}. The layout was left as it was.', error=True))

  # ---- handlers ---------------------------------------------------------------------------------

  def on_canvas(self, value: dict | None, session: Session, selected: Any) -> tuple:
    return self._respond(session, session.apply_canvas(canvas_lib.read_boxes(value)), selected)

  def on_seed(self, seed: Any, session: Session, selected: Any) -> tuple:
    """The field's value as the page sent it (gradio's preprocessing rounded 1.5 to seed 2 and
    answered a value beyond the field's bounds with a toast of its own); a bad one is put back."""
    if not number_in(seed, 0, MAX_SEED, whole=True):
      got = 'an empty field' if seed is None else seed
      return self._error(session, f'the seed must be a whole number in [0, {MAX_SEED}], got {got}',
                         seed=session.seed)
    if int(seed) == session.seed:  # the echo of a seed this page set itself
      return self._respond(session, session, selected)
    return self._respond(session, session.reseeded(int(seed)), selected)

  def on_truncation(self, truncation: Any, session: Session, selected: Any) -> tuple:
    """As `on_seed` (an emptied slider field was a toast quoting gradio's TypeError)."""
    if not number_in(truncation, 0, MAX_TRUNCATION):
      got = 'an empty field' if truncation is None else truncation
      return self._error(session, f'truncation must be a number in [0, {MAX_TRUNCATION:g}] '
                         f'(0: none), got {got}', truncation=session.truncation)
    return self._respond(session, dataclasses.replace(session, truncation=float(truncation)),
                         selected)

  def on_new_image_z(self, session: Session, selected: Any) -> tuple:
    return self._respond(session, session.resampled(None), selected)

  def on_new_everything(self, session: Session, selected: Any) -> tuple:
    return self._respond(session, session.reseeded(secrets.randbelow(MAX_SEED + 1)), selected,
                         seed=True)

  def on_new_object_z(self, session: Session, selected: Any) -> tuple:
    if selected not in [o.uid for o in session.objects]:
      return self._error(session, 'choose an object first')
    return self._respond(session, session.resampled(selected), selected)

  def on_delete(self, session: Session, selected: Any) -> tuple:
    if selected not in [o.uid for o in session.objects]:
      return self._error(session, 'choose an object first')
    return self._respond(session, session.without(selected), None, canvas=True)

  def on_category(self, category: str, session: Session, selected: Any) -> tuple:
    if selected not in [o.uid for o in session.objects]:
      return self._error(session, 'choose an object first')
    if session.objects[session.index_of(selected)].category == category:
      return self._respond(session, session, selected)
    return self._respond(session, session.with_category(selected, category), selected, canvas=True)

  def on_select(self, selected: Any, session: Session) -> Any:
    return self._selection(session, selected)['category']

  def on_clear(self, session: Session) -> tuple:
    return self._respond(session, session.with_objects([], name=session.name), None, canvas=True)

  def _load(self, session: Session, layout: layouts_lib.Layout, note: str) -> tuple:
    new = session.loaded(layout.name, list(zip(layout.categories, layout.boxes.tolist())))
    return self._respond(session, new, None, canvas=True, force=True, note=note)

  def on_example(self, index: int, session: Session) -> tuple:
    label, layout = self.examples[int(index)]
    return self._load(session, layout, f'Loaded example {label}.')

  def on_upload(self, path: str | None, session: Session) -> tuple:
    if not path:
      return self._error(session, 'no file was uploaded')
    name = os.path.basename(path)
    try:
      if os.path.getsize(path) > MAX_UPLOAD_BYTES:
        raise LayoutError(f'{name}: larger than {MAX_UPLOAD_BYTES >> 10} KiB, not a layout file')
      data = layouts_lib.read_layout_file(path, source=name)
      items = data if isinstance(data, list) else [data]
      layouts = layouts_lib.parse_layouts(  # the first: the one loaded (the others may not fit)
          items[:1], self.engine.gen.vocabulary, self.engine.gen.max_objects, source=name)
    except LayoutError as e:
      return self._error(session, str(e))
    more = f' (the first of {len(items)} layouts in the file)' if len(items) > 1 else ''
    return self._load(session, layouts[0], f'Loaded {name}: {layouts[0].name}{more}.')

  def on_save(self, session: Session) -> tuple[Any, str]:
    try:
      layout = self.engine.validate(session)
    except LayoutError as e:
      return gr.skip(), self.status_html(f'Nothing to save: {e}.', error=True)
    rendered = self.engine.render(session, layout)
    with self._save_lock:
      self._saves += 1
      number = self._saves
    folder = os.path.join(self.workdir, f'save{number:05d}')
    old = os.path.join(self.workdir, f'save{number - KEPT_SAVES:05d}')
    if os.path.isdir(old):
      for f in os.listdir(old):
        os.remove(os.path.join(old, f))
      os.rmdir(old)
    try:
      paths = write_downloads(folder, session, rendered)
    except OSError as e:  # disk full, a read-only temporary folder: nothing is left written
      return gr.skip(), self.status_html(f'Not saved: {e.strerror or e} ({folder}).', error=True)
    text = f'Save {number}: {session.name}.json, the image and the masks are below.'
    if session.fresh_draws:
      t = session.truncation if session.truncation > 0 else 0
      # The model's absolute path: the command is run from wherever the downloads went.
      text += (f' The same picture (to float rounding): python -m lama_jax.sample --workdir '
               f'{shlex.quote(os.path.abspath(self.model_path))} --step {self.engine.gen.step} '
               f'--layouts {session.name}.json --fix_z --seed {session.seed} --truncation {t:g} '
               f'--out {session.name}_sample')
    return paths, self.status_html(text)

  def api_generate(self, layout: str, seed: int = 0, truncation: float = 2.0) -> dict:
    """Generates one layout given as JSON text in the `sample` CLI's format.

    Returns {'image': the image as nested lists [H][W][3] of uint8, 'seconds': generation time}.
    """
    try:
      parsed = layouts_lib.parse_layouts(json.loads(layout), self.engine.gen.vocabulary,
                                         self.engine.gen.max_objects, source='layout')[0]
    except (json.JSONDecodeError, TypeError) as e:
      raise gr.Error(f'layout: not JSON: {e}') from None
    except LayoutError as e:
      raise gr.Error(str(e)) from None
    if not number_in(seed, 0, API_MAX_SEED, whole=True):  # not a silent int(1.5) == 1
      raise gr.Error(f'seed must be a whole number in [0, {API_MAX_SEED}], got {seed!r}')
    if not number_in(truncation, -math.inf, math.inf):
      raise gr.Error(f'truncation must be a number (0 or less: none), got {truncation!r}')
    session = Session(seed=int(seed), truncation=float(truncation)).loaded(
        parsed.name, list(zip(parsed.categories, parsed.boxes.tolist())))
    rendered = self.engine.render(session, parsed)
    return {'image': rendered.image.tolist(), 'seconds': rendered.seconds}
