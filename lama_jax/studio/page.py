"""The studio page's layout and event wiring (the handlers are `StudioApp`'s)."""
import html

from lama_jax.studio import app as app_lib
from lama_jax.studio.app import StudioApp, gr, image_annotator
from lama_jax.studio.session import Session

PANEL_HEIGHT = 230  # pixels; the pictures are scaled up without smoothing (CSS)


def _header(app: StudioApp) -> str:
  g = app.engine.gen
  return (f'## LAMA layout studio\n`{html.escape(app.model_path)}`: {g.dataset}, '
          f'{g.image_size}×{g.image_size}, up to {g.max_objects} objects, step {g.step}. '
          'Raw masks: each object\'s mask placed in its box; adapted masks: after LAMA\'s '
          'locality-aware mask adaption, which removes the overlaps.')


def build(app: StudioApp) -> gr.Blocks:
  """The page: canvas and help on the left; pictures, controls, objects and files on the right."""
  engine = app.engine
  with gr.Blocks(title='LAMA layout studio', delete_cache=(600, 1800)) as blocks:
    state = gr.State(Session())
    gr.Markdown(_header(app))
    with gr.Row():
      with gr.Column(scale=5, min_width=420):
        canvas = image_annotator(
            {'image': app.background, 'boxes': []}, label='Layout', elem_id='studio-canvas',
            label_list=engine.categories,
            label_colors=[engine.color_hex(c) for c in engine.categories],
            image_type='pil', sources=[], show_clear_button=False, show_remove_button=True,
            show_download_button=False, box_min_size=4, handle_size=6)
        # The handlers read the boxes only: skip decoding the background on every edit (5–18 ms).
        canvas.preprocess_image = lambda image: None
        gr.Markdown(app_lib.HELP)
        if app.examples:
          examples = gr.Dataset(components=['textbox'], samples=[[n] for n, _ in app.examples],
                                type='index', label='Examples (click to load)',
                                samples_per_page=20, elem_id='studio-examples')
        with gr.Row():
          upload = gr.UploadButton('Load layout JSON', file_types=['.json'], size='sm',
                                   elem_id='studio-upload')
          save = gr.Button('Save layout, image and masks', size='sm', elem_id='studio-save')
          clear = gr.Button('Clear', size='sm', elem_id='studio-clear')
        files = gr.File(label='Saved files', file_count='multiple', interactive=False,
                        height=140, elem_id='studio-files')
      with gr.Column(scale=6):
        with gr.Row():
          kw = dict(format='png', interactive=False, height=PANEL_HEIGHT, buttons=['download'])
          image = gr.Image(label='Image', elem_id='studio-image', **kw)
          raw = gr.Image(label='Raw masks', elem_id='studio-raw', **kw)
          mask = gr.Image(label='Adapted masks', elem_id='studio-mask', **kw)
        legend = gr.HTML(elem_id='studio-legend')
        status = gr.HTML(app.status_html('Draw a box on the canvas to start.'),
                         elem_id='studio-status')
        info = gr.HTML(elem_id='studio-info')
        with gr.Row():
          seed = gr.Number(0, label='Seed', precision=0, minimum=0, maximum=app_lib.MAX_SEED,
                           elem_id='studio-seed')
          truncation = gr.Slider(0.0, 3.0, value=2.0, step=0.1, label='Truncation (0: none)',
                                 elem_id='studio-truncation')
        with gr.Row():
          new_image_z = gr.Button('New image z', size='sm', elem_id='studio-new-image-z')
          new_all = gr.Button('New everything (new seed)', size='sm', elem_id='studio-new-all')
        with gr.Row():
          selected = gr.Dropdown([], label='Object', elem_id='studio-object', scale=1)
          category = gr.Dropdown(engine.categories, value=None, label='Its category (type to '
                                 'search)', filterable=True, elem_id='studio-category', scale=2)
        with gr.Row():
          new_object_z = gr.Button('New z for this object', size='sm',
                                   elem_id='studio-new-object-z')
          delete = gr.Button('Delete this object', size='sm', elem_id='studio-delete')
        objects = gr.HTML(app.objects_html(Session()), elem_id='studio-objects')
    components = dict(state=state, canvas=canvas, image=image, raw=raw, mask=mask, legend=legend,
                      objects=objects, status=status, info=info, selected=selected,
                      category=category, seed=seed)
    outputs = [components[k] for k in app_lib.OUTPUTS]
    common = dict(outputs=outputs, concurrency_id='generate', concurrency_limit=1,
                  api_visibility='private')
    canvas.change(app.on_canvas, [canvas, state, selected], trigger_mode='always_last',
                  show_progress='hidden', **common)
    seed.change(app.on_seed, [seed, state, selected], trigger_mode='always_last', **common)
    truncation.release(app.on_truncation, [truncation, state, selected], **common)
    new_image_z.click(app.on_new_image_z, [state, selected], **common)
    new_all.click(app.on_new_everything, [state, selected], **common)
    new_object_z.click(app.on_new_object_z, [state, selected], **common)
    delete.click(app.on_delete, [state, selected], **common)
    category.input(app.on_category, [category, state, selected], **common)
    selected.input(app.on_select, [selected, state], category, api_visibility='private')
    clear.click(app.on_clear, [state], **common)
    upload.upload(app.on_upload, [upload, state], **common)
    save.click(app.on_save, [state], [files, status], concurrency_id='generate',
               concurrency_limit=1, api_visibility='private')
    if app.examples:
      examples.click(app.on_example, [examples, state], **common)
    gr.api(app.api_generate, api_name='generate', concurrency_id='generate', concurrency_limit=1)
  return blocks


def launch(app: StudioApp, host: str, port: int, share: bool = False, **kwargs) -> None:
  """Serves the page until interrupted; queue bounded by `QUEUE_SIZE` waiting requests."""
  blocks = build(app)
  blocks.queue(max_size=app_lib.QUEUE_SIZE)
  blocks.launch(server_name=host, server_port=port, share=share, css=app_lib.CSS,
                allowed_paths=[app.workdir], show_error=True, footer_links=['api'],
                theme=gr.themes.Default(font=['system-ui', 'sans-serif'],
                                        font_mono=['ui-monospace', 'monospace']), **kwargs)


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
