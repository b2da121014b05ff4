"""The studio page's layout and event wiring (the handlers are `StudioApp`'s)."""
import contextlib
import html
import io
import sys
from typing import Any

from lama_jax.studio import app as app_lib  # first: sets gradio's environment before gradio loads
from lama_jax.studio.app import StudioApp, gr
from gradio_image_annotation import image_annotator  # pylint: disable=wrong-import-order
from lama_jax.studio.session import Session

PANEL_HEIGHT = 230  # pixels; the pictures are scaled up without smoothing (CSS)


def _header(app: StudioApp) -> str:
  g = app.engine.gen
  return (f'## LAMA layout studio\n`{html.escape(app.model_path)}`: {g.dataset}, '
          f'{g.image_size}×{g.image_size}, up to {g.max_objects} objects, step {g.step}. '
          'Raw masks: each object\'s mask placed in its box; adapted masks: after LAMA\'s '
          'locality-aware mask adaption, which removes the overlaps.')


def _left_column(app: StudioApp) -> dict[str, Any]:
  """Canvas, help, examples, load/save/clear and the saved files."""
  engine, c = app.engine, {}
  c['canvas'] = image_annotator(
      {'image': app.background, 'boxes': []}, label='Layout', elem_id='studio-canvas',
      label_list=engine.categories, label_colors=[engine.color_hex(n) for n in engine.categories],
      image_type='pil', sources=[], show_clear_button=False, show_remove_button=True,
      show_download_button=False, box_min_size=4, handle_size=6)
  # The handlers read the boxes only: skip decoding the background on every edit (5–18 ms).
  c['canvas'].preprocess_image = lambda image: None
  gr.Markdown(app_lib.HELP)
  if app.examples:
    c['examples'] = gr.Dataset(components=['textbox'], samples=[[n] for n, _ in app.examples],
                               type='index', label='Examples (click to load)',
                               samples_per_page=20, elem_id='studio-examples')
  with gr.Row():
    c['upload'] = gr.UploadButton('Load layout JSON', file_types=['.json'], size='sm',
                                  elem_id='studio-upload')
    c['save'] = gr.Button('Save layout, image and masks', size='sm', elem_id='studio-save')
    c['clear'] = gr.Button('Clear', size='sm', elem_id='studio-clear')
  c['files'] = gr.File(label='Saved files', file_count='multiple', interactive=False, height=140,
                       elem_id='studio-files')
  return c


def _right_column(app: StudioApp) -> dict[str, Any]:
  """The three pictures, legend, messages, noise controls and the object list."""
  c = {}
  with gr.Row():
    kw = dict(format='png', interactive=False, height=PANEL_HEIGHT, buttons=['download'])
    c['image'] = gr.Image(label='Image', elem_id='studio-image', **kw)
    c['raw'] = gr.Image(label='Raw masks', elem_id='studio-raw', **kw)
    c['mask'] = gr.Image(label='Adapted masks', elem_id='studio-mask', **kw)
  c['legend'] = gr.HTML(elem_id='studio-legend')
  c['status'] = gr.HTML(app.status_html(app_lib.START),
                        elem_id='studio-status')
  c['info'] = gr.HTML(elem_id='studio-info')
  with gr.Row():
    c['seed'] = gr.Number(0, label='Seed', precision=0, minimum=0, maximum=app_lib.MAX_SEED,
                          elem_id='studio-seed')
    c['truncation'] = gr.Slider(0.0, app_lib.MAX_TRUNCATION, value=2.0, step=0.1,
                                label='Truncation (0: none)', elem_id='studio-truncation')
  with gr.Row():
    c['new_image_z'] = gr.Button('New image z', size='sm', elem_id='studio-new-image-z')
    c['new_all'] = gr.Button('New everything (new seed)', size='sm', elem_id='studio-new-all')
  with gr.Row():
    c['selected'] = gr.Dropdown([], label='Object', elem_id='studio-object', scale=1)
    c['category'] = gr.Dropdown(app.engine.categories, value=None, scale=2, filterable=True,
                                label='Its category (type to search)', elem_id='studio-category')
  with gr.Row():
    c['new_object_z'] = gr.Button('New z for this object', size='sm',
                                  elem_id='studio-new-object-z')
    c['delete'] = gr.Button('Delete this object', size='sm', elem_id='studio-delete')
  c['objects'] = gr.HTML(app.objects_html(Session()), elem_id='studio-objects')
  return c


