"""The evaluate CLI and the evaluation library on a tiny shapes set and a tiny random generator."""
import json
import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from lama_jax import evaluate
from lama_jax import evaluation
from lama_jax import visualize
from lama_jax.evaluation import driver
from lama_jax.evaluation import registry
from lama_jax.evaluation.common import EvalError, Evaluator, Settings
from lama_jax.evaluation.inception_features import Moments
from lama_jax.inference import sampling
from lama_jax.inference.generator import LayoutGenerator
from lama_jax.metrics import mask_entropy, normalize_mask, shapes_alignment
from lama_jax.inference import generator_dir
from lama_jax.datasets import preparation as prepare_lib
from lama_jax.datasets import shapes
from lama_jax.datasets.vocabulary import load_vocabulary
from tests.test_inference import MAX_OBJECTS, _tiny_variables
from tests.test_metrics_inception import fake_pytorch_fid_state_dict
from tests.test_metrics_lpips import fake_alexnet_state_dict, fake_lpips_linear_state_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_VAL = 12
BATCH = ['--batch_size', '4']  # one batch size everywhere: the generator compiles once


FRECHET_CALLS = []


def _recording_frechet(mu1, sigma1, mu2, sigma2):
  """Stands in for `frechet_distance` (tested in test_metrics_frechet): records its inputs.

  The real one takes scipy's sqrtm of a 2048² matrix, ~20 s on two busy CPU cores per call. This
  returns |mu1 - mu2|² + Tr(S1) + Tr(S2), the distance without its cross term.
  """
  FRECHET_CALLS.append((mu1, sigma1, mu2, sigma2))
  return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2))


@pytest.fixture(scope='module')
def raw_dir(tmp_path_factory):
  raw = str(tmp_path_factory.mktemp('shapes') / 'set')
  shapes.generate(raw, num_train=4, num_val=NUM_VAL, num_workers=1)
  return raw


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory, raw_dir):
  out = str(tmp_path_factory.mktemp('tfds'))
  prepare_lib.prepare('shapes', raw_dir, out)
  return out


@pytest.fixture(scope='module')
def gen_dir(tmp_path_factory):
  g, variables = _tiny_variables()
  out = str(tmp_path_factory.mktemp('gen') / 'g')
  generator_dir.save_generator_dir(out, g, variables, MAX_OBJECTS, 'shapes',
                                  load_vocabulary('shapes'), step=5)
  return out


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  torch = pytest.importorskip('torch')
  root = tmp_path_factory.mktemp('weights')
  paths = {}
  for name, state in (('inception', fake_pytorch_fid_state_dict()),
                      ('alexnet', fake_alexnet_state_dict()),
                      ('lpips', fake_lpips_linear_state_dict())):
    paths[name] = str(root / f'{name}.pth')
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()},
               paths[name])
  return paths


def _read(out):
  with open(os.path.join(out, 'metrics.json')) as f:
    report = json.load(f)
  with open(os.path.join(out, 'metrics.md')) as f:
    table = f.read()
  return report, table


def test_default_shapes_metrics(data_dir, gen_dir, capsys):
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--num_samples', '2',
                        *BATCH]) == 0
  report, table = _read(os.path.join(gen_dir, 'eval'))  # default --out
  assert report['step'] == 5 and report['dataset'] == 'shapes'
  assert report['num_layouts'] == NUM_VAL and report['num_samples'] == 2
  m = report['metrics']
  assert set(m) == {'alignment', 'mask_entropy'}
  assert 0 <= m['alignment']['overall'] <= 1 and m['alignment']['num_boxes'] > 0
  e = m['mask_entropy']
  assert e['num_images'] == 2 * NUM_VAL
  assert 0 < e['raw'] <= math.log(MAX_OBJECTS) and 0 <= e['adapted'] <= math.log(MAX_OBJECTS)
  assert e['abs_alpha'] == pytest.approx(0.7)
  assert 'Mask entropy' in table and 'Shapes alignment' in table
  assert 'H(raw mask)' in capsys.readouterr().out


