"""Inference: LayoutGenerator, the sample and export CLIs, on a tiny random generator."""
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util
from PIL import Image

from lama_jax import export
from lama_jax import visualize
from lama_jax.inference import generator_dir
from lama_jax import sample
from lama_jax.inference import sampling
from lama_jax.inference.generator import LayoutGenerator
from lama_jax.errors import LamaError
from lama_jax.inference.layouts import PAD_BOX, LayoutError
from lama_jax.models import make_generator
from lama_jax.datasets.vocabulary import load_vocabulary

MAX_OBJECTS = 4
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_variables():
  """Random variables for a tiny generator, made in NumPy (no compiled init: tests stay fast)."""
  g = make_generator(64, ch=4, num_classes=14, mask_hidden=8)
  abstract = generator_dir.abstract_variables(g, MAX_OBJECTS)
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name = path[-1].key
    if name in ('kernel', 'embedding'):
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)
    if name in ('scale', 'var'):
      return np.ones(leaf.shape, np.float32)
    if name == 'rho':
      return np.float32(0.1)
    if name == 'noise_weight_seed':
      return np.full(leaf.shape, -1.0, np.float32)
    return np.zeros(leaf.shape, np.float32)
  variables = jax.tree_util.tree_map_with_path(fill, abstract)
  params = variables['params']
  # Make the residual branches and LAMA's scaling visible (they start at 0). The local blocks stay
  # off, so LAMA's factors at a pixel depend only on the objects there (exact locality for --fix_z).
  for i in range(4):
    params[f'res{i}']['alpha'] = np.float32(0.5)
    for b in ('b1', 'b2'):
      params[f'res{i}'][b]['alpha'] = np.float32(0.5)
  for k in (1, 2, 3):
    params['mask_regress'][f'conv{k}']['alpha'] = np.float32(0.3)
  params['lama']['alpha'] = np.float32(0.7)
  # Converged power iterations (u, v = top singular vectors), as after training; the random initial
  # u, v would give a tiny sigma and blow the activations up.
  spectral = jax.tree_util.tree_map(np.asarray, dict(variables['spectral']))
  flat = traverse_util.flatten_dict(spectral)
  flat_params = traverse_util.flatten_dict(params)
  for path in {k[:-1] for k in flat}:
    kernel = flat_params[path + ('kernel',)]
    u, s, vt = np.linalg.svd(kernel.reshape(-1, kernel.shape[-1]).T.astype(np.float64))
    flat[path + ('u',)], flat[path + ('v',)] = u[:, 0].astype(np.float32), vt[0].astype(np.float32)
    flat[path + ('sigma',)] = np.float32(s[0])
  return g, {'params': params, 'batch_stats': variables['batch_stats'],
             'spectral': traverse_util.unflatten_dict(flat)}


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  """A training-like workdir: generator.json, vocabulary.json, a Composite with more items."""
  g, variables = _tiny_variables()
  root = tmp_path_factory.mktemp('run')
  with open(root / 'generator.json', 'w') as f:
    json.dump(generator_dir.generator_config(g, MAX_OBJECTS, 'shapes'), f)
  with open(root / 'vocabulary.json', 'w') as f:
    json.dump(load_vocabulary('shapes').to_json(), f)
  mngr = ocp.CheckpointManager(root / 'checkpoints', item_names=('generator', 'discriminator'))
  for step in (3, 7):
    scaled = dict(variables, params=jax.tree_util.tree_map(lambda x: x * (step / 7),
                                                           variables['params']))
    mngr.save(step, args=ocp.args.Composite(generator=ocp.args.StandardSave(scaled),
                                            discriminator=ocp.args.StandardSave({'w': np.ones(3)})))
  mngr.wait_until_finished()
  mngr.close()
  return str(root)


@pytest.fixture(scope='module')
def gen(workdir):
  return LayoutGenerator.load(workdir)


BOXES = np.array([[[0.0, 0.0, 1.0, 0.5], [0.2, 0.3, 0.4, 0.4]]], np.float32)
LABELS = np.array([[9, 1]])


def test_load_takes_latest_step_and_vocabulary(gen):
  assert gen.step == 7 and gen.max_objects == MAX_OBJECTS and gen.image_size == 64
  assert gen.vocabulary.name_to_id['disk'] == 1 and gen.dataset == 'shapes'


