"""The layout studio in a real browser: headless Chromium (Debian's package) driven by Playwright.

One studio server (`python -m lama_jax.studio`, on 127.0.0.1) serves every test of this module, on a
tiny random generator, or on the generator directory in $LAMA_STUDIO_TEST_MODEL (to measure the
latency of a full-size model; the server then compiles with XLA's default optimisation). Each test
opens its own page, hence its own session. Latencies go to stdout and `studio_latency.json` in the
test's tmp dir; the screenshot to `studio.png` there.
"""
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest

from lama_jax import layouts as layouts_lib
from lama_jax.datasets.vocabulary import load_vocabulary
from lama_jax.inference import generator_dir
from tests.test_inference import MAX_OBJECTS, _tiny_variables

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = os.environ.get('LAMA_STUDIO_CHROMIUM', '/usr/bin/chromium')
LATENCY_BUDGET_S = {64: 0.3, 128: 0.6}  # edit → image shown (issue 12)
STATUS_JS = "((document.querySelector('#studio-status-text') || {}).innerText || '')"

# Polls until the image panel shows a picture other than `prev`, decoded; returns [src, time].
WAIT_IMAGE_JS = """prev => new Promise((resolve, reject) => {
  const t0 = performance.now();
  const poll = () => {
    const img = document.querySelector('#studio-image img');
    if (img && img.src && img.src !== prev && img.complete && img.naturalWidth > 0) {
      img.decode().then(() => resolve([img.src, performance.now()]));
    } else if (performance.now() - t0 > 60000) {
      reject(new Error('no new image within 60 s'));
    } else {
      setTimeout(poll, 2);
    }
  };
  poll();
})"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
  if os.environ.get('LAMA_STUDIO_TEST_MODEL'):
    return os.environ['LAMA_STUDIO_TEST_MODEL']
  g, variables = _tiny_variables()
  out = tmp_path_factory.mktemp('studio') / 'tiny'
  generator_dir.save_generator_dir(str(out), g, variables, MAX_OBJECTS, 'shapes',
                                  load_vocabulary('shapes'))
  return str(out)


@pytest.fixture(scope='module')
def model_info(model_dir):
  with open(os.path.join(model_dir, 'generator.json')) as f:
    config = json.load(f)
  with open(os.path.join(model_dir, 'vocabulary.json')) as f:
    vocab = load_vocabulary(f.name)
  return config, vocab


@pytest.fixture(scope='module')
def server(model_dir, tmp_path_factory):
  """The studio as a user starts it; yields (url, process, log path)."""
  port = _free_port()
  env = dict(os.environ, GRADIO_ANALYTICS_ENABLED='False', PYTHONUNBUFFERED='1')
  if os.environ.get('LAMA_STUDIO_TEST_MODEL'):  # measuring: compile as a user's process would
    env['XLA_FLAGS'] = ''
  log = tmp_path_factory.mktemp('studio_server') / 'server.log'
  with open(log, 'w') as f:
    proc = subprocess.Popen([sys.executable, '-m', 'lama_jax.studio', '--model', model_dir,
                             '--port', str(port)], cwd=REPO, env=env, stdout=f,
                            stderr=subprocess.STDOUT)
  url = f'http://127.0.0.1:{port}/'
  deadline = time.time() + 300
  while True:
    if proc.poll() is not None:
      pytest.fail(f'the studio exited with {proc.returncode}:\n{log.read_text()}')
    try:
      with urllib.request.urlopen(url, timeout=5) as r:
        if r.status == 200:
          break
    except OSError:
      pass
    if time.time() > deadline:
      proc.kill()
      pytest.fail(f'the studio did not answer within 300 s:\n{log.read_text()}')
    time.sleep(0.5)
  yield url, proc, log
  proc.terminate()
  try:
    proc.wait(30)
  except subprocess.TimeoutExpired:
    proc.kill()


@pytest.fixture(scope='module')
def browser():
  if not os.path.exists(CHROMIUM):
    pytest.fail(f'{CHROMIUM} is missing: apt-get install chromium chromium-driver (see .ci/run)')
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  with sync_playwright() as p:
    b = p.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
    yield b
    b.close()


class Studio:
  """The studio page, driven like a user: mouse on the canvas, the label dialog, buttons."""

  def __init__(self, page, url):
    self.page = page
    self.url = url
    self.outside = []  # requests the page made to anywhere but the studio (none expected)
    page.on('request', lambda r: None if r.url.startswith((url, 'data:', 'blob:')) else
            self.outside.append(r.url))
    page.goto(url)
    page.wait_for_selector('#studio-canvas canvas')
    page.wait_for_function(
        "document.querySelector('#studio-canvas canvas').getBoundingClientRect().height > 100")

  def _point(self, x, y):
    bb = self.page.locator('#studio-canvas canvas').bounding_box()
    side = bb['height']  # the square background fills the canvas's height, centred
    return bb['x'] + (bb['width'] - side) / 2 + x * side, bb['y'] + y * side

  def image_src(self):
    return self.page.evaluate(
        "(document.querySelector('#studio-image img') || {}).src || ''")

  def _drag(self, start, end, before_release=None):
    mouse = self.page.mouse
    mouse.move(*self._point(*start))
    mouse.down()
    mouse.move(*self._point(*end), steps=8)
    if before_release:
      before_release()
    mouse.up()

  def _mark(self):
    self.page.evaluate('window.__t0 = performance.now()')

  def wait_image(self, prev):
    """Seconds from the last mark to a new image shown."""
    src, t1 = self.page.evaluate(WAIT_IMAGE_JS, prev)
    t0 = self.page.evaluate('window.__t0 ?? null')
    return src, None if t0 is None else (t1 - t0) / 1000

  def draw(self, box, category, expect_image=True):
    """Draws box (x0, y0, x1, y1) and picks its category; returns the latency of the choice."""
    self.page.click('#studio-canvas button[aria-label="Create box"]')
    prev = self.image_src()
    self._drag(box[:2], box[2:])
    field = self.page.locator('#model-box-edit input').first
    field.wait_for()
    field.fill(category)
    self._mark()
    field.press('Enter')
    self.page.locator('#model-box-edit').wait_for(state='detached')
    return self.wait_image(prev)[1] if expect_image else None

  def move(self, start, end):
    """Drags the box under `start` to `end` with the hand tool; returns the latency."""
    self.page.click('#studio-canvas button[aria-label="Drag boxes"]')
    prev = self.image_src()
    self._drag(start, end, before_release=self._mark)
    return self.wait_image(prev)[1]

  def status(self):
    return self.page.evaluate(STATUS_JS)

  def wait_status(self, pattern):
    self.page.wait_for_function(
        f'p => new RegExp(p).test({STATUS_JS})',
        arg=pattern, timeout=60000)
    return self.status()

  def save(self):
    """Clicks Save; returns {file name: bytes} of the files the page offers."""
    prev = self.status()
    self.page.click('#studio-save')
    self.page.wait_for_function(
        f"p => {{ const t = {STATUS_JS}; return t !== p && t.startsWith('Save '); }}", arg=prev,
        timeout=60000)
    self.page.wait_for_function(
        "() => document.querySelectorAll('#studio-files a[href]').length >= 5", timeout=60000)
    out = {}
    hrefs = self.page.eval_on_selector_all('#studio-files a[href]', 'as => as.map(a => a.href)')
    for href in hrefs:
      out[os.path.basename(href.split('?')[0])] = self.page.request.get(href).body()
    return out

  def upload(self, path):
    prev = self.status()
    self.page.locator('#studio-upload').locator('..').locator('input[type=file]').set_input_files(
        path)
    self.page.wait_for_function(
        f'p => {STATUS_JS} !== p', arg=prev,
        timeout=60000)
    return self.status()

  def info(self):
    return self.page.locator('#studio-info-text').inner_text()

  def compilations(self):
    return int(re.search(r'compilations since start-up: (\d+)', self.info()).group(1))


@pytest.fixture
def studio(server, browser):
  page = browser.new_page(viewport={'width': 1400, 'height': 1000})
  yield Studio(page, server[0])
  page.close()


def _categories(vocab, n):
  return [name for i, name in sorted(vocab.id_to_name.items())
          if i > 0 and not name.startswith('__')][:n]


def _npz(data):
  import io  # pylint: disable=g-import-not-at-top
  with np.load(io.BytesIO(data)) as f:
    return {k: f[k] for k in f.files}


def _file(files, suffix, name='studio'):
  return files[f'{name}{suffix}']


def test_draw_move_save(studio, model_info, tmp_path):
  config, vocab = model_info
  cat_a, cat_b = _categories(vocab, 2)
  latencies = {'choose category': [], 'move': []}
  latencies['choose category'].append(studio.draw((0.05, 0.05, 0.45, 0.45), cat_a))
  latencies['choose category'].append(studio.draw((0.55, 0.55, 0.95, 0.95), cat_b))
  assert studio.compilations() == 0
  before = studio.save()
  image_before = studio.page.request.get(studio.image_src()).body()

  latencies['move'].append(studio.move((0.25, 0.25), (0.35, 0.3)))  # box A by (+0.1, +0.05)
  after = studio.save()
  image_after = studio.page.request.get(studio.image_src()).body()
  assert image_after != image_before

  # The saved layout is the sample CLI's format, with A moved and B where it was.
  path = tmp_path / 'saved.json'
  path.write_bytes(_file(after, '.json'))
  (layout,) = layouts_lib.load_layouts(str(path), vocab, config['max_objects'])
  assert layout.categories == (cat_a, cat_b)
  np.testing.assert_allclose(layout.boxes, [[0.15, 0.1, 0.4, 0.4], [0.55, 0.55, 0.4, 0.4]],
                             atol=4 / 512)
  m0, m1 = _npz(_file(before, '_masks.npz')), _npz(_file(after, '_masks.npz'))
  assert np.abs(m1['mask'][0] - m0['mask'][0]).max() > 0.1  # the moved object's adapted mask
  np.testing.assert_allclose(m1['raw_mask'][1], m0['raw_mask'][1], atol=1e-6)  # B's z was kept
  assert _file(after, '_mask.png') != _file(before, '_mask.png')

  generation = []  # the generator call's share of each move, as the page reports it
  for dx in (-0.05, 0.05, -0.05, 0.05, -0.05):  # more moves, for the latency figure
    x = 0.3 + (0.05 if dx < 0 else 0.0)
    latencies['move'].append(studio.move((x, 0.3), (x + dx, 0.3)))
    generation.append(float(re.search(r'generated in (\d+) ms', studio.info()).group(1)) / 1000)
  shot = tmp_path / 'studio.png'
  studio.page.screenshot(path=str(shot), full_page=True)
  studio.move((0.75, 0.75), (0.75, 0.7))  # selects B (and focuses the canvas for the key)
  prev = studio.image_src()
  studio.page.keyboard.press('Delete')
  studio.wait_image(prev)
  studio.page.wait_for_function(
      "() => document.querySelector('#studio-info-text').innerText.startsWith('1 objects')")
  assert studio.compilations() == 0  # two objects, one, moves: one compiled program

  size = config['image_size']
  report = {'image_size': size, 'model': config.get('ch'), 'latency_s': latencies,
            'median_move_s': statistics.median(latencies['move']),
            'median_generation_s': statistics.median(generation), 'screenshot': str(shot)}
  (tmp_path / 'studio_latency.json').write_text(json.dumps(report, indent=1))
  print('\nstudio latency:', json.dumps(report))
  assert not studio.outside, studio.outside  # nothing fetched from the internet
  # Measuring a model ($LAMA_STUDIO_TEST_MODEL): the budget. The tiny CI model: a bound that
  # a recompiling or otherwise broken edit path misses by far, but a busy CI machine does not.
  measuring = bool(os.environ.get('LAMA_STUDIO_TEST_MODEL'))
  assert report['median_move_s'] <= (LATENCY_BUDGET_S.get(size, 1.0) if measuring else 1.0), report


def _saved_layout(studio, vocab, config, tmp_path):
  files = studio.save()
  (name,) = [n for n in files if n.endswith('.json')]
  path = tmp_path / name
  path.write_bytes(files[name])
  return layouts_lib.load_layouts(str(path), vocab, config['max_objects'])[0]


def test_bad_input_in_the_page(studio, server, model_info, tmp_path):
  config, vocab = model_info
  cat_a, cat_b = _categories(vocab, 2)
  studio.draw((0.1, 0.1, 0.4, 0.4), cat_a)
  image = studio.image_src()
  kept = _saved_layout(studio, vocab, config, tmp_path)
  broken, far = tmp_path / 'broken.json', tmp_path / 'far.json'
  broken.write_text('{"objects": [')
  far.write_text(json.dumps({'objects': [{'category': cat_a, 'bbox': [0.8, 0.1, 0.5, 0.2]}]}))
  assert 'broken.json: broken JSON at line 1, column 14' in studio.upload(broken)
  status = studio.upload(far)
  assert "far.json: layout 0 'layout', object 0 ('%s'): bbox [0.8, 0.1, 0.5, 0.2] is outside " \
      '[0, 1]' % cat_a in status and 'left as it was' in status
  studio.draw((0.5, 0.5, 0.9, 0.9), f'{cat_b}x', expect_image=False)  # typed, not picked
  assert f"unknown category '{cat_b}x'" in studio.wait_status('unknown category')
  assert studio.image_src() == image
  layout = _saved_layout(studio, vocab, config, tmp_path)
  assert layout.categories == kept.categories and np.array_equal(layout.boxes, kept.boxes)

  n = config['max_objects']
  for k in range(n - 1):  # fill the model up, then one box too many
    x = 0.05 + 0.9 * k / n
    studio.draw((x, 0.6, x + 0.5 / n, 0.8), cat_b)
  studio.draw((0.5, 0.85, 0.7, 0.95), cat_b, expect_image=False)
  assert f'{n + 1} objects, more than the model takes ({n})' in studio.wait_status('more than')
  assert len(_saved_layout(studio, vocab, config, tmp_path).categories) == n
  assert server[1].poll() is None and studio.compilations() == 0


def _rss_mib(pid):
  with open(f'/proc/{pid}/status') as f:
    return int(re.search(r'VmRSS:\s+(\d+) kB', f.read()).group(1)) / 1024


def test_concurrent_generate_requests(server, model_info):
  """50 requests at once through gradio's queue (the page's /generate API): all answered, memory
  flat from one round of 50 to the next."""
  from gradio_client import Client  # pylint: disable=g-import-not-at-top
  config, vocab = model_info
  url, proc, _ = server
  cats = _categories(vocab, 2)
  layout = json.dumps({'name': 'load', 'objects': [
      {'category': cats[0], 'bbox': [0.0, 0.0, 1.0, 0.5]},
      {'category': cats[1], 'bbox': [0.3, 0.4, 0.4, 0.4]}]})
  client = Client(url, max_workers=50, verbose=False, analytics_enabled=False,
                  download_files=False)
  rounds = []
  for r in range(2):
    done = []  # when each answer arrived
    t0 = time.perf_counter()
    jobs = [client.submit(layout, 1000 * r + i, 2.0, api_name='/generate',
                          result_callbacks=[lambda *_: done.append(time.perf_counter())])
            for i in range(50)]
    results = [job.result(timeout=900) for job in jobs]
    wall = time.perf_counter() - t0
    waits = sorted(t - t0 for t in done)
    rounds.append({'wall_s': wall, 'per_request_s': wall / 50, 'rss_mib': _rss_mib(proc.pid),
                   'answer_median_s': statistics.median(waits), 'answer_max_s': waits[-1]})
    size = config['image_size']
    images = [np.asarray(res['image'], np.uint8) for res in results]
    assert all(im.shape == (size, size, 3) for im in images)
    assert len({im.tobytes() for im in images}) == 50  # 50 seeds, 50 pictures
  print('\nstudio load:', json.dumps(rounds))
  assert rounds[1]['rss_mib'] - rounds[0]['rss_mib'] < 100, rounds
  assert proc.poll() is None


def _listening_addresses(port):
  """The local addresses of listening TCP sockets on `port` (from /proc/net/tcp and tcp6)."""
  found = []
  for table in ('/proc/net/tcp', '/proc/net/tcp6'):
    with open(table) as f:
      for line in f.readlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.rsplit(':', 1)
        if state == '0A' and int(hex_port, 16) == port:  # 0A: LISTEN
          found.append(address)
  return found


def test_listens_on_loopback_only_without_share_link(server):
  url, _, log = server
  port = int(url.rstrip('/').rsplit(':', 1)[1])
  assert _listening_addresses(port) == ['0100007F']  # 127.0.0.1, and nothing else
  text = log.read_text()
  assert f'Running on local URL:  http://127.0.0.1:{port}' in text and 'public URL' not in text


def test_controls(studio, model_info):
  """Examples, resampling buttons, seed, and the side panel's category choice, through the page."""
  config, vocab = model_info
  examples = studio.page.locator('#studio-examples button')
  assert examples.count() > 0  # the tiny model takes the shapes layouts of up to 4 objects
  prev = studio.image_src()
  name = examples.first.inner_text()
  examples.first.click()
  assert studio.wait_status('Loaded example') == f'Loaded example {name}.'
  studio.wait_image(prev)

  def click(button, expect):
    """Clicks `button`; waits until the object list's rows satisfy `expect` and a new image."""
    src = studio.image_src()
    studio.page.click(button)
    studio.page.wait_for_function(
        f"() => {{ const rows = document.querySelector('#studio-objects').innerText"
        f".trim().split('\\n'); const info = document.querySelector('#studio-info').innerText;"
        f" return {expect}; }}", timeout=60000)
    assert studio.wait_image(src)[0] != src

  click('#studio-new-object-z',  # the chosen object (the last one): its draw count goes up
        "rows.pop().endsWith('z draw 1') && rows.every(r => r.endsWith('z draw 0'))")
  click('#studio-new-image-z', "info.includes('image z draw 1:')")
  seed = studio.page.locator('#studio-seed input').input_value()
  click('#studio-new-all',  # a new seed: every draw fresh
        "rows.every(r => r.endsWith('z draw 0')) && info.includes('image z draw 0:')")
  assert studio.page.locator('#studio-seed input').input_value() != seed

  new = _categories(vocab, 3)[2]
  src = studio.image_src()
  field = studio.page.locator('#studio-category input')
  field.click()
  field.fill(new)
  field.press('Enter')
  studio.page.wait_for_function(
      "p => document.querySelector('#studio-objects').innerText.split('\\n').pop().includes(p)",
      arg=new, timeout=60000)
  studio.wait_image(src)
  assert new in studio.page.locator('#studio-legend').inner_text()
  assert studio.compilations() == 0