def test_max_layouts_beyond_the_split_is_a_full_evaluation(data_dir, gen_dir, tmp_path):
  """The table said '(first 100 layouts only)' of a full evaluation, and FID cached the full
  split's statistics again as ..._first100.npz."""
  out = str(tmp_path / 'eval')
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--out', out,
                        '--metrics', 'mask_entropy', '--num_samples', '1', '--max_layouts', '100',
                        *BATCH]) == 0
  report, table = _read(out)
  assert report['num_layouts'] == NUM_VAL and report['max_layouts'] is None
  assert 'first' not in table, table


def test_a_portable_artifact_scores_as_its_generator_directory(data_dir, gen_dir, tmp_path):
  """`sample`, `synthesize` and the studio took an `export --format stablehlo` folder; `evaluate`
  said it had no generator.json."""
  from lama_jax.inference import portable  # pylint: disable=g-import-not-at-top
  artifact = str(tmp_path / 'portable')
  portable.export_portable(gen_dir, artifact, platforms=('cpu',))
  reports = []
  for workdir in (gen_dir, artifact):
    out = str(tmp_path / f'eval_{len(reports)}')
    assert evaluate.main(['--workdir', workdir, '--data_dir', data_dir, '--out', out,
                          '--num_samples', '1', *BATCH]) == 0
    reports.append(_read(out)[0])
  ours, theirs = (r['metrics'] for r in reports)
  assert reports[1]['dataset'] == 'shapes' and reports[1]['step'] == 5
  assert theirs['alignment'] == ours['alignment']
  for key in ('raw', 'adapted'):
    assert theirs['mask_entropy'][key] == pytest.approx(ours['mask_entropy'][key], abs=1e-5)
  assert theirs['mask_entropy']['abs_alpha'] == pytest.approx(0.7)


def test_fid_scene_fid_ds(data_dir, gen_dir, weights, tmp_path, monkeypatch):
  from lama_jax.metrics import frechet
  monkeypatch.setattr(frechet, 'frechet_distance', _recording_frechet)
  FRECHET_CALLS.clear()
  out = str(tmp_path / 'eval')
  args = ['--workdir', gen_dir, '--data_dir', data_dir, '--out', out, '--max_layouts', '3',
          '--num_samples', '1', *BATCH, '--inception_batch_size', '8',
          '--metrics', 'fid,scene_fid,ds',
          '--inception_weights', weights['inception'], '--lpips_weights', weights['lpips'],
          '--alexnet_weights', weights['alexnet']]
  assert evaluate.main(args) == 0
  report, table = _read(out)
  m = report['metrics']
  assert set(m) == {'fid', 'scene_fid', 'ds'}
  assert np.isfinite(m['fid']) and m['fid'] >= 0
  assert np.isfinite(m['scene_fid']) and m['scene_fid'] >= 0
  assert m['ds']['num_pairs'] == 3 and m['ds']['mean'] > 0  # a second sample drawn for DS
  assert 'FID ↓' in table and 'SceneFID ↓' in table and 'DS ↑' in table
  cached = sorted(os.listdir(os.path.join(data_dir, 'fid_stats')))
  assert cached == ['shapes_64_full_first3.npz', 'shapes_64_scene_first3.npz']
  assert len(FRECHET_CALLS) == 2  # FID, then SceneFID: real statistics first, as cached
  for (mu1, sigma1, mu2, sigma2), kind in zip(FRECHET_CALLS, ('full', 'scene')):
    assert mu1.shape == mu2.shape == (2048,) and sigma1.shape == sigma2.shape == (2048, 2048)
    np.testing.assert_allclose(sigma1, sigma1.T, atol=1e-9)
    assert np.abs(mu1 - mu2).max() > 0 and np.all(np.isfinite(sigma2))
    with np.load(os.path.join(data_dir, 'fid_stats', f'shapes_64_{kind}_first3.npz')) as real:
      np.testing.assert_array_equal(real['mu'], mu1)
      np.testing.assert_array_equal(real['sigma'], sigma1)
  # A second run reads the cached real statistics and gives the same FID.
  assert evaluate.main(args[:args.index('--metrics')] + [
      '--metrics', 'fid', '--inception_weights', weights['inception']]) == 0
  assert _read(out)[0]['metrics']['fid'] == pytest.approx(m['fid'], rel=1e-6)