def _wire(app: StudioApp, c: dict[str, Any]) -> None:
  """The events: every generating one in the shared 'generate' queue slot."""
  common = dict(outputs=[c[k] for k in app_lib.OUTPUTS], concurrency_id='generate',
                concurrency_limit=1, api_visibility='private')
  state, selected = c['state'], c['selected']
  c['canvas'].change(app.on_canvas, [c['canvas'], state, selected], trigger_mode='always_last',
                     show_progress='hidden', **common)
  raw = dict(preprocess=False)  # the handlers check the values themselves (StudioApp.on_seed)
  c['seed'].change(app.on_seed, [c['seed'], state, selected], trigger_mode='always_last', **raw,
                   **common)
  c['truncation'].release(app.on_truncation, [c['truncation'], state, selected], **raw, **common)
  c['new_image_z'].click(app.on_new_image_z, [state, selected], **common)
  c['new_all'].click(app.on_new_everything, [state, selected], **common)
  c['new_object_z'].click(app.on_new_object_z, [state, selected], **common)
  c['delete'].click(app.on_delete, [state, selected], **common)
  c['category'].input(app.on_category, [c['category'], state, selected], **common)
  selected.input(app.on_select, [selected, state], c['category'], api_visibility='private')
  c['clear'].click(app.on_clear, [state], **common)
  c['upload'].upload(app.on_upload, [c['upload'], state], **common)
  c['save'].click(app.on_save, [state], [c['files'], c['status']], concurrency_id='generate',
                  concurrency_limit=1, api_visibility='private')
  if 'examples' in c:
    c['examples'].click(app.on_example, [c['examples'], state], **common)
  gr.api(app.api_generate, api_name='generate', concurrency_id='generate', concurrency_limit=1)


def build(app: StudioApp) -> gr.Blocks:
  """The page: canvas and files on the left; pictures, controls and objects on the right."""
  with gr.Blocks(title='LAMA layout studio', delete_cache=(600, 1800)) as blocks:
    components = {'state': gr.State(Session())}
    gr.Markdown(_header(app))
    with gr.Row():
      with gr.Column(scale=5, min_width=420):
        components.update(_left_column(app))
      with gr.Column(scale=6):
        components.update(_right_column(app))
    _wire(app, components)
  return blocks


class _WithoutGradiosShareHint(io.TextIOBase):
  """stdout less gradio's '* To create a public link, set `share=True` in `launch()`.': the
  studio's users give --share, not a Python argument."""

  def __init__(self, out):
    super().__init__()
    self.out = out
    self.dropped = False  # print() writes the line's end apart: drop it too

  def write(self, text: str) -> int:
    dropped, self.dropped = self.dropped, 'set `share=True` in `launch()`' in text
    if not self.dropped and not (dropped and text == '\n'):
      self.out.write(text)
    return len(text)

  def flush(self) -> None:
    self.out.flush()


def launch(app: StudioApp, host: str, port: int, share: bool = False) -> None:
  """Serves the page until interrupted; queue bounded by `QUEUE_SIZE` waiting requests."""
  blocks = build(app)
  blocks.queue(max_size=app_lib.QUEUE_SIZE)
  with contextlib.redirect_stdout(_WithoutGradiosShareHint(sys.stdout)):
    blocks.launch(server_name=host, server_port=port, share=share, css=app_lib.CSS,
                  allowed_paths=[app.workdir], show_error=True, footer_links=['api'],
                  theme=gr.themes.Default(font=['system-ui', 'sans-serif'],
                                          font_mono=['ui-monospace', 'monospace']),
                  prevent_thread_lock=True)
  if not share:
    print('* For a public link, start the studio with --share.', flush=True)
  blocks.block_thread()


def serve(model: str, step: int | None, host: str, port: int, share: bool,
          examples_dir: str | None) -> None:
  """Loads the model, compiles it, and serves the page until interrupted.

  Raises:
    GeneratorDirError: `model` is not a generator directory or training workdir.
  """
  from lama_jax import LayoutGenerator  # pylint: disable=g-import-not-at-top
  from lama_jax.studio.engine import Engine  # pylint: disable=g-import-not-at-top
  gen = LayoutGenerator.load(model, step)
  engine = Engine(gen)
  print(f'Loaded {model} (step {gen.step}, {gen.image_size}x{gen.image_size}, up to '
        f'{gen.max_objects} objects); compiling...', flush=True)
  print(f'Compiled in {engine.warm_up():.1f} s.', flush=True)
  launch(StudioApp(engine, model, examples_dir), host, port, share)