def test_generate_shapes_ranges_and_determinism(gen):
  out = gen.generate(np.repeat(BOXES, 2, 0), np.repeat(LABELS, 2, 0), seed=3)
  assert out.image.shape == (2, 64, 64, 3)
  assert out.mask.shape == out.raw_mask.shape == (2, 2, 64, 64)
  assert out.image.dtype == np.float32 and np.all(np.abs(out.image) <= 1)
  assert all(np.isfinite(x).all() for x in out)
  assert np.abs(out.image[0] - out.image[1]).max() > 0  # rows draw different z
  again = gen.generate(np.repeat(BOXES, 2, 0), np.repeat(LABELS, 2, 0), seed=3)
  np.testing.assert_array_equal(out.image, again.image)
  one = gen.generate(BOXES, LABELS, seed=3)  # a row does not depend on the rest of the batch
  np.testing.assert_allclose(one.image[0], out.image[0], atol=1e-5)
  # The adapted mask is the raw mask scaled by LAMA's factors in (0, 2).
  raw, mask = out.raw_mask, out.mask
  assert np.all(mask <= 2 * raw + 1e-6) and np.all(mask >= -1e-6)
  assert np.abs(mask - raw).max() > 1e-3


def test_a_batch_runs_in_chunks_of_rows_as_each_row_alone(gen, monkeypatch):
  """On CPU, a 64×64 batch of 6 is sampled 3 rows at a time (sampling_forms.rows_per_chunk), and
  every row comes out as it does alone."""
  from lama_jax.inference import generator as api
  chunks = []
  forward_rows = api._forward_rows  # pylint: disable=protected-access

  def spy(*args, rows_per_chunk=None, **kwargs):
    chunks.append(rows_per_chunk)
    return forward_rows(*args, rows_per_chunk=rows_per_chunk, **kwargs)
  monkeypatch.setattr(api, '_forward_rows', spy)
  jax.clear_caches()  # so that the programs below are traced (through the spy) whatever ran before
  boxes, labels = np.repeat(BOXES, 6, 0), np.repeat(LABELS, 6, 0)
  labels[:, 0] = np.arange(6) % 13 + 1  # rows that differ in their layout too
  out = gen.generate(boxes, labels, seed=4)
  assert chunks == [3]
  assert np.abs(out.image[2] - out.image[3]).max() > 1e-2
  for row in range(6):
    alone = gen.generate(boxes[row:row + 1], labels[row:row + 1], seed=4, first_row=row)
    for got, want in zip(out, alone):
      np.testing.assert_allclose(got[row], want[0], rtol=1e-5, atol=1e-5)
  # Given masks (the mask-to-image experiment) are split into the same chunks.
  masks = np.random.default_rng(0).uniform(size=(6, 2, 64, 64)).astype(np.float32)
  traced = len(chunks)
  given = gen.generate(boxes, labels, seed=4, masks=masks)
  assert chunks[traced:] == [3]
  for row in (2, 3, 5):
    alone = gen.generate(boxes[row:row + 1], labels[row:row + 1], seed=4, first_row=row,
                         masks=masks[row:row + 1])
    np.testing.assert_allclose(given.image[row], alone.image[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(given.mask[row], masks[row])


def test_compiled_once_per_batch_size(gen):
  from lama_jax.inference import generator as api
  gen.generate(BOXES, LABELS, seed=0)
  size = api._program._cache_size()  # pylint: disable=protected-access
  gen.generate(BOXES[:, :1], LABELS[:, :1], seed=5)  # fewer objects: padded to max_objects
  gen.generate(BOXES[:, ::-1], LABELS[:, ::-1], seed=6)
  assert api._program._cache_size() == size  # pylint: disable=protected-access


def test_padding_entries_do_not_matter(gen):
  boxes = np.concatenate([BOXES, [[[0.3, 0.3, 0.5, 0.5]]]], 1)
  labels = np.concatenate([LABELS, [[0]]], 1)
  a = gen.generate(boxes, labels, seed=1)
  boxes[0, 2] = [0.0, 0.0, 1.0, 1.0]
  b = gen.generate(boxes, labels, seed=1)
  c = gen.generate(BOXES, LABELS, seed=1)
  np.testing.assert_array_equal(a.image, b.image)
  np.testing.assert_allclose(a.image, c.image, atol=1e-6)
  assert np.abs(a.raw_mask[0, 2]).max() == 0


def test_uint8_images_and_mask_formats_match_the_float_outputs(gen):
  ref = gen.generate(BOXES, LABELS, seed=4)
  small = gen.generate(BOXES, LABELS, seed=4, image_format='uint8', mask_format=None)
  # Quantised on the device with the rule the sample PNGs and the evaluation use: the same bytes.
  np.testing.assert_array_equal(small.image, visualize.to_uint8_truncated(ref.image))
  assert small.mask is None and small.raw_mask is None
  half = gen.generate(BOXES, LABELS, seed=4, mask_format='float16')
  assert half.mask.dtype == half.raw_mask.dtype == np.float16
  assert half.mask.shape == ref.mask.shape == (1, 2, 64, 64)
  np.testing.assert_allclose(half.mask, ref.mask, rtol=1e-3, atol=1e-4)
  # Another compiled program (float16 masks): XLA may fuse, and so round, the image differently.
  np.testing.assert_allclose(half.image, ref.image, rtol=0, atol=1e-6)


def test_generate_many_matches_generate(gen):
  batches = [{'boxes': np.repeat(BOXES, 2, 0), 'labels': np.repeat(LABELS, 2, 0), 'seed': s}
             for s in (1, 2, 3)]
  outs = list(gen.generate_many(iter(batches), image_format='uint8', mask_format=None))
  assert len(outs) == 3
  for batch, out in zip(batches, outs):
    alone = gen.generate(**batch, image_format='uint8', mask_format=None)
    np.testing.assert_array_equal(out.image, alone.image)


def test_given_z_is_used(gen):
  z_obj, z_im = gen.sample_z(1, seed=11)
  a = gen.generate(BOXES, LABELS, z_obj=z_obj[:, :2], z_im=z_im, seed=11)
  b = gen.generate(BOXES, LABELS, seed=11)
  np.testing.assert_allclose(a.image, b.image, atol=1e-6)
  c = gen.generate(BOXES, LABELS, z_obj=z_obj[:, :2] * 0, z_im=z_im, seed=11)
  assert np.abs(c.mask - a.mask).max() > 0


def test_truncation_redraws_once(gen):
  z_obj, z_im = gen.sample_z(64, seed=0, truncation=2.0, num_objects=8)
  beyond = np.mean(np.abs(z_obj) > 2.0)
  # Redrawn once: P(|z| > 2)^2 ≈ 0.0021 remain beyond, not 0 (no true truncation), not 0.0455.
  assert 0.0005 < beyond < 0.005
  plain, _ = gen.sample_z(64, seed=0, truncation=None, num_objects=8)
  assert 0.035 < np.mean(np.abs(plain) > 2.0) < 0.056
  # Redrawing the tails lowers the spread: std ≈ sqrt(E[z² ; |z| < 2] + P(|z| > 2)) ≈ 0.885.
  assert abs(z_obj.std() - 0.885) < 0.02 and abs(z_im.mean()) < 0.1


def test_generate_takes_json_layouts(gen):
  layout = {'name': 'a', 'objects': [{'category': 'sky', 'bbox': [0, 0, 1, 0.5]},
                                     {'category': 1, 'bbox': [0.2, 0.3, 0.4, 0.4]}]}
  out = gen.generate(layout, seed=3)
  ref = gen.generate(BOXES, LABELS, seed=3)
  np.testing.assert_allclose(out.image, ref.image, atol=1e-6)
  assert out.mask.shape == (1, MAX_OBJECTS, 64, 64)
  with pytest.raises(LayoutError, match="unknown category 'skyy'"):
    gen.generate({'objects': [{'category': 'skyy', 'bbox': [0, 0, 1, 1]}]})


def test_json_layouts_take_masks_and_first_row(gen):
  layout = {'objects': [{'category': 'sky', 'bbox': [0, 0, 1, 0.5]},
                        {'category': 1, 'bbox': [0.2, 0.3, 0.4, 0.4]}]}
  boxes, labels = np.asarray(PAD_BOX * MAX_OBJECTS, np.float32).reshape(1, -1, 4), np.zeros((1, 4))
  boxes[:, :2], labels[:, :2] = BOXES, LABELS
  masks = np.zeros((1, MAX_OBJECTS, 64, 64), np.float32)
  masks[0, 0, :32], masks[0, 1, 20:40, 12:40] = 1, 1
  out = gen.generate(layout, seed=3, masks=masks, first_row=2)
  ref = gen.generate(boxes, labels, seed=3, masks=masks, first_row=2)
  np.testing.assert_array_equal(out.image, ref.image)
  np.testing.assert_array_equal(out.mask, masks)  # the given masks, not the predicted ones
  with pytest.raises(LayoutError, match='masks must have shape'):
    gen.generate(layout, masks=masks[:, :2])


@pytest.mark.parametrize('kwargs, expected', [
    (dict(boxes=np.zeros((2, 4)), labels=np.zeros((2,))), 'boxes must have shape [B, O, 4]'),
    (dict(boxes=BOXES, labels=LABELS[:, :1]), 'labels must have shape'),
    (dict(boxes=np.full((1, 5, 4), 0.2), labels=np.ones((1, 5))), 'more than the model takes (4)'),
    (dict(boxes=BOXES, labels=np.array([[9, 14]])), 'label 14 outside [0, 14)'),
    (dict(boxes=BOXES * np.nan, labels=LABELS), 'layout 0, object 0 (label 9): bbox'),
    (dict(boxes=BOXES + 0.7, labels=LABELS), 'outside [0, 1]'),
    (dict(boxes=BOXES, labels=LABELS, z_obj=np.zeros((1, 2, 64))),
     'z_obj must have shape [1, 2, 128]'),
    (dict(boxes=BOXES, labels=LABELS, z_im=np.zeros((2, 128))), 'z_im must have shape [1, 128]'),
    (dict(boxes=BOXES, labels=LABELS, z_im=np.full((1, 128), np.inf)), 'z_im holds NaN'),
    (dict(boxes=BOXES), 'labels are missing'),
    (dict(boxes=BOXES, labels=LABELS, image_format='png'), 'image_format must be one of'),
    (dict(boxes=BOXES, labels=LABELS, mask_format='bfloat16'), 'mask_format must be one of'),
    (dict(boxes=BOXES, labels=LABELS, z_obj=[[[0.0] * 128, [0.0]]]),
     'z_obj must be a regular [1, 2, 128] array of numbers'),  # was numpy's ValueError
    (dict(boxes=BOXES, labels=LABELS, masks='abc'), 'masks must be real numbers'),
    (dict(boxes=BOXES, labels=LABELS, masks=[[np.ones((64, 64)), np.ones((64, 63))]]),
     'masks must be a regular [1, 2, 64, 64] array'),
    (dict(boxes=BOXES, labels=LABELS, masks=np.ones((1, 2, 64, 64), complex)),  # was cast
     'masks must be real numbers'),
    (dict(boxes=BOXES, labels=LABELS, first_row=1.5), 'first_row must be an integer, not 1.5'),
    (dict(boxes=BOXES, labels=LABELS, first_row=-1), 'first_row -1 is outside [0, 2147483647]'),
    (dict(boxes=BOXES, labels=LABELS, first_row=2**40), 'first_row 1099511627776 is outside'),
])
def test_bad_api_input(gen, kwargs, expected):
  with pytest.raises(LayoutError) as e:
    gen.generate(**kwargs)
  assert expected in str(e.value), str(e.value)


@pytest.mark.parametrize('boxes, local_masks, expected', [
    (np.full((1, 2, 3), 0.3), np.ones((1, 2, 32, 32)), 'boxes must have shape [B, O, 4]'),
    (BOXES, np.ones((1, 2, 32, 16)), 'local_masks must have shape [B, O, M, M] = [1, 2, M, M]'),
    (BOXES, np.ones((1, 3, 32, 32)), 'got [1, 3, 32, 32]'),
    (BOXES * np.nan, np.ones((1, 2, 32, 32)), 'boxes hold NaN'),
    (BOXES, np.full((1, 2, 32, 32), np.inf), 'local_masks hold NaN'),
])
def test_bad_place_masks_input(gen, boxes, local_masks, expected):
  with pytest.raises(LayoutError) as e:
    gen.place_masks(boxes, local_masks)
  assert expected in str(e.value), str(e.value)


@pytest.mark.parametrize('args, kwargs, expected', [
    ((1.5,), {}, 'batch must be an integer, not 1.5'),  # was 2 rows (jnp.arange(1.5))
    ((-1,), {}, 'batch -1 is outside [1, '),  # was no rows
    ((1,), dict(num_objects=0), 'num_objects 0 is outside [1, '),
    ((2,), dict(first_row=2**31 - 1), 'first_row 2147483647 is outside [0, 2147483646]'),  # wrapped
])
def test_bad_sample_z_input(gen, args, kwargs, expected):
  with pytest.raises(LayoutError) as e:
    gen.sample_z(*args, **kwargs)
  assert expected in str(e.value), str(e.value)


def test_draw_layout_refuses_float_images_and_nan_boxes(gen):
  out = gen.generate(BOXES, LABELS)
  with pytest.raises(LamaError, match=r'takes uint8 images .* visualize.to_uint8'):
    visualize.draw_layout(out.image[0], BOXES[0], LABELS[0], num_classes=14)  # was near black
  boxes = BOXES[0].copy()
  boxes[1, 0] = np.nan  # was int()'s ValueError
  with pytest.raises(LamaError, match=r'object 1 \(label 1\) has box \[nan, 0.3, 0.4, 0.4\]'):
    visualize.draw_layout(np.zeros((64, 64, 3), np.uint8), boxes, LABELS[0], num_classes=14)
  drawn = visualize.draw_layout(np.zeros((64, 64, 3)), BOXES[0], LABELS[0])  # whole floats: fine
  assert drawn.dtype == np.uint8 and drawn.any()


def test_export_writes_generator_only(gen, workdir, tmp_path):
  out = tmp_path / 'exported'
  assert export.main(['--workdir', workdir, '--out', str(out)]) == 0
  mngr = ocp.CheckpointManager(out / 'checkpoints')
  assert mngr.all_steps() == [7]
  assert sorted(os.listdir(out / 'checkpoints' / '7')) == sorted(
      ['_CHECKPOINT_METADATA', 'generator'] + [n for n in os.listdir(out / 'checkpoints' / '7')
                                                if n.startswith('commit')])
  exported = LayoutGenerator.load(str(out))
  np.testing.assert_array_equal(exported.generate(BOXES, LABELS, seed=2).image,
                                gen.generate(BOXES, LABELS, seed=2).image)
  assert export.main(['--workdir', workdir, '--out', str(out)]) == 2  # not empty: refused
  assert export.main(['--workdir', str(tmp_path), '--out', str(tmp_path / 'x')]) == 2
  assert not (tmp_path / 'x').exists()


def test_step_three_is_an_older_checkpoint(workdir):
  older = LayoutGenerator.load(workdir, step=3)
  assert older.step == 3
  np.testing.assert_allclose(np.asarray(older.variables['params']['fc']['bias']), 0)
  assert LayoutGenerator.load(workdir, step=np.int64(3)).step == 3


@pytest.mark.parametrize('step, expected', [
    ('3', "step must be an integer, not '3'"),  # was: "has no step 3 (steps: [3, 7])"
    (3.0, 'step must be an integer, not 3.0'),  # was: "checkpoint .../3.0 is damaged"
    (True, 'step must be an integer, not True'),
    (-1, 'step -1 is outside'),
])
def test_load_names_a_step_that_is_not_an_integer(workdir, step, expected):
  with pytest.raises(LayoutError, match=re.escape(expected)):
    LayoutGenerator.load(workdir, step=step)


# --- python -m lama_jax.sample -------------------------------------------------------------------

def _objects(*specs):
  return [{'category': c, 'bbox': list(b)} for c, b in specs]


SCENE = _objects(('sky', (0, 0, 1, 0.5)), ('grass', (0, 0.5, 1, 0.5)),
                 ('disk', (0.05, 0.55, 0.25, 0.25)), ('square', (0.6, 0.1, 0.3, 0.3)))
MOVED = SCENE[:2] + _objects(('disk', (0.6, 0.6, 0.3, 0.3))) + SCENE[3:]


def _write(tmp_path, data, name='layouts.json'):
  path = tmp_path / name
  path.write_text(data if isinstance(data, str) else json.dumps(data))
  return str(path)


def _pngs(folder):
  if not os.path.isdir(folder):
    return []
  return sorted(p for p in os.listdir(folder) if p.endswith('.png'))


def test_sample_cli_writes_every_file(workdir, tmp_path, capsys):
  layouts = _write(tmp_path, [{'name': 'scene', 'objects': SCENE},
                              {'name': 'small', 'objects': _objects((3, (0.2, 0.2, 0.5, 0.5)))}])
  out = tmp_path / 'out'
  assert sample.main(['--workdir', workdir, '--layouts', layouts, '--out', str(out),
                      '--num_samples', '2', '--seed', '1']) == 0
  expected = ['contact_sheet.png']
  for name in ('scene', 'small'):
    expected.append(f'{name}_layout.png')
    for k in range(2):
      expected += [f'{name}_{k}.png', f'{name}_{k}_mask.png', f'{name}_{k}_raw_mask.png']
  assert _pngs(out) == sorted(expected)
  assert sorted(os.listdir(out)) == sorted(expected)  # no temporary files left
  image = np.asarray(Image.open(out / 'scene_0.png'))
  assert image.shape == (64, 64, 3) and image.std() > 0
  assert np.asarray(Image.open(out / 'scene_0_mask.png')).shape == (64, 64, 3)
  assert np.asarray(Image.open(out / 'scene_layout.png')).max() > 0  # boxes drawn
  assert 'wrote 15 files for 2 layouts' in capsys.readouterr().out


@pytest.mark.parametrize('content, expected', [
    ('{"name": "a", "objects": [', 'broken JSON at line 1'),
    ('[1, 2]', "layout 0: not a layout"),
    ('3.5', 'not a layout or a list of layouts'),
    ({'name': 'a', 'object': []}, "layout 1 'a': missing \"objects\""),
    ({'name': 'a', 'objects': _objects(('tree', (0, 0, 1, 1)))},
     "object 0 ('tree'): unknown category 'tree'"),
    ({'name': 'a', 'objects': _objects((42, (0, 0, 1, 1)))},
     'object 0 (42): unknown category id 42'),
    ({'name': 'a', 'objects': _objects(('__image__', (0, 0, 1, 1)))}, 'padding class'),
    ({'name': 'a', 'objects': _objects((0, (0, 0, 1, 1)))}, 'padding class'),
    ({'name': 'a', 'objects': _objects(('disk', (0, 0, 1)))}, 'bbox must be four numbers'),
    ('{"name": "a", "objects": [{"category": "disk", "bbox": [0, NaN, 1, 1]}]}', 'not finite'),
    ({'name': 'a', 'objects': _objects(('disk', (0.2, 0.2, 0, 0.3)))}, 'zero or negative size'),
    ({'name': 'a', 'objects': _objects(('disk', (0.2, 0.2, -0.1, 0.3)))}, 'zero or negative size'),
    ({'name': 'a', 'objects': _objects(('disk', (0.5, 0.5, 0.6, 0.3)))}, 'outside [0, 1]'),
    ({'name': 'a', 'objects': SCENE + SCENE[:1]}, '5 objects, more than the model takes (4)'),
])
def test_sample_cli_refuses_bad_layouts(workdir, tmp_path, capsys, content, expected):
  good = {'name': 'good', 'objects': SCENE}
  data = [good, content] if isinstance(content, dict) else content
  layouts = _write(tmp_path, data)
  out = tmp_path / 'out'
  assert sample.main(['--workdir', workdir, '--layouts', layouts, '--out', str(out)]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1, err
  assert expected in err and layouts in err, err
  assert _pngs(out) == []  # nothing written, not even for the good layout


@pytest.mark.parametrize('args, expected', [
    (['--layouts', 'missing.json'], 'missing.json: no such layout file'),
    ([], 'give either --layouts FILE or --val'),
    (['--val'], '--val needs --data_dir'),
    (['--layouts', 'data/layouts/shapes.json', '--num_samples', '0'],
     '--num_samples=0: 0 is not an integer'),
    # These were ignored without a word.
    (['--layouts', 'data/layouts/shapes.json', '--data_dir', 'data/tfds'],
     '--data_dir goes with --val; --layouts takes the layouts from its file'),
    (['--layouts', 'data/layouts/shapes.json', '--dataset', 'coco_stuff'],
     '--dataset goes with --val'),
    (['--val', '--data_dir', 'data/tfds', '--fix_z'], '--fix_z goes with --layouts'),
])
def test_sample_cli_refuses_bad_flags(workdir, tmp_path, capsys, args, expected):
  assert sample.main(['--workdir', workdir, '--out', str(tmp_path / 'o'), *args]) == 2
  assert expected in capsys.readouterr().err


def test_sample_cli_refuses_a_non_generator_dir(tmp_path, capsys):
  assert sample.main(['--workdir', str(tmp_path), '--layouts', 'data/layouts/shapes.json',
                      '--out', str(tmp_path / 'o')]) == 2
  assert 'no generator.json' in capsys.readouterr().err


def test_a_foreign_manifest_is_named(tmp_path, capsys):
  """A folder holding someone else's manifest.json: the message named neither the file nor why."""
  (tmp_path / 'manifest.json').write_text('{"name": "my app", "version": 1}')
  assert sample.main(['--workdir', str(tmp_path), '--layouts', 'data/layouts/shapes.json',
                      '--out', str(tmp_path / 'o')]) == 2
  err = capsys.readouterr().err
  assert err == (f'error: {tmp_path} has no generator.json, and its manifest.json is not one that '
                 'export --format stablehlo writes (it has no "format": "lama_jax.portable"): not '
                 'a generator directory, training workdir or portable artifact.\n'), err


@pytest.mark.parametrize('vocabulary, expected', [
    (None, 'has no vocabulary.json: not a generator directory'),
    (b'[1, 2]', 'vocabulary.json does not hold a JSON object'),
    (b'\x82\xfe\x00garbage', 'vocabulary.json is not valid JSON'),  # was a UnicodeDecodeError
    (b'{"dataset": "shapes", "num_classes": 14, "id_to_name": ["__image__"]}',
     'vocabulary.json: Not a vocabulary'),  # was an AttributeError
])
def test_a_missing_or_bad_vocabulary_is_named_once(workdir, tmp_path, vocabulary, expected):
  copy = tmp_path / 'copy'
  shutil.copytree(workdir, copy)
  if vocabulary is None:
    os.remove(copy / 'vocabulary.json')
  else:
    (copy / 'vocabulary.json').write_bytes(vocabulary)
  with pytest.raises(generator_dir.GeneratorDirError) as e:
    LayoutGenerator.load(str(copy))
  message = str(e.value)
  assert expected in message and message.count('vocabulary.json') == 1, message


def test_sample_cli_error_has_no_traceback(workdir, tmp_path):
  layouts = _write(tmp_path, {'name': 'bad', 'objects': _objects(('disk', (0.5, 0.5, 0.9, 0.2)))})
  proc = subprocess.run([sys.executable, '-m', 'lama_jax.sample', '--workdir', workdir, '--layouts',
                         layouts, '--out', str(tmp_path / 'out')], cwd=REPO, capture_output=True,
                        text=True, timeout=300, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 2
  assert 'Traceback' not in proc.stderr
  lines = [l for l in proc.stderr.splitlines() if l.startswith('error: ')]
  assert len(lines) == 1 and "layout 0 'bad', object 0 ('disk'): bbox" in lines[0]
  assert _pngs(tmp_path / 'out') == []


def _far_from(boxes, size=64, margin=3):
  """Pixels at least `margin` pixels away from every box."""
  keep = np.ones((size, size), bool)
  for x, y, w, h in boxes:
    x0, y0 = int(np.floor(x * (size - 1))) - margin, int(np.floor(y * (size - 1))) - margin
    x1 = int(np.ceil((x + w) * (size - 1))) + margin
    y1 = int(np.ceil((y + h) * (size - 1))) + margin
    keep[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = False
  return keep


@pytest.mark.parametrize('fix_z', [True, False])
def test_fix_z_keeps_masks_away_from_the_moved_box(workdir, tmp_path, fix_z):
  layouts = _write(tmp_path, [{'name': 'before', 'objects': SCENE},
                              {'name': 'after', 'objects': MOVED}])
  out = tmp_path / 'out'
  assert sample.main(['--workdir', workdir, '--layouts', layouts, '--out', str(out), '--seed', '4']
                     + (['--fix_z'] if fix_z else [])) == 0
  far = _far_from([SCENE[2]['bbox'], MOVED[2]['bbox']])
  assert far.mean() > 0.4
  for suffix in ('_mask', '_raw_mask'):
    a = np.asarray(Image.open(out / f'before_0{suffix}.png'))[far]
    b = np.asarray(Image.open(out / f'after_0{suffix}.png'))[far]
    if fix_z:
      np.testing.assert_array_equal(a, b)
    else:
      assert np.abs(a.astype(int) - b).max() > 0  # fresh z elsewhere: the test has teeth


def test_fixed_z_slots_match_objects_by_category_and_occurrence():
  from lama_jax.inference.layouts import parse_layouts
  vocab = load_vocabulary('shapes')
  first = _objects(('disk', (0, 0, 0.5, 0.5)), ('disk', (0.5, 0.5, 0.5, 0.5)))
  added = _objects(('sky', (0, 0, 1, 0.5))) + first
  parsed = parse_layouts([{'name': 'a', 'objects': first}, {'name': 'b', 'objects': added}],
                         vocab, 4)
  assert sampling.fixed_z_slots(parsed) == [[0, 1], [2, 0, 1]]


class _FakeEval:
  def __init__(self, batches):
    self.batches = batches

  def as_numpy_iterator(self):
    return iter(self.batches)


def test_ctrl_c_while_orbax_writes_leaves_no_temporary_folder(tmp_path, monkeypatch):
  """export (and convert) write a generator directory through atomic_dir: after a Ctrl-C while
  Orbax writes, its writer threads end before the temporary folder is removed (they recreated its
  subfolders after the removal, and a .out.XXXX.tmp folder was left behind)."""
  g, variables = _tiny_variables()
  real_save, real_rmtree = ocp.CheckpointManager.save, shutil.rmtree
  managers, busy = [], []

  def save(self, *args, **kwargs):
    managers.append(self)
    real_save(self, *args, **kwargs)
    raise KeyboardInterrupt  # while the writes go on in the background

  def rmtree(path, *args, **kwargs):
    busy.append(any(m.is_saving_in_progress() for m in managers))
    real_rmtree(path, *args, **kwargs)
  monkeypatch.setattr(ocp.CheckpointManager, 'save', save)
  monkeypatch.setattr(shutil, 'rmtree', rmtree)
  with pytest.raises(KeyboardInterrupt):
    generator_dir.save_generator_dir(str(tmp_path / 'out'), g, variables, MAX_OBJECTS, 'shapes',
                                     load_vocabulary('shapes'))
  for manager in managers:
    with contextlib.suppress(Exception):  # writes into a removed folder fail (without the fix)
      manager.wait_until_finished()
  assert busy == [False]
  assert os.listdir(tmp_path) == []


def test_sample_shows_progress_in_images_for_one_layout(workdir, tmp_path, capsys):
  """One layout with many samples is long work too: the bar counts images, not layouts."""
  layouts = _write(tmp_path, {'name': 'one', 'objects': _objects(('disk', (0.1, 0.1, 0.5, 0.5)))})
  assert sample.main(['--workdir', workdir, '--layouts', layouts, '--out', str(tmp_path / 'o'),
                      '--num_samples', '3', '--batch_size', '2']) == 0
  err = capsys.readouterr().err
  assert re.search(r'samples: 100%.* 3/3 ', err), err


def test_sample_val_without_the_data_names_the_generators_size(workdir, tmp_path, capsys):
  assert sample.main(['--workdir', workdir, '--val', '--data_dir', str(tmp_path), '--out',
                      str(tmp_path / 'out')]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1, err
  assert ('/shapes/64px/2.0.0). Run: python -m lama_jax.prepare --dataset shapes --image_sizes 64 '
          '--manual_dir') in err, err  # the generator's size, not the default 128
  assert not (tmp_path / 'out').exists()


def test_sample_val_writes_images_named_by_id(workdir, tmp_path, monkeypatch, capsys):
  from lama_jax.datasets import input_pipeline
  boxes = np.tile(np.asarray(PAD_BOX, np.float32), (3, MAX_OBJECTS, 1))
  boxes[:, 0] = [0.1, 0.1, 0.5, 0.5]
  boxes[:, 1] = [0.0, 0.5, 1.0, 0.5000001]  # a prepared box may overshoot by a hair
  labels = np.zeros((3, MAX_OBJECTS), np.int32)
  labels[:, :2] = [1, 11]
  ids = np.array([139, 285, 632])
  calls = []

  def fake(data_dir, dataset, image_size, batch_size, max_objects, with_masks=False):
    assert not with_masks
    calls.append((data_dir, dataset, image_size, batch_size, max_objects))
    return _FakeEval([
        {'image': np.zeros((2, 64, 64, 3)), 'boxes': boxes[:2], 'labels': labels[:2],
         'image_id': ids[:2]},
        {'image': np.zeros((1, 64, 64, 3)), 'boxes': boxes[2:], 'labels': labels[2:],
         'image_id': ids[2:]}])
  monkeypatch.setattr(input_pipeline, 'create_eval_dataset', fake)
  monkeypatch.setattr(input_pipeline, 'num_examples', lambda *args: len(ids))
  out = tmp_path / 'val'
  assert sample.main(['--workdir', workdir, '--val', '--data_dir', '/data', '--out', str(out),
                      '--batch_size', '2', '--num_samples', '2']) == 0
  assert calls == [('/data', 'shapes', 64, 2, MAX_OBJECTS)]
  assert _pngs(out) == sorted(f'{i}_{r}.png' for i in ids for r in range(2))
  assert 'wrote 6 images' in capsys.readouterr().out


def test_path_layouts_many_batches_and_colours_say_what_is_wrong(gen, tmp_path):
  """pathlib layouts are files like str ones; generate_many without labels and colorize_masks with
  a label past the table were a KeyError and an IndexError."""
  import pathlib  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(_write(tmp_path, {'name': 'scene', 'objects': SCENE}))
  np.testing.assert_array_equal(gen.generate(path, seed=1).image,
                                gen.generate(str(path), seed=1).image)
  assert [l.name for l in gen.parse_layouts(path)] == ['scene']
  with pytest.raises(LayoutError, match='batch 1 has no labels: generate_many takes'):
    list(gen.generate_many([{'boxes': BOXES, 'labels': LABELS}, {'boxes': BOXES}]))
  with pytest.raises(LamaError, match=r'labels run over \[1, 9\], outside \[0, 5\)'):
    visualize.colorize_masks(np.ones((1, 2, 4, 4)), LABELS, 5)


def test_colorize_masks_takes_the_float_labels_generate_takes(gen):
  """generate takes integral float labels; colouring its masks with the same labels was an
  IndexError ('arrays used as indices must be of integer type')."""
  out = gen.generate(BOXES, LABELS.astype(np.float32), seed=1)
  np.testing.assert_array_equal(
      visualize.colorize_masks(out.mask, LABELS.astype(np.float32), gen.num_classes),
      visualize.colorize_masks(out.mask, LABELS, gen.num_classes))
  with pytest.raises(LamaError, match=r'labels must be whole numbers \(category ids\), got '
                     'float64 values such as 1.5'):
    visualize.colorize_masks(out.mask, np.array([[9, 1.5]]), gen.num_classes)


def test_sample_cli_images_are_generate_with_the_layout_seed(workdir, gen, tmp_path, capsys):
  """Same --seed, same image from Python: the recipe that sample's --help and the README give (it
  was nowhere; generate(..., seed=SEED) gives other images)."""
  data = [{'name': 'scene', 'objects': SCENE}, {'name': 'small', 'objects': SCENE[2:3]}]
  out = tmp_path / 'out'
  assert sample.main(['--workdir', workdir, '--layouts', _write(tmp_path, data), '--out', str(out),
                      '--num_samples', '2', '--seed', '5']) == 0
  for i, layout in enumerate(data):
    for k in range(2):
      png = np.asarray(Image.open(out / f'{layout["name"]}_{k}.png'))
      np.testing.assert_array_equal(png, gen.generate(
          layout, seed=sampling.layout_seed(5, i), first_row=k, image_format='uint8').image[0])
  assert not np.array_equal(png, gen.generate(data[1], seed=5, image_format='uint8').image[0])
  assert 'sampling.layout_seed(SEED, I)' in sample.FLAGS['seed'].help
  assert 'seed=sampling.layout_seed(SEED, I) and\nfirst_row=k' in sample.__doc__


def test_a_huge_integer_truncation_truncates_nothing(gen):
  """An int truncation past int32 was an OverflowError traceback from the jitted program (and one
  past float64 from sample_z): it redraws no z, as None."""
  plain = gen.generate(BOXES, LABELS, seed=2, truncation=None).image
  for truncation in (2**40, 10**400):
    np.testing.assert_allclose(gen.generate(BOXES, LABELS, seed=2, truncation=truncation).image,
                               plain, atol=1e-6)  # another program: float32 rounding apart
    np.testing.assert_allclose(gen.sample_z(1, 2, truncation)[0], gen.sample_z(1, 2, None)[0],
                               atol=1e-6)