def _other_npz(path):
  np.savez(path, a=np.zeros(3))


@pytest.mark.parametrize('damage, expected', [
    (lambda p: p.write_bytes(p.read_bytes()[:100]), 'not an .npz archive (cut short or damaged?)'),
    (lambda p: p.write_bytes(b''), 'not an .npz archive (cut short or damaged?)'),
    (_other_npz, "not readable statistics (KeyError: 'mu is not a file in the archive')"),
    (lambda p: np.savez(p, mu=np.zeros(3), sigma=np.eye(4)), 'not statistics of one feature size'),
])
def test_a_damaged_fid_cache_is_named_before_sampling(tmp_path, damage, expected):
  """It was read only for the result, after all the sampling: BadZipFile, EOFError or KeyError."""
  from lama_jax.evaluation.fid import Fid  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'fid_stats' / 'shapes_64_full.npz'
  path.parent.mkdir()
  np.savez(path, mu=np.zeros(4), sigma=np.eye(4))
  damage(path)
  with pytest.raises(EvalError, match=re.escape(f'{path}: ') + '.*' + re.escape(
      f'{expected}; delete it and evaluate computes the real statistics again')):
    Fid(lambda images: np.zeros((len(images), 4)), 2, str(path), 1)


def test_a_fid_cache_of_other_weights_or_max_objects_is_computed_again(tmp_path):
  """The cache's name says dataset, size and layouts only: real statistics from other Inception
  weights, or SceneFID crops of a generator keeping fewer objects, were reused silently."""
  from lama_jax.evaluation.fid import Fid, SceneFid  # pylint: disable=g-import-not-at-top
  from lama_jax.evaluation.common import Target  # pylint: disable=g-import-not-at-top
  weights = [tmp_path / 'a.pth', tmp_path / 'b.pth']
  weights[0].write_bytes(b'one network')
  weights[1].write_bytes(b'another network')
  path = tmp_path / 'fid_stats' / 'shapes_64_scene.npz'
  settings = [Settings(data_dir=str(tmp_path), inception_weights=str(w)) for w in weights]
  targets = [Target('shapes', 64, 14, max_objects=n) for n in (4, 8)]
  extract = lambda images: np.asarray([[float(i.mean()), 1.0 + i.std()] for i in images])
  images = list(np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), np.uint8))

  def scene_fid(settings, target):
    return SceneFid(extract, 2, str(path), 1, SceneFid.source_of(settings, target))

  first = scene_fid(settings[0], targets[0])
  assert first.real is not None and not path.exists()
  first.real.add(images)
  first.fake.add(images[::-1])
  first.result()  # writes the cache
  assert scene_fid(settings[0], targets[0]).real is None  # read from it
  for s, t in ((settings[1], targets[0]), (settings[0], targets[1])):
    other = scene_fid(s, t)
    assert other.real is not None, (s, t)  # computed again
    assert other.notes == [f'scene_fid: the real statistics in {path} were computed with other '
                           'Inception weights or settings; computed again']
  assert Fid.source_of(settings[0], targets[0]) == Fid.source_of(settings[0], targets[1])
  np.savez(path, mu=np.zeros(2), sigma=np.eye(2))  # written before caches recorded their source
  assert scene_fid(settings[0], targets[0]).real is not None


