"""Ground-truth masks in the prepared data and the pipeline, tainting, the mask-clarity command."""
import collections
import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from lama_jax.inference import generator_dir
from lama_jax.datasets import input_pipeline
from lama_jax import mask_clarity
from lama_jax.evaluation.common import EvalError
from lama_jax.evaluation.mask_clarity import parse_taus, taint_masks
from lama_jax.datasets import preparation as prepare_lib
from lama_jax.datasets import vocabulary
from lama_jax.datasets import builders
from lama_jax.datasets import shapes
from lama_jax.models import make_generator
from lama_jax.models.mask import masks_to_layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN, N_VAL = 20, 8


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  manual = str(tmp_path_factory.mktemp('shapes') / 'shapes')
  shapes.generate(manual, num_train=N_TRAIN, num_val=N_VAL, seed=5, num_workers=1)
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  # 32: the pipeline test's size; 64: test_end_to_end's generator; 128: the shapes' own size.
  prepare_lib.prepare('shapes', manual, data_dir, image_sizes=(32, 64, 128))
  return data_dir, manual


def _stored(data_dir, split):
  builder = builders.BUILDERS['shapes'](data_dir=data_dir)
  return list(tfds.as_numpy(builder.as_dataset(split=split)))


def test_prepared_masks_cover_the_objects_pixels(data):
  data_dir, _ = data
  checked = 0
  for ex in _stored(data_dir, 'train'):
    image = ex['image']  # [128, 128, 3]: stored at the shapes' own size, pixels unchanged
    h, w, _ = image.shape
    masks = ex['masks']
    assert masks.dtype == np.uint8 and masks.shape == (len(ex['labels']), 32, 32)
    assert set(np.unique(masks)) <= {0, 1}
    grid = np.arange(32) / 31
    for box, label, mask in zip(ex['boxes'], ex['labels'], masks):
      assert mask.any()
      if label not in shapes.THING_COLORS:
        continue
      xs = np.clip(np.rint((box[0] + box[2] * grid) * (w - 1)), 0, w - 1).astype(int)
      ys = np.clip(np.rint((box[1] + box[3] * grid) * (h - 1)), 0, h - 1).astype(int)
      cells = image[ys[:, None], xs[None, :]]  # [32, 32, 3] pixels at the mask grid
      colour = np.all(cells == shapes.THING_COLORS[label], axis=-1)
      assert colour[mask == 1].mean() >= 0.8, (ex['image_id'], label)
      if (ex['labels'] == label).sum() == 1:  # no other instance of that colour: exact
        assert not colour[mask == 0].any()
      checked += 1
  assert checked > N_TRAIN


def test_placed_masks_match_the_segmentation(data):
  """masks_to_layout of the stored masks at full size ≈ the annotation's segmentation."""
  data_dir, manual = data
  from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  with open(os.path.join(manual, 'annotations', 'instances_val2017.json')) as f:
    anns = collections.defaultdict(list)
    for a in json.load(f)['annotations']:
      anns[a['image_id']].append(a)
  ex = _stored(data_dir, 'val')[0]
  placed = np.asarray(masks_to_layout(jnp.asarray(ex['boxes'][None], jnp.float32),
                                      jnp.asarray(ex['masks'][None], jnp.float32), 128))[0] > 0.5
  for k, a in enumerate(anns[int(ex['image_id'])]):  # instances come first in the example
    seg = mask_utils.decode(a['segmentation']).astype(bool)
    iou = (placed[k] & seg).sum() / (placed[k] | seg).sum()
    assert iou > 0.75, (k, iou)


