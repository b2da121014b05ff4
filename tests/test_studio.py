"""The layout studio without a browser: canvas matching, sessions, the engine and the handlers."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from lama_jax import LayoutGenerator
from lama_jax.datasets.vocabulary import load_vocabulary
from lama_jax.inference import sampling
from lama_jax.layouts import LayoutError, parse_layouts
from lama_jax.studio import canvas as canvas_lib
from lama_jax.studio.canvas import CanvasBox
from lama_jax.studio.engine import Engine
from lama_jax.studio.session import Session
from tests.test_inference import MAX_OBJECTS, _tiny_variables

A = CanvasBox('sky', 0, 0, 512, 256)
B = CanvasBox('disk', 100, 300, 200, 400)
C = CanvasBox('star', 300, 300, 400, 420)


def _moved(box, dx=40, dy=0):
  return box._replace(xmin=box.xmin + dx, xmax=box.xmax + dx, ymin=box.ymin + dy,
                      ymax=box.ymax + dy)


@pytest.mark.parametrize('old, new, expected', [
    ([A, B], [A, B], [0, 1]),
    ([A, B], [C, A, B], [None, 0, 1]),  # a new box comes first
    ([C, A, B], [C, B], [0, 2]),  # deleted
    ([A, B, C], [A, _moved(B), C], [0, 1, 2]),  # moved
    ([A, B, C], [A, B._replace(label='star'), C], [0, 1, 2]),  # relabelled
    ([A, B], [_moved(A, 1), _moved(B, -1, 1)], [0, 1]),  # the canvas's rounding
    # Events coalesced by the page: star drawn, disk moved, sky deleted: nearest box.
    ([B, A], [C, _moved(B, 30)], [None, 0]),
    ([A, B, C], [C._replace(xmin=0), A, _moved(B, 30)], [None, 0, 1]),
    ([A, B], [], []),
])
def test_match(old, new, expected):
  assert canvas_lib.match(old, new) == expected


def test_normalised_boxes_stay_inside():
  box = CanvasBox('sky', 1, 3, 512, 511).normalised()
  assert box[0] + box[2] <= 1 + 1e-6 and box[1] + box[3] <= 511 / 512 + 1e-6
  assert canvas_lib.from_normalised('sky', box) == ('sky', 1, 3, 512, 511)


def test_session_keeps_ids_through_edits():
  s = Session().apply_canvas([A])
  s = s.apply_canvas([B._replace(label=''), A])  # drawn, its dialog open
  assert s.pending == 1 and [o.category for o in s.objects] == ['sky']
  s = s.apply_canvas([B, A])  # category chosen
  assert s.pending == 0 and [(o.uid, o.category) for o in s.objects] == [(0, 'sky'), (1, 'disk')]
  moved = s.apply_canvas([_moved(B), A])
  assert moved.objects[0] == s.objects[0] and moved.objects[1].uid == 1
  assert moved.objects[1].box[0] == pytest.approx(140 / 512, abs=1e-4)
  rounded = s.apply_canvas([_moved(B, 1), A])
  assert rounded.objects == s.objects  # ±1 px: the exact boxes are kept
  s = s.apply_canvas([C, B, A]).apply_canvas([C, A])  # add star, delete disk
  assert [(o.uid, o.category) for o in s.objects] == [(0, 'sky'), (2, 'star')]
  assert s.apply_canvas([C, A]).next_uid == 3  # ids are never reused


def test_session_layout_round_trip():
  s = Session().loaded('beach', [('sky', (0, 0, 1, 0.4)), ('disk', (0.1, 0.5, 0.2, 0.2))])
  assert s.fresh_draws and [o.uid for o in s.objects] == [0, 1]
  data = json.loads(json.dumps(s.layout_json()))
  (layout,) = parse_layouts(data, load_vocabulary('shapes'), 8)
  assert layout.name == 'beach' and layout.categories == ('sky', 'disk')
  assert s.canvas_boxes == (canvas_lib.from_normalised('disk', (0.1, 0.5, 0.2, 0.2)),
                            canvas_lib.from_normalised('sky', (0, 0, 1, 0.4)))
  assert not s.resampled(1).fresh_draws and not s.resampled(None).fresh_draws
  assert s.resampled(1).reseeded(5).fresh_draws


@pytest.fixture(scope='module')
def engine():
  g, variables = _tiny_variables()
  e = Engine(LayoutGenerator(g, variables, load_vocabulary('shapes'), MAX_OBJECTS))
  e.warm_up()
  return e


LAYOUT = [('sky', (0.0, 0.0, 1.0, 0.5)), ('grass', (0.0, 0.5, 1.0, 0.5)),
          ('disk', (0.05, 0.55, 0.25, 0.25)), ('square', (0.6, 0.1, 0.3, 0.3))]


def test_render_is_sample_fix_z(engine, tmp_path):
  """A loaded layout at seed S is what `sample --fix_z --seed S` writes for it."""
  s = Session(seed=3, truncation=1.5).loaded('scene', LAYOUT)
  out = engine.render(s)
  layouts = parse_layouts(s.layout_json(), engine.gen.vocabulary, MAX_OBJECTS)
  sampling.sample_layouts(engine.gen, layouts, str(tmp_path), 1, 3, 1.5, fix_z=True)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'scene_0.png')), out.image)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'scene_0_mask.png')), out.mask)


def test_moving_one_object_keeps_the_others(engine):
  s = Session(seed=1).loaded('scene', LAYOUT)
  before = engine.render(s)
  disk = s.objects[2]
  moved = s.apply_canvas([canvas_lib.from_normalised(disk.category, (0.35, 0.55, 0.25, 0.25))
                          if b.label == 'disk' else b for b in s.canvas_boxes])
  assert [o.uid for o in moved.objects] == [0, 1, 2, 3]
  after = engine.render(moved)
  for j in (0, 1, 3):
    np.testing.assert_array_equal(after.raw_masks[j], before.raw_masks[j])
  assert np.abs(after.masks[2] - before.masks[2]).max() > 0.1
  assert np.abs(after.image.astype(int) - before.image).max() > 0
  # Resampling one object's z changes its mask only; the image z leaves every mask's shape alone.
  one = engine.render(s.resampled(3))
  assert np.abs(one.raw_masks[3] - before.raw_masks[3]).max() > 1e-3
  np.testing.assert_array_equal(one.raw_masks[:3], before.raw_masks[:3])
  im = engine.render(s.resampled(None))
  np.testing.assert_array_equal(im.raw_masks, before.raw_masks)
  assert np.abs(im.image.astype(int) - before.image).max() > 0


def test_no_recompilation_while_objects_come_and_go(engine):
  before = engine.compilations  # other tests may have compiled programs of their own (sample)
  s = Session(seed=2)
  for n in (1, 2, 3, 4, 2, 1):
    s = s.loaded('scene', LAYOUT[:n])
    engine.render(s.resampled(0).resampled(None))
  engine.render(Session(seed=7, truncation=0.0).loaded('scene', LAYOUT))
  for truncation in (1.3, 0.7):  # the slider: a new truncation value draws z without compiling
    engine.render(Session(seed=8, truncation=truncation).loaded('scene', LAYOUT).resampled(1))
  assert engine.compilations == before


@pytest.mark.parametrize('objects, expected', [
    (LAYOUT + [('star', (0.1, 0.1, 0.1, 0.1))], '5 objects, more than the model takes (4)'),
    ([('skyy', (0, 0, 1, 1))], "object 0 ('skyy'): unknown category 'skyy' for shapes"),
    ([('sky', (0.2, 0.2, 0.0, 0.3))], 'zero or negative size'),
    ([('sky', (0.8, 0.2, 0.4, 0.3))], 'outside [0, 1]'),
    ([], 'the layout is empty'),
])
def test_validation_messages(engine, objects, expected):
  s = Session().loaded('x', objects)
  with pytest.raises(LayoutError) as e:
    engine.validate(s)
  assert expected in str(e.value) and "layout 0" not in str(e.value), str(e.value)


@pytest.fixture(scope='module')
def app(engine):
  from lama_jax.studio.app import StudioApp  # pylint: disable=g-import-not-at-top
  return StudioApp(engine, 'runs/tiny', examples_dir='data/layouts')


def _outputs(out):
  from lama_jax.studio.app import OUTPUTS  # pylint: disable=g-import-not-at-top
  skip = {'__type__': 'update'}
  return {k: v for k, v in zip(OUTPUTS, out, strict=True)
          if not (isinstance(v, dict) and v == skip)}


def _canvas(*boxes):
  return {'image': 'canvas.png', 'boxes': [dict(label=b.label, xmin=b.xmin, ymin=b.ymin,
                                                xmax=b.xmax, ymax=b.ymax) for b in boxes]}


def test_app_canvas_edits(app):
  s = Session()
  out = _outputs(app.on_canvas(_canvas(B._replace(label='')), s, None))
  assert 'image' not in out and 'category' in out['status']  # waits for the category
  out = _outputs(app.on_canvas(_canvas(B), out['state'], None))
  assert out['image'].shape == (64, 64, 3) and out['raw'].shape == (64, 64, 3)
  assert 'disk' in out['legend'] and 'compilations since start-up: 0' in out['info']
  s = out['state']
  assert _outputs(app.on_canvas(_canvas(_moved(B, 1)), s, None)).keys() == {'state'}  # an echo
  # Unknown category and too many objects: message, old layout back on the canvas, state kept.
  out = _outputs(app.on_canvas(_canvas(B._replace(label='skyy')), s, None))
  assert "unknown category 'skyy' for shapes (did you mean 'sky'?)" in out['status']
  assert 'studio-error' in out['status'] and out['state'].objects == s.objects
  assert [b['label'] for b in out['canvas']['boxes']] == ['disk'] and 'image' not in out
  boxes = [CanvasBox('star', 10 * i, 10 * i, 10 * i + 50, 10 * i + 50) for i in range(4)] + [B]
  out = _outputs(app.on_canvas(_canvas(*boxes), s, None))
  assert 'more than the model takes (4)' in out['status'] and out['state'].objects == s.objects



def test_app_box_left_without_a_category_blocks_nothing(app):
  """Enter on an empty category field closes the canvas's dialog and leaves a box without a label:
  every edit and button then answered 'Pick a category for the new box.' and generated nothing (the
  page seemed frozen); now the others are generated and the note says how to label it. A dialog
  cancelled (Escape: the box goes) takes its note away."""
  s = _outputs(app.on_canvas(_canvas(B), Session(), None))['state']
  out = _outputs(app.on_canvas(_canvas(C._replace(label=''), B), s, None))
  assert 'double-click the box' in out['status'] and 'image' not in out  # nothing new to draw
  pending = out['state']
  out = _outputs(app.on_new_image_z(pending, None))
  assert out['image'].shape == (64, 64, 3) and 'image z draw 1' in out['info']
  assert 'double-click the box' in out['status']
  out = _outputs(app.on_canvas(_canvas(C._replace(label=''), _moved(B)), pending, None))
  assert out['image'] is not None and [o.category for o in out['state'].objects] == ['disk']
  out = _outputs(app.on_canvas(_canvas(B), pending, None))  # cancelled
  assert out.keys() == {'state', 'status'} and out['status'] == ''


def _upload(app, tmp_path, content, name='layout.json'):
  path = tmp_path / name
  path.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
  s = Session(seed=4).loaded('kept', LAYOUT[:2])
  out = _outputs(app.on_upload(str(path), s))
  return s, out


@pytest.mark.parametrize('content, expected', [
    (b'{"objects": [', 'layout.json: broken JSON at line 1, column 14'),
    (b'\xff\xfe\x00', 'layout.json: not a text (UTF-8) file'),
    (b'42', 'not a layout or a list of layouts'),
    ({'objects': [{'category': 'sky', 'bbox': [0, 0, 1, 1]}] * 5}, 'more than the model takes'),
    ({'objects': [{'category': 'skyy', 'bbox': [0, 0, 1, 1]}]}, "unknown category 'skyy'"),
    ({'objects': [{'category': 'sky', 'bbox': [0.5, 0, 0, 1]}]}, 'zero or negative size'),
    ({'objects': [{'category': 'sky', 'bbox': [0.5, 0, 0.6, 1]}]}, 'outside [0, 1]'),
])
def test_app_bad_upload_keeps_layout(app, tmp_path, content, expected):
  s, out = _upload(app, tmp_path, content)
  assert out.keys() == {'state', 'status'}, out.keys()  # canvas and pictures untouched
  assert out['state'] == s and expected in out['status'], out['status']
  assert 'studio-error' in out['status'] and 'left as it was' in out['status']


def test_app_reads_layout_files_with_a_byte_order_mark(engine, tmp_path):
  """Upload and the examples read UTF-8 with a BOM (editors write one), as `sample` does."""
  from lama_jax.studio.app import StudioApp  # pylint: disable=g-import-not-at-top
  layout = {'name': 'bom', 'objects': [{'category': 'sky', 'bbox': [0, 0, 1, 0.5]}]}
  (tmp_path / 'bom.json').write_bytes(b'\xef\xbb\xbf' + json.dumps(layout).encode())
  app = StudioApp(engine, 'runs/tiny', examples_dir=str(tmp_path))
  assert [n for n, _ in app.examples] == ['bom.json: bom']
  out = _outputs(app.on_upload(str(tmp_path / 'bom.json'), Session()))
  assert 'Loaded bom.json: bom.' in out['status'] and out['state'].name == 'bom'


def test_app_upload_examples_save_and_api(app, tmp_path):
  layouts = [{'name': 'a', 'objects': [{'category': 'sky', 'bbox': [0, 0, 1, 0.5]}]},
             {'name': 'b', 'objects': [{'category': 'disk', 'bbox': [0.1, 0.1, 0.5, 0.5]}]}]
  _, out = _upload(app, tmp_path, layouts)
  assert 'Loaded layout.json: a (the first of 2 layouts in the file)' in out['status']
  assert out['state'].name == 'a' and [b['label'] for b in out['canvas']['boxes']] == ['sky']
  # The layouts after the first are not loaded: one the model cannot take does not refuse the file
  # (data/layouts/shapes.json was refused for its layout 1, 'beach', of 5 objects).
  _, out = _upload(app, tmp_path, layouts[:1] + [{'name': 'big', 'objects': [
      {'category': 'sky', 'bbox': [0, 0, 1, 1]}] * 5}])
  assert 'Loaded layout.json: a (the first of 2 layouts in the file)' in out['status']
  names = [n for n, _ in app.examples]  # shapes layouts with at most 4 objects
  assert 'shapes.json: disk_on_grass' in names and 'shapes.json: beach' not in names
  assert not any(n.startswith('coco.json') for n in names)
  s = _outputs(app.on_example(names.index('shapes_move.json: move_0'), Session()))['state']
  paths, status = app.on_save(s)
  assert [p.rsplit('/', 1)[1] for p in paths] == [
      'move_0.json', 'move_0.png', 'move_0_mask.png', 'move_0_raw_mask.png', 'move_0_masks.npz']
  assert '--layouts move_0.json --fix_z --seed 0 --truncation 2' in status
  with np.load(paths[-1]) as f:
    assert f['mask'].shape == f['raw_mask'].shape == (4, 64, 64)
  out = app.api_generate(json.dumps(s.layout_json()), seed=0, truncation=2.0)
  np.testing.assert_array_equal(np.asarray(out['image'], np.uint8),
                                np.asarray(Image.open(paths[1])))



def test_save_that_cannot_write_says_so_and_leaves_nothing(engine, monkeypatch):
  """A disk that fills up during Save: the OSError reached gradio (a bare 'Error' toast, the status
  line unchanged) and the files written before it stayed in a save folder; now the status says it,
  and no save folder is left."""
  import errno  # pylint: disable=g-import-not-at-top
  from lama_jax import files  # pylint: disable=g-import-not-at-top
  from lama_jax.studio.app import StudioApp  # pylint: disable=g-import-not-at-top
  app = StudioApp(engine, 'runs/tiny', examples_dir=None)
  write_png = files.write_png

  def full_after_one(path, image):
    if os.path.basename(path) != 'scene.png':
      raise OSError(errno.ENOSPC, 'No space left on device', path)
    write_png(path, image)

  monkeypatch.setattr(files, 'write_png', full_after_one)
  paths, status = app.on_save(Session().loaded('scene', LAYOUT[:2]))
  assert paths == {'__type__': 'update'}  # the saved files offered before stay as they were
  assert 'Not saved: No space left on device' in status and 'studio-error' in status
  assert os.listdir(app.workdir) == ['canvas.png']
  monkeypatch.undo()
  paths, status = app.on_save(Session().loaded('scene', LAYOUT[:2]))
  assert status.startswith('<div id="studio-status-text">Save 2: scene.json') and all(
      os.path.isfile(p) for p in paths)


def test_save_prints_a_sample_command_that_parses(engine):
  """The printed `sample` command has every required flag (--out) and a quoted model path."""
  import html  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  import shlex  # pylint: disable=g-import-not-at-top
  from lama_jax import cli  # pylint: disable=g-import-not-at-top
  from lama_jax import sample  # pylint: disable=g-import-not-at-top
  from lama_jax.studio.app import StudioApp  # pylint: disable=g-import-not-at-top
  app = StudioApp(engine, 'runs/my model', examples_dir=None)
  _, status = app.on_save(Session(seed=3).loaded('scene', LAYOUT[:2]))
  command = re.search(r'python -m lama_jax\.sample (.*)</div>', html.unescape(status))[1]
  cli.parse(sample.FLAGS, shlex.split(command))
  # Absolute: it was 'runs/my model', found only from the folder the studio was started in.
  assert sample.FLAGS.workdir == os.path.abspath('runs/my model') and sample.FLAGS.layouts == 'scene.json'
  assert sample.FLAGS.seed == 3 and sample.FLAGS.fix_z and sample.FLAGS.out
  # The checkpoint the studio draws from, not whichever is latest when the command is run.
  assert sample.FLAGS.step == engine.gen.step


@pytest.mark.parametrize('seed, truncation, expected', [
    (1.5, 2.0, 'seed must be a whole number in [0, 4294967295], got 1.5'),  # was used as seed 1
    (-1, 2.0, 'seed must be a whole number'),  # was an uncaught LayoutError (a server traceback)
    (2**32, 2.0, 'seed must be a whole number'),
    ('3', 2.0, "got '3'"),
    (0, float('nan'), 'truncation must be a number'),  # was drawn untruncated
    (0, 'x', 'truncation must be a number'),
])
def test_api_generate_refuses_bad_seed_and_truncation(app, seed, truncation, expected):
  import gradio as gr  # pylint: disable=g-import-not-at-top
  layout = json.dumps(Session().loaded('x', LAYOUT[:1]).layout_json())
  with pytest.raises(gr.Error) as e:
    app.api_generate(layout, seed=seed, truncation=truncation)
  assert expected in str(e.value), str(e.value)


@pytest.mark.parametrize('argv, expected', [
    ([], 'error: flag --model=None'),
    (['--model', '/nonexistent/run'], 'error: /nonexistent/run is not a directory.'),
    (['--model', 'runs/x', '--port', '70000'], 'error: --port must lie in 1..65535, got 70000'),
    # A mistyped --examples was ignored: the page came up without examples, saying nothing.
    (['--model', 'runs/x', '--examples', 'data/layout'], 'error: --examples data/layout: no such '
     'folder'),
    (['--model', 'runs/x', '--examples', 'data/layouts/shapes.json'],
     'error: --examples data/layouts/shapes.json: not a folder'),
    # Was taken, then the model's loader said "has no step -1" (sample refuses it at the flag).
    (['--model', 'runs/x', '--step', '-1'], 'error: flag --step=-1: -1 is not a non-negative'),
])
def test_command_errors_are_one_line(argv, expected, capsys):
  from lama_jax.studio.__main__ import main  # pylint: disable=g-import-not-at-top
  assert main(argv) == 2
  err = capsys.readouterr().err
  assert err.startswith(expected) and err.count('\n') == 1, err


def test_unusable_address_is_one_line_before_loading(capsys):
  """A port in use or a host that is no address here: one line, before the model loads (gradio's
  own error came after the compile, as a traceback)."""
  import socket  # pylint: disable=g-import-not-at-top
  from lama_jax.studio.__main__ import main  # pylint: disable=g-import-not-at-top
  with socket.socket() as busy:
    busy.bind(('127.0.0.1', 0))
    busy.listen()
    port = busy.getsockname()[1]
    assert main(['--model', '/nonexistent/run', '--port', str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f'error: --port {port}: already in use on 127.0.0.1 (choose another --port)\n'
  assert main(['--model', '/nonexistent/run', '--host', '999.1.1.1']) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: --host 999.1.1.1: not an address to listen on') and err.count(
      '\n') == 1, err


@pytest.mark.parametrize('flags, expected', [
    ('', '--xla_cpu_experimental_ynn_fusion_type='),
    ('--xla_cpu_experimental_ynn_fusion_type=individual_convolution',
     '--xla_cpu_experimental_ynn_fusion_type=individual_convolution'),
    ('--xla_backend_optimization_level=0',
     '--xla_backend_optimization_level=0 --xla_cpu_experimental_ynn_fusion_type='),
])
def test_studio_keeps_eigen_convolutions_unless_the_user_chose(flags, expected):
  """One-image sampling is faster on XLA's Eigen convolutions now (README, "Layout studio"): the
  studio keeps the package's choice; a flag the user set is left as it is."""
  out = subprocess.run([sys.executable, '-c', 'import os, lama_jax.studio; '
                        'print(os.environ["XLA_FLAGS"])'], env=dict(os.environ, XLA_FLAGS=flags),
                       capture_output=True, text=True, check=True, cwd=os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__))))
  assert out.stdout.strip() == expected


def test_gradios_share_hint_is_left_out_of_the_studios_output():
  """gradio said '* To create a public link, set `share=True` in `launch()`.'; the studio's users
  give --share."""
  import io  # pylint: disable=g-import-not-at-top
  from lama_jax.studio import page  # pylint: disable=g-import-not-at-top  (gradio: seconds)
  out = io.StringIO()
  filtered = page._WithoutGradiosShareHint(out)  # pylint: disable=protected-access
  print('* Running on local URL:  http://127.0.0.1:7860', file=filtered)
  print('* To create a public link, set `share=True` in `launch()`.', file=filtered)
  print('other', file=filtered)
  assert out.getvalue() == '* Running on local URL:  http://127.0.0.1:7860\nother\n'