def test_a_fid_cache_of_a_val_split_prepared_again_is_computed_again(data_dir, tmp_path):
  """The real statistics stayed those of the split as first prepared, whatever it held later."""
  from lama_jax.evaluation import fid  # pylint: disable=g-import-not-at-top
  copy = tmp_path / 'data'
  shutil.copytree(os.path.join(data_dir, 'shapes'), copy / 'shapes')
  first = fid.split_fingerprint(str(copy), 'shapes', 64)
  assert first and first == fid.split_fingerprint(str(copy), 'shapes', 64)
  assert fid.split_fingerprint(str(copy), 'shapes', 32) == ''  # not prepared at that size
  [val] = (copy / 'shapes').glob('64px/*/shapes-val.tfrecord*')
  val.write_bytes(val.read_bytes())  # the same name and size, written again
  os.utime(val, ns=(1, 1))
  assert fid.split_fingerprint(str(copy), 'shapes', 64) != first


def test_fid_of_one_layout_fails_before_sampling(data_dir, gen_dir, weights, tmp_path, capsys,
                                                monkeypatch):
  """It sampled the layout, then said 'FID needs at least 2 images' (with the real split, hours)."""
  def no_sampling(*args, **kwargs):
    raise AssertionError('sampled')
  monkeypatch.setattr(evaluation.driver, 'feed', no_sampling)
  out = tmp_path / 'eval'
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--out', str(out),
                        '--max_layouts', '1', *BATCH, '--metrics', 'fid',
                        '--inception_weights', weights['inception']]) == 2
  err = capsys.readouterr().err.splitlines()[-1]
  assert err == 'error: fid needs at least 2 val layouts; --max_layouts 1', err
  assert not out.exists()


def test_yolo_writes_images_then_scores(data_dir, raw_dir, gen_dir, tmp_path):
  yolo_dir = str(tmp_path / 'yolo')
  base = ['--workdir', gen_dir, '--data_dir', data_dir, '--out', str(tmp_path / 'e'),
          '--max_layouts', '3', '--metrics', 'yolo', '--yolo_dir', yolo_dir, *BATCH]
  assert evaluate.main(base) == 0
  with open(os.path.join(yolo_dir, 'manifest.json')) as f:
    manifest = json.load(f)
  ids = manifest['image_ids']
  assert len(ids) == 3 and sorted(os.listdir(yolo_dir)) == sorted(
      [f'{i}.png' for i in ids] + ['manifest.json'])
  from PIL import Image
  assert Image.open(os.path.join(yolo_dir, f'{ids[0]}.png')).size == (512, 512)
  # A perfect "detector": the ground truth boxes, in the 512×512 frame of the written images.
  instances_path = os.path.join(raw_dir, 'annotations', 'instances_val2017.json')
  with open(instances_path) as f:
    instances = json.load(f)
  sizes = {im['id']: (im['height'], im['width']) for im in instances['images']}
  dets = []
  for a in instances['annotations']:
    if a['image_id'] in ids:
      h, w = sizes[a['image_id']]
      x, y, bw, bh = a['bbox']
      dets.append({'image_id': a['image_id'], 'category_id': a['category_id'], 'score': 1.0,
                   'bbox': [x * 512 / w, y * 512 / h, bw * 512 / w, bh * 512 / h]})
  det_path = str(tmp_path / 'dets.json')
  with open(det_path, 'w') as f:
    json.dump(dets, f)
  assert evaluate.main(base + ['--detections', det_path, '--instances', instances_path]) == 0
  ap = _read(str(tmp_path / 'e'))[0]['metrics']['yolo']
  assert ap['AP'] == pytest.approx(1.0, abs=1e-6)


def test_an_interrupted_yolo_rewrite_leaves_no_old_manifest(data_dir, gen_dir, tmp_path,
                                                             monkeypatch):
  """Ctrl-C while new images were written left the old manifest.json vouching for them (its step,
  seed and ids), so a detector's score mixed two generators without a word."""
  yolo_dir = tmp_path / 'yolo'
  base = ['--workdir', gen_dir, '--data_dir', data_dir, '--out', str(tmp_path / 'e'),
          '--max_layouts', '2', '--metrics', 'yolo', '--yolo_dir', str(yolo_dir), *BATCH]
  assert evaluate.main(base) == 0
  assert (yolo_dir / 'manifest.json').exists()
  written = []

  def write_png(path, image):
    if written:
      raise KeyboardInterrupt()
    written.append(path)
    real_write_png(path, image)
  real_write_png = evaluation.yolo.files.write_png
  monkeypatch.setattr(evaluation.yolo.files, 'write_png', write_png)
  assert evaluate.main(base + ['--seed', '1']) == 130
  assert len(written) == 1 and not (yolo_dir / 'manifest.json').exists()