def test_pipeline_masks_and_official_flip(data):
  data_dir, _ = data
  (plain,) = [input_pipeline.as_numpy(b) for _, b in zip(
      range(1), input_pipeline.create_train_dataset(data_dir, 'shapes', 32, 2, 8))]
  assert 'masks' not in plain  # the default batch contract is untouched
  ds = input_pipeline.create_train_dataset(data_dir, 'shapes', 32, 1, 8, flip='official',
                                           with_masks=True)
  examples = [input_pipeline.as_numpy(b) for _, b in zip(range(2 * N_TRAIN), ds)]
  groups = collections.defaultdict(list)
  for ex in examples:
    assert ex['masks'].shape == (1, 8, 32, 32) and ex['masks'].dtype == np.float32
    real = ex['labels'][0] > 0
    assert not ex['masks'][0][~real].any()  # padding objects all zeros
    assert 0 <= ex['masks'].min() and ex['masks'].max() <= 1
    key = (tuple(ex['labels'][0]), tuple(np.round(ex['boxes'][0, :, 1], 5)))  # y survives flips
    groups[key].append(ex)
  assert all(len(g) == 2 for g in groups.values())
  for (a, b) in groups.values():  # the flip is an involution: either order is the mirror pair
    real = a['labels'][0] > 0
    x, y, w, h = a['boxes'][0][real].T
    np.testing.assert_allclose(b['boxes'][0][real], np.stack([1 - (x + w), y, w, h], -1),
                               atol=1e-6)
    np.testing.assert_array_equal(b['masks'][0], a['masks'][0][:, :, ::-1])
    assert not np.array_equal(a['masks'][0], b['masks'][0])  # the shapes are not all symmetric
  for ex in input_pipeline.create_eval_dataset(data_dir, 'shapes', 32, 4, 8,
                                               with_masks=True).as_numpy_iterator():
    assert ex['masks'].shape[1:] == (8, 32, 32)
    for labels, masks in zip(ex['labels'], ex['masks']):
      orig = [s for s in _stored(data_dir, 'val') if len(s['labels']) == (labels > 0).sum()
              and (s['labels'] == labels[labels > 0]).all()]
      assert any(np.array_equal(o['masks'], masks[:len(o['labels'])]) for o in orig)


def test_taint_endpoints():
  rng = np.random.default_rng(0)
  labels = np.array([[3, 9, 0, 0], [1, 2, 3, 0]])
  masks = rng.uniform(size=(2, 4, 6, 6)).astype(np.float32)
  masks[labels == 0] = 0
  np.testing.assert_array_equal(taint_masks(masks, labels, 0.0), masks)
  full = taint_masks(masks, labels, 1.0)
  np.testing.assert_allclose(full[0, :2], 0.5)
  np.testing.assert_allclose(full[1, :3], 1 / 3, rtol=1e-6)
  assert not full[labels == 0].any()  # padding stays zero
  half = taint_masks(masks, labels, 0.5)
  np.testing.assert_allclose(half[1, :3], 0.5 * masks[1, :3] + 0.5 / 3, rtol=1e-6)


def test_taus_are_sorted_and_given_once(capsys):
  assert parse_taus('1, 0,0.5') == [0.0, 0.5, 1.0]  # the curve joins its points in this order
  assert math.copysign(1.0, parse_taus('-0')[0]) == 1.0
  with pytest.raises(EvalError, match=r'--taus 0,0.5,-0: 0 given more than once'):
    parse_taus('0,0.5,-0')
  # Rejected before the generator directory is read.
  assert mask_clarity.main(['--workdir', 'nope', '--data_dir', 'nope', '--taus', '0.5,0.5']) == 2
  assert capsys.readouterr().err == 'error: --taus 0.5,0.5: 0.5 given more than once\n'


def _gt_generator_dir(path):
  g = make_generator(64, ch=4, num_classes=14, mask_hidden=8)
  args = (jnp.zeros((1, 8, g.z_dim)), jnp.full((1, 8, 4), 0.5), jnp.ones((1, 8), jnp.int32),
          jnp.zeros((1, g.z_dim)))
  variables = g.init({'params': jax.random.key(0), 'noise': jax.random.key(1)}, *args,
                     masks=jnp.ones((1, 8, 64, 64)))
  assert 'mask_regress' not in variables['params']
  generator_dir.save_generator_dir(path, g, variables, 8, 'shapes',
                                  vocabulary.load_vocabulary('shapes'))
  return path


def test_end_to_end(data, tmp_path, capsys):
  data_dir, _ = data
  run = _gt_generator_dir(str(tmp_path / 'gen'))
  rc = mask_clarity.main(['--workdir', run, '--data_dir', data_dir, '--taus', '0,0.5,1',
                          '--batch_size', '4', '--max_layouts', '6'])
  assert rc == 0
  out = os.path.join(run, 'mask_clarity')
  with open(os.path.join(out, 'results.json')) as f:
    report = json.load(f)
  assert report['taus'] == [0, 0.5, 1] and report['num_layouts'] == 6
  for row in report['results']:
    assert math.isfinite(row['alignment']) and math.isfinite(row['mask_entropy'])
  entropies = [row['mask_entropy'] for row in report['results']]
  assert entropies[0] < entropies[1] < entropies[2]  # tainting blurs the masks
  with Image.open(os.path.join(out, 'curve.png')) as png:
    assert png.size == (640, 420) and len(png.getcolors(1 << 16)) > 3
  table = open(os.path.join(out, 'table.md')).read()
  assert table.count('\n| ') == 4 and 'alignment' in table