def test_seed_and_truncation_fields_refuse_bad_values(studio, model_info):
  """A seed of 1.5 was drawn as seed 2; -1, a seed past the maximum, a truncation past the slider or
  an emptied truncation field were gradio's toasts (the last quoting a TypeError), and the field
  kept showing a value the picture was not drawn with. Now: the status line, the field put back."""
  _, vocab = model_info
  studio.draw((0.1, 0.1, 0.5, 0.5), _categories(vocab, 1)[0])
  image = studio.image_src()
  fields = {'seed': '#studio-seed input', 'truncation': '#studio-truncation input[type=number]'}
  for name, value, message in [('seed', '1.5', 'got 1.5'), ('seed', '-1', 'got -1'),
                               ('truncation', '', 'got an empty field'),
                               ('truncation', '5', 'in [0, 3] (0: none), got 5')]:
    field = studio.page.locator(fields[name])
    before = field.input_value()
    field.fill(value)
    field.press('Enter')
    studio.page.keyboard.press('Tab')  # the truncation field applies on blur
    assert studio.wait_status(re.escape(message)).startswith('Not applied'), (name, value)
    studio.page.wait_for_function('([s, v]) => document.querySelector(s).value === v',
                                  arg=[fields[name], before])
    assert studio.image_src() == image and not studio.page.locator('.toast-body').count()
  assert 'seed 0,' in studio.info()