@pytest.mark.parametrize('detections, expected', [
    ('[1, 2]', ': 1 is not a COCO result {"image_id", "category_id", "bbox": [x, y, w, h], '
     '"score"}'),
    ('[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]', '"bbox": [1, 2, 3, 4]} is not '
     'a COCO result'),
    ('[{"image_id": 1, "category_id": 1, "bbox": [1, 2], "score": 1}]', 'is not a COCO result'),
    ('{"x', ': not valid JSON: Unterminated string'),
])
def test_bad_detections_fail_with_one_line(data_dir, raw_dir, gen_dir, tmp_path, capsys,
                                           detections, expected):
  det_path = tmp_path / 'dets.json'
  det_path.write_text(detections)
  instances = os.path.join(raw_dir, 'annotations', 'instances_val2017.json')
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--out', str(tmp_path / 'e'),
                        '--max_layouts', '2', '--metrics', 'yolo', '--detections', str(det_path),
                        '--instances', instances, *BATCH]) == 2
  err = capsys.readouterr().err.splitlines()[-1]
  assert err.startswith(f'error: --detections {det_path}') and expected in err, err
  assert not (tmp_path / 'e').exists()


def test_scoring_names_a_yolo_dir_without_manifest(data_dir, raw_dir, gen_dir, tmp_path, capsys):
  """A mistyped --yolo_dir was passed over: every evaluated id was scored, not the manifest's."""
  (tmp_path / 'dets.json').write_text('[]')
  yolo_dir = tmp_path / 'yolo_typo'
  instances = os.path.join(raw_dir, 'annotations', 'instances_val2017.json')
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--out', str(tmp_path / 'e'),
                        '--metrics', 'yolo', '--yolo_dir', str(yolo_dir), '--detections',
                        str(tmp_path / 'dets.json'), '--instances', instances, *BATCH]) == 2
  assert capsys.readouterr().err == f'error: --yolo_dir {yolo_dir}/manifest.json: no such file\n'
  assert not (tmp_path / 'e').exists()


@pytest.mark.parametrize('manifest, expected', [
    ('{"image_ids": [1, 2', 'manifest.json: not valid JSON: Expecting'),
    ('{"dataset": "shapes"}', 'manifest.json: not a manifest of evaluate (a list "image_ids"'),
    ('{"image_ids": ["a"]}', 'manifest.json: not a manifest of evaluate (a list "image_ids"'),
])
def test_a_damaged_yolo_manifest_fails_with_one_line(data_dir, raw_dir, gen_dir, tmp_path, capsys,
                                                     manifest, expected):
  """Scoring read --yolo_dir's manifest unchecked: a JSONDecodeError or KeyError traceback."""
  yolo_dir = tmp_path / 'yolo'
  yolo_dir.mkdir()
  (yolo_dir / 'manifest.json').write_text(manifest)
  (tmp_path / 'dets.json').write_text('[]')
  instances = os.path.join(raw_dir, 'annotations', 'instances_val2017.json')
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--out', str(tmp_path / 'e'),
                        '--max_layouts', '2', '--metrics', 'yolo', '--yolo_dir', str(yolo_dir),
                        '--detections', str(tmp_path / 'dets.json'), '--instances', instances,
                        *BATCH]) == 2
  err = capsys.readouterr().err.splitlines()[-1]
  assert err.startswith(f'error: --yolo_dir {yolo_dir}/manifest.json') and expected in err, err
  assert not (tmp_path / 'e').exists()