def test_errors_are_one_line(data, tmp_path, capsys):
  data_dir, _ = data
  assert mask_clarity.main(['--workdir', str(tmp_path / 'nope'), '--data_dir', data_dir]) == 2
  assert mask_clarity.main(['--workdir', str(tmp_path), '--data_dir', data_dir,
                            '--taus', '0,2']) == 2
  assert mask_clarity.main(['--workdir', str(tmp_path), '--data_dir', data_dir,
                            '--metrics', 'fid']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 3 and all(line.startswith('error:') for line in err)
  assert 'inception_weights' in err[2] and '[0, 1]' in err[1]


def test_cli_help():
  out = subprocess.run([sys.executable, '-m', 'lama_jax.mask_clarity', '--help'], cwd=REPO,
                       capture_output=True, text=True, check=True).stdout
  assert '--taus' in out and '--inception_weights' in out


def test_coco_polygons_rle_and_missing_segmentations():
  from lama_jax.datasets import common  # pylint: disable=g-import-not-at-top
  from pycocotools import mask as mask_utils  # pylint: disable=g-import-not-at-top
  width, height = 101, 51
  box = np.array([[10, 0, 40, 51]], np.float64)  # pixels x, y, w, h
  norm = box / [width, height, width, height]
  left = [[10, 0, 29.5, 0, 29.5, 51, 10, 51]]  # polygon: the box's left half
  full = np.zeros((height, width), np.uint8)
  full[:, 10:30] = 1
  rle = mask_utils.encode(np.asfortranarray(full))
  uncompressed = {'size': [height, width], 'counts': []}  # uncompressed RLE of `full`
  flat, value, run = full.T.reshape(-1), 0, 0
  for v in flat:
    if v != value:
      uncompressed['counts'].append(run)
      value, run = v, 0
    run += 1
  uncompressed['counts'].append(run)
  for seg in (left, rle, uncompressed):
    record = common.ImageRecord(1, 'x.png', box, np.array([1]), segmentations=[seg])
    masks = common.object_masks(record, norm, width, height)
    assert masks.shape == (1, 32, 32)
    cols = masks[0].mean(0)  # share of each column inside the mask
    assert cols[:12].min() == 1 and cols[17:].max() == 0, cols
  for seg in ([], None):  # no segmentation: a full box
    record = common.ImageRecord(1, 'x.png', box, np.array([1]), segmentations=[seg])
    assert common.object_masks(record, norm, width, height).all()


def _report(step: int) -> dict:
  rows = [{'tau': tau, 'alignment': 0.9 - tau / 2, 'mask_entropy': 0.1 + tau} for tau in (0, 1)]
  return {'dataset': 'shapes', 'image_size': 64, 'step': step, 'num_layouts': 2,
          'num_samples': 1, 'metrics': ['alignment'], 'taus': [0, 1], 'results': rows}


def test_interrupted_outputs_leave_the_last_complete_set(tmp_path, monkeypatch):
  """A rerun into the same --out stopped between its three files kept the new curve.png beside the
  old table.md and results.json; now the three replace the old set together or not at all."""
  from lama_jax.evaluation import mask_clarity as mask_clarity_lib  # pylint: disable=g-import-not-at-top
  paths = mask_clarity_lib.write_outputs(_report(step=3), str(tmp_path))
  before = {name: open(path, 'rb').read() for name, path in paths.items()}

  def interrupted(report):
    raise KeyboardInterrupt
  monkeypatch.setattr(mask_clarity_lib, 'markdown_table', interrupted)
  with pytest.raises(KeyboardInterrupt):
    mask_clarity_lib.write_outputs(_report(step=9), str(tmp_path))
  assert {name: open(path, 'rb').read() for name, path in paths.items()} == before
  assert sorted(os.listdir(tmp_path)) == sorted(mask_clarity_lib.OUTPUTS)  # no temporary files
  monkeypatch.undo()
  mask_clarity_lib.write_outputs(_report(step=9), str(tmp_path))
  assert 'step 9' in open(paths['table.md']).read()
  assert json.load(open(paths['results.json']))['step'] == 9
  assert open(paths['curve.png'], 'rb').read() != before['curve.png']