@pytest.mark.parametrize('extra, expected', [
    (['--metrics', 'fid'], 'fid: needs --inception_weights'),
    (['--metrics', 'ds', '--lpips_weights', 'x.pth'], 'ds: needs --alexnet_weights'),
    (['--metrics', 'yolo'], 'yolo: needs --yolo_dir'),
    (['--metrics', 'fid,bogus'], 'unknown metric(s) bogus'),
    (['--metrics', 'fid', '--inception_weights', 'missing.pth'],
     '--inception_weights missing.pth: no such file'),
    (['--metrics', 'fid', '--inception_weights', 'data'],  # was "no such file"
     '--inception_weights data: a folder, not a file'),
    (['--metrics', 'mask_entropy', '--num_samples', '0'], '--num_samples must be at least 1'),
    (['--metrics', 'mask_entropy'], '/shapes/64px/2.0.0). Run: python -m lama_jax.prepare '
     '--dataset shapes --image_sizes 64 --manual_dir'),  # the generator's size, not the default
    (['--metrics', 'mask_entropy', '--dataset', 'coco_stuff'],  # its ids mean other categories
     '--dataset coco_stuff has other categories than the generator, trained on shapes'),
])
def test_bad_flags_fail_with_one_line(gen_dir, tmp_path, capsys, extra, expected):
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', str(tmp_path), *extra]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1 and expected in err, err


def test_weights_of_another_network_are_one_short_line(data_dir, gen_dir, weights, capsys):
  """LPIPS weights given for Inception: the error listed all 470 variables (20,000 characters), in
  quotes, and named the file twice."""
  path = weights['lpips']
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--metrics', 'fid',
                        '--inception_weights', path]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'error: --inception_weights {path}: cannot load: Inception state dict '
                        'does not match the model. Unmapped keys: 5 (lin0.model.1.weight'), err
  assert 'variables with no key: 470 (' in err and 'and 465 more)' in err, err
  assert len(err) < 600 and err.count(path) == 1 and err.count('\n') == 1, err


def test_all_skips_metrics_without_weights(data_dir, gen_dir, tmp_path):
  out = str(tmp_path / 'eval')
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--out', out,
                        '--metrics', 'all', '--max_layouts', '4', '--num_samples', '1',
                        '--cas_epochs', '1', *BATCH]) == 0
  report, table = _read(out)
  assert set(report['metrics']) == {'cas', 'mask_entropy', 'alignment'}
  cas = report['metrics']['cas']  # one epoch (--cas_epochs 1) on the generated crops
  assert 0 <= cas['accuracy'] <= 1 and cas['train_crops'] == cas['test_crops'] > 0
  assert 'CAS ↑' in table
  skipped = ' '.join(report['notes'])
  for flag in ('--inception_weights', '--lpips_weights', '--yolo_dir'):
    assert flag in skipped and flag in table


def test_a_metric_that_fails_after_sampling_keeps_the_others(data_dir, gen_dir, tmp_path, capsys,
                                                            monkeypatch):
  """A CAS classifier whose loss diverged was a FloatingPointError traceback after the whole
  sampling, and the metrics computed beside it were lost."""
  from lama_jax.metrics import cas  # pylint: disable=g-import-not-at-top

  def diverged(*args, **kwargs):
    raise FloatingPointError('CAS training loss is nan after 1 epochs.')
  monkeypatch.setattr(cas, 'train_and_score', diverged)
  out = tmp_path / 'eval'
  assert evaluate.main(['--workdir', gen_dir, '--data_dir', data_dir, '--out', str(out),
                        '--metrics', 'cas,mask_entropy', '--max_layouts', '4', '--num_samples', '1',
                        '--cas_epochs', '1', *BATCH]) == 2
  err = capsys.readouterr().err
  assert err.endswith(f'error: cas: CAS training loss is nan after 1 epochs; the other results are '
                      f'in {out / "metrics.json"}\n'), err
  report, table = _read(str(out))
  assert set(report['metrics']) == {'mask_entropy'}
  assert 'not computed: cas: CAS training loss is nan after 1 epochs.' in report['notes']
  assert 'not computed: cas' in table


def test_a_val_split_of_other_categories_is_refused(data_dir, gen_dir, tmp_path, capsys):
  """--dataset shapes for a generator of other categories scored it silently, its ids read as
  the generator's own categories."""
  workdir = tmp_path / 'other'
  shutil.copytree(gen_dir, workdir)
  for name in ('generator.json', 'vocabulary.json'):
    data = json.loads((workdir / name).read_text())
    data['dataset'] = 'flowers'
    if name == 'vocabulary.json':
      data['id_to_name'] = {i: '__image__' if i == '0' else f'flower{i}'
                            for i in data['id_to_name']}
    (workdir / name).write_text(json.dumps(data))
  out = tmp_path / 'eval'
  assert evaluate.main(['--workdir', str(workdir), '--data_dir', data_dir, '--out', str(out),
                        '--dataset', 'shapes', '--max_layouts', '2', *BATCH]) == 2
  assert capsys.readouterr().err == (
      "error: --dataset shapes has other categories than the generator, trained on flowers (id 1 "
      "is 'disk' there, 'flower1' for the generator): its ids would be read as the generator's "
      "categories\n")
  assert not out.exists()


def test_workdir_that_is_a_file_is_named_so(tmp_path, capsys):
  afile = tmp_path / 'afile'
  afile.write_text('x')
  assert evaluate.main(['--workdir', str(afile), '--data_dir', str(tmp_path)]) == 2
  assert capsys.readouterr().err == f'error: --workdir {afile}: a file, not a directory\n'


@pytest.mark.parametrize('name, content, expected', [
    ('generator.json', b'{"ch": 4, "chan', 'generator.json is not valid JSON'),
    ('generator.json', b'\x82\xfe garbage', 'generator.json is not valid JSON'),
    ('generator.json', b'{"ch": "x"}', "generator.json is not a generator config: KeyError("),
    ('manifest.json', b'{"format": "lama_jax.por', 'manifest.json: cannot read it as JSON'),
    ('manifest.json', json.dumps({'format': 'lama_jax.portable', 'format_version': 1}).encode(),
     "manifest.json: not a complete manifest (KeyError: 'model')"),
])
def test_a_damaged_generator_config_is_named_before_the_default_metrics(
    gen_dir, tmp_path, capsys, name, content, expected):
  """Without --metrics the dataset comes from that file: it was taken for an unknown dataset, and
  the error was "fid: needs --inception_weights"."""
  workdir = tmp_path / 'damaged'
  if name == 'generator.json':
    shutil.copytree(gen_dir, workdir)
  else:  # a portable artifact's manifest
    workdir.mkdir()
  (workdir / name).write_bytes(content)
  assert evaluate.main(['--workdir', str(workdir), '--data_dir', str(tmp_path)]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'error: {workdir / name}') and expected in err and err.count('\n') == 1, err


def test_a_folder_in_place_of_generator_json_is_named_so(gen_dir, tmp_path, capsys):
  """evaluate said the workdir 'has no generator.json', where sample says what is there."""
  workdir = tmp_path / 'folder_config'
  shutil.copytree(gen_dir, workdir)
  (workdir / 'generator.json').unlink()
  (workdir / 'generator.json').mkdir()
  assert evaluate.main(['--workdir', str(workdir), '--data_dir', str(tmp_path)]) == 2
  assert capsys.readouterr().err == f'error: {workdir / "generator.json"}: Is a directory\n'


def test_cli_error_has_no_traceback(tmp_path):
  proc = subprocess.run([sys.executable, '-m', 'lama_jax.evaluate', '--workdir', str(tmp_path),
                         '--data_dir', str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                        timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 2 and 'Traceback' not in proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(lines) == 1 and 'no generator.json' in lines[0], proc.stderr


def test_streamed_moments_match_activation_statistics():
  from lama_jax.metrics.frechet import activation_statistics
  feats = np.random.default_rng(0).normal(size=(37, 5))
  moments = Moments()
  for chunk in np.array_split(feats, 4):
    moments.add(chunk)
  for got, want in zip(moments.stats(), activation_statistics(feats)):
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


class _Recorder(Evaluator):
  """Keeps every sample it is given, by (image id, repeat)."""
  name = 'recorder'
  repeats = 2

  def __init__(self):
    super().__init__()
    self.images = {}

  def add(self, samples):
    for image_id, image in zip(samples.image_ids, samples.images):
      self.images[(int(image_id), samples.repeat)] = image

  def result(self):
    return len(self.images)


def test_driver_draws_the_samples_of_sample_val(data_dir, gen_dir, tmp_path):
  """The evaluators see exactly the PNGs `sample --val` writes (same seeds, same padding)."""
  gen = LayoutGenerator.load(gen_dir)
  sampling.sample_val(gen, data_dir, 'shapes', str(tmp_path), 2, seed=4, truncation=2.0,
                      batch_size=4)
  recorder = _Recorder()
  settings = Settings(seed=4, batch_size=4, max_layouts=6, data_dir=data_dir)  # 4 + 2 padded
  ids = driver.sample_split(gen, 'shapes', [recorder], settings)
  assert len(ids) == 6 and len(recorder.images) == 12
  for (image_id, r), image in recorder.images.items():
    with Image.open(tmp_path / f'{image_id}_{r}.png') as png:
      np.testing.assert_array_equal(np.asarray(png), image)


def test_evaluate_layouts_scores_given_layouts(data_dir, gen_dir):
  gen = LayoutGenerator.load(gen_dir)
  batch = next(sampling.val_batches(data_dir, 'shapes', 64, 4, gen.max_objects, with_masks=True))
  layouts = {'boxes': batch.boxes[:3], 'labels': batch.labels[:3], 'masks': batch.masks[:3]}
  plain = {k: v for k, v in layouts.items() if k != 'masks'}
  got = evaluation.evaluate_layouts(gen, plain, ['alignment', 'mask_entropy'], seed=2,
                                    batch_size=4)
  out = gen.generate(sampling.pad_rows(plain['boxes'], 4), sampling.pad_rows(plain['labels'], 4),
                     seed=sampling.sample_seed(2, 0, 0), strict=False)
  images = visualize.to_uint8_truncated(out.image[:3])
  want = shapes_alignment(images, plain['boxes'], plain['labels'])
  assert got['alignment']['overall'] == want['overall']
  assert got['alignment']['num_boxes'] == want['num_boxes'] > 0
  assert got['mask_entropy']['num_images'] == 3
  # With box-local masks the generator is given them (placed in their boxes): its masks are those.
  given = evaluation.evaluate_layouts(gen, layouts, ['mask_entropy'], seed=2, batch_size=4)
  placed = gen.place_masks(layouts['boxes'], layouts['masks'])
  assert given['mask_entropy']['adapted'] == pytest.approx(
      mask_entropy(normalize_mask(placed)), rel=1e-6)
  assert given['mask_entropy']['raw'] == given['mask_entropy']['adapted']
  with pytest.raises(EvalError, match='fid compare with real images'):
    evaluation.evaluate_layouts(gen, plain, ['fid'])


def test_select_checks_flags_before_reading_the_generator_dir():
  def unread():
    raise AssertionError('the dataset was read before the flags were checked')
  with pytest.raises(EvalError, match='fid: needs --inception_weights'):
    registry.select('mask_entropy,fid', Settings(), unread)
  names, notes = registry.select('all', Settings(), lambda: 'coco_stuff')
  assert names == ['cas', 'mask_entropy']
  assert [n.split()[0] for n in notes] == ['fid', 'scene_fid', 'ds', 'yolo', 'alignment']
  assert 'coco_stuff' in notes[-1]
  assert registry.select(None, Settings(), lambda: 'shapes') == (['mask_entropy', 'alignment'], [])
  with pytest.raises(EvalError, match='alignment: works on the shapes dataset only'):
    registry.select('alignment', Settings(), lambda: 'visual_genome')
