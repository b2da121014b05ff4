"""python -m lama_jax.synthesize: the COCO dataset it writes, resume, jitter, bad input."""
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lama_jax import files
from lama_jax import synthesize
from lama_jax.errors import LamaError
from lama_jax.datasets import input_pipeline
from lama_jax.datasets.vocabulary import load_vocabulary
from lama_jax.inference import coco_export
from lama_jax.inference import generator_dir
from lama_jax.inference import synthesis
from tests.test_inference import MAX_OBJECTS, _tiny_variables

LAYOUTS = [
    {'name': 'field', 'objects': [
        {'category': 'sky', 'bbox': [0, 0, 1, 0.5]}, {'category': 'grass', 'bbox': [0, 0.5, 1, 0.5]},
        {'category': 'disk', 'bbox': [0.1, 0.4, 0.3, 0.3]},
        {'category': 'square', 'bbox': [0.55, 0.2, 0.35, 0.35]}]},
    {'name': 'room', 'objects': [
        {'category': 'wall', 'bbox': [0, 0, 1, 0.6]}, {'category': 'sand', 'bbox': [0, 0.6, 1, 0.4]},
        {'category': 'star', 'bbox': [0.3, 0.3, 0.4, 0.4]}]},
]
# Batch 4 everywhere: one compiled generator program for the whole file.
BASE = ['--num_images', '7', '--batch_size', '4', '--samples_per_layout', '2', '--jitter', '0.1',
        '--seed', '3']


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  g, variables = _tiny_variables()
  path = str(tmp_path_factory.mktemp('gen') / 'gen')
  generator_dir.save_generator_dir(path, g, variables, MAX_OBJECTS, 'shapes',
                                   load_vocabulary('shapes'), step=9)
  return path


@pytest.fixture(scope='module')
def layouts(tmp_path_factory):
  path = tmp_path_factory.mktemp('layouts') / 'layouts.json'
  path.write_text(json.dumps(LAYOUTS))
  return str(path)


@pytest.fixture(scope='module')
def finished(model, layouts, tmp_path_factory):
  """An uninterrupted run: (output folder, its stdout)."""
  out = tmp_path_factory.mktemp('runs') / 'full'
  args = ['--model', model, '--layouts', layouts, '--out', str(out), *BASE]
  assert synthesize.main(args) == 0
  return out


def _tree(folder: Path) -> dict[str, bytes]:
  return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob('*'))
          if p.is_file()}


def test_coco_file_loads_and_evaluates_to_ap_one(finished):
  assert sorted(_tree(finished)) == sorted(
      ['annotations.json', 'synthesis.json'] + [f'images/{n:012d}.png' for n in range(1, 8)])
  coco = COCO(str(finished / 'annotations.json'))
  assert sorted(coco.getImgIds()) == list(range(1, 8))
  cats = coco.loadCats(coco.getCatIds())
  assert [c['name'] for c in cats][:3] == ['disk', 'square', 'triangle'] and len(cats) == 13
  assert all(c['isthing'] == (c['id'] <= 8) for c in cats)
  anns = coco.loadAnns(coco.getAnnIds())
  assert len(anns) > 7 and {a['category_id'] for a in anns} >= {1, 2, 8, 9, 11}
  for image_id in coco.getImgIds():
    masks = []
    for a in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
      m = coco.annToMask(a)
      assert m.sum() == a['area'] > 0
      x, y, w, h = a['bbox']
      rows, cols = np.nonzero(m)
      assert rows.min() + 0.5 >= y and rows.max() + 0.5 <= y + h  # pixel centres inside the box
      assert cols.min() + 0.5 >= x and cols.max() + 0.5 <= x + w
      masks.append(m)
    assert np.max(np.sum(masks, 0)) == 1  # threshold 0.5: at most one object owns a pixel
  for iou_type in ('segm', 'bbox'):
    results = coco.loadRes([dict(a, score=1.0) for a in anns])
    evaluator = COCOeval(coco, results, iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]


def test_samples_per_layout_and_jitter(finished):
  doc = json.loads((finished / 'annotations.json').read_text())
  assert [i['layout'] for i in doc['images']] == ['field', 'field', 'room', 'room', 'field',
                                                  'field', 'room']
  boxes = {}
  for a in doc['annotations']:
    boxes.setdefault(a['image_id'], {})[a['id'] % MAX_OBJECTS] = a['bbox']
  # Two samples of one jittered layout share boxes; the next pass over the layouts moves them.
  shared = set(boxes[1]) & set(boxes[2]) & set(boxes[5])
  assert shared and all(boxes[1][j] == boxes[2][j] for j in shared)
  assert any(boxes[1][j] != boxes[5][j] for j in shared)


def test_jitter_boxes_stay_inside_and_keep_padding():
  rng = np.random.default_rng(0)
  boxes = np.array([[0, 0, 1, 0.5], [0.9, 0.9, 0.1, 0.1], [-0.6, -0.6, 0.5, 0.5]], np.float32)
  labels = np.array([9, 1, 0])
  for _ in range(50):
    moved = synthesis.jitter_boxes(boxes, labels, 0.3, rng)
    assert np.all(moved[:2, :2] >= 0) and np.all(moved[:2, :2] + moved[:2, 2:] <= 1 + 1e-6)
    assert np.all(moved[:2, 2:] >= synthesis.MIN_SIDE)
    np.testing.assert_array_equal(moved[2], boxes[2])
  np.testing.assert_allclose(synthesis.jitter_boxes(boxes, labels, 0.0, rng)[:2], boxes[:2],
                             atol=1e-7)


def test_binary_masks_use_the_normalised_share_inside_the_box():
  mask = np.zeros((3, 4, 4), np.float32)
  mask[0] = 0.2  # faint everywhere: owns pixels where nothing else is
  mask[1, :2] = 1.5  # strong in the top half
  binary = coco_export.binary_masks(mask, np.array([[0, 0, 1, 1], [0, 0, 1, 0.75], [0, 0, 1, 1]]),
                                    np.array([9, 1, 0]))
  np.testing.assert_array_equal(binary[0], np.repeat([[0], [0], [1], [1]], 4, 1))
  np.testing.assert_array_equal(binary[1], np.repeat([[1], [1], [0], [0]], 4, 1))
  assert not binary[2].any()  # padding
  rle = coco_export.encode(binary[1])
  assert mask_utils.area({'size': rle['size'], 'counts': rle['counts'].encode()}) == 8


def test_resume_after_interrupt_gives_the_same_files(model, layouts, finished, tmp_path,
                                                     monkeypatch, capsys):
  out = tmp_path / 'run'
  args = ['--model', model, '--layouts', layouts, '--out', str(out), *BASE]
  write_png, calls = files.write_png, []

  def interrupted(path, image):
    calls.append(path)
    if len(calls) == 6:  # in the middle of the second batch
      raise KeyboardInterrupt
    write_png(path, image)
  monkeypatch.setattr(files, 'write_png', interrupted)
  assert synthesize.main(args) == 130
  monkeypatch.undo()
  assert 'continue with python -m lama_jax.synthesize' in capsys.readouterr().err
  assert not (out / 'annotations.json').exists()
  assert len(list((out / 'images').glob('*.png'))) == 5
  (out / 'images' / '.000000000006.png.x.tmp').write_bytes(b'half')  # as left by a SIGKILL
  assert synthesize.main(['--out', str(out), '--resume']) == 0
  assert '4 already there' in capsys.readouterr().out  # the first batch was kept
  assert _tree(out) == _tree(finished)
  assert synthesize.main(['--out', str(out), '--resume', '--seed', '3']) == 0  # already complete
  assert _tree(out) == _tree(finished)


def test_interrupt_before_the_record_leaves_a_folder_that_starts_again(model, layouts, tmp_path,
                                                                      monkeypatch, capsys):
  """Ctrl-C while synthesis.json was written left images/ and .partial/ without it: neither a new
  run ('not empty') nor --resume ('nothing to resume') took the folder."""
  out = tmp_path / 'run'
  args = ['--model', model, '--layouts', layouts, '--out', str(out), *BASE]

  def interrupted(path, data):
    raise KeyboardInterrupt
  monkeypatch.setattr(files, 'write_json', interrupted)
  assert synthesize.main(args) == 130
  monkeypatch.undo()
  assert not out.exists() or not any(out.iterdir())
  assert synthesize.main(args) == 0, capsys.readouterr().err


def test_split_source_reads_clips_and_cycles(model, tmp_path, monkeypatch):
  boxes = np.tile(np.asarray(input_pipeline.PAD_BOX, np.float32), (2, MAX_OBJECTS, 1))
  boxes[:, 0] = [0.0, 0.5, 1.0, 0.5000001]  # prepared boxes may overshoot by a hair
  boxes[:, 1] = [0.2, 0.1, 0.3, 0.3]
  labels = np.array([[11, 3, 0, 0], [13, 7, 0, 0]], np.int32)
  calls = []

  def fake(data_dir, dataset, split, max_objects, limit=None):
    calls.append((data_dir, dataset, split, max_objects, limit))
    return {'boxes': boxes, 'labels': labels, 'image_id': np.array([101, 102])}
  monkeypatch.setattr(input_pipeline, 'read_layouts', fake)
  out = tmp_path / 'split'
  assert synthesize.main(['--model', model, '--split', 'val', '--data_dir', '/data', '--out',
                          str(out), '--num_images', '3', '--batch_size', '4']) == 0
  assert calls == [('/data', 'shapes', 'val', MAX_OBJECTS, 3)]
  doc = json.loads((out / 'annotations.json').read_text())
  assert [i['layout'] for i in doc['images']] == ['val:101', 'val:102', 'val:101']
  assert all(a['bbox'][1] + a['bbox'][3] <= 64 for a in doc['annotations'])


@pytest.mark.parametrize('names, expected', [
    (None, None),  # the same categories under another dataset's name: taken
    ({'3': 'tree'}, "(id 3 is 'tree' there, "),
    ({'14': 'tree'}, '(14 categories, the generator 13)'),
])
def test_a_split_of_another_dataset_needs_the_generators_categories(model, tmp_path, names,
                                                                    expected):
  from lama_jax.inference import sampling
  from lama_jax.inference.generator import LayoutGenerator
  gen = LayoutGenerator.load(model)
  vocab = gen.vocabulary.to_json()
  vocab['dataset'] = 'visual_genome'
  vocab['id_to_name'].update(names or {})
  vocab['num_classes'] = len(vocab['id_to_name'])
  (tmp_path / 'visual_genome').mkdir()
  (tmp_path / 'visual_genome' / 'vocab.json').write_text(json.dumps(vocab))
  if expected is None:
    sampling.check_split_categories(gen, str(tmp_path), 'visual_genome')
  else:
    with pytest.raises(LamaError, match=re.escape(expected)):
      sampling.check_split_categories(gen, str(tmp_path), 'visual_genome')
  sampling.check_split_categories(gen, '/nowhere', 'shapes')  # its own dataset: not looked at


def _bad_cases(model, layouts, tmp_path):
  used = tmp_path / 'used'
  used.mkdir()
  (used / 'x').write_text('x')
  afile = tmp_path / 'afile'
  afile.write_text('x')
  bad_layouts = tmp_path / 'bad.json'
  bad_layouts.write_text(json.dumps({'name': 'b', 'objects': [{'category': 'tree',
                                                               'bbox': [0, 0, 1, 1]}]}))
  m, n = ['--model', model], ['--num_images', '2']
  return [
      (['--layouts', layouts, *n], '--model is required'),
      ([*m, '--layouts', layouts], '--num_images must be at least 1'),
      ([*m, '--layouts', layouts, '--num_images', '1e9'], "'1e9' is not an integer"),
      ([*m, '--layouts', layouts, '--num_images', str(10**9)],
       '--num_images must be at most 100,000,000 (one annotations.json lists them all), got '
       '1,000,000,000'),
      ([*m, *n], 'give either --layouts FILE or --split'),
      ([*m, *n, '--layouts', layouts, '--split', 'val'], 'give either --layouts FILE or --split'),
      ([*m, *n, '--split', 'val'], '--split needs --data_dir'),
      ([*m, *n, '--layouts', layouts, '--data_dir', '/d'], '--data_dir goes with --split;'),
      ([*m, *n, '--layouts', layouts, '--dataset', 'shapes'], '--dataset goes with --split;'),
      ([*m, *n, '--split', 'test', '--data_dir', '/d'], '--split=test: value should be one of'),
      ([*m, *n, '--layouts', 'missing.json'], 'missing.json: no such layout file'),
      ([*m, *n, '--layouts', layouts, '--jitter', '0.7'], '--jitter must lie in [0, 0.5]'),
      ([*m, *n, '--layouts', layouts, '--mask_threshold', '1'], '--mask_threshold must lie'),
      ([*m, *n, '--layouts', layouts, '--samples_per_layout', '0'], '--samples_per_layout must'),
      ([*m, *n, '--layouts', str(bad_layouts)], "object 0 ('tree'): unknown category 'tree'"),
      (['--model', str(tmp_path), *n, '--layouts', layouts], 'no generator.json'),
      ([*m, *n, '--layouts', layouts, '--out', str(used)], 'not empty; pass --resume'),
      (['--resume'], 'nothing to resume'),
      ([*m, *n, '--layouts', layouts, '--seed', '-5'], '-5 is not an integer in the range'),
      ([*m, *n, '--layouts', layouts, '--seed', str(2**64)], 'not an integer in the range'),
      ([*m, *n, '--layouts', layouts, '--truncation', 'nan'], 'not a number (NaN)'),
      ([*m, *n, '--layouts', layouts, '--batch_size', '100000'], '100000 is not integer <= 128'),
      ([*m, *n, '--layouts', str(tmp_path)], 'a folder, not a layout file'),
      ([*m, *n, '--split', 'val', '--data_dir', '/d', '--dataset', 'bogus'],
       '--dataset=bogus: value should be one of'),
      ([*m, *n, '--split', 'val', '--data_dir', '/d', '--dataset', 'coco_stuff'],
       '--dataset coco_stuff has other categories than the generator, trained on shapes ('),
      ([*m, *n, '--layouts', layouts, '--out', str(afile)], 'exists and is not a folder'),
      ([*m, *n, '--layouts', layouts, '--out', f'{afile}/sub'], f'{afile} is a file, not a folder'),
  ]


@pytest.mark.parametrize('case', range(27))
def test_bad_input_is_one_line_and_writes_nothing(model, layouts, tmp_path, capsys, case):
  args, expected = _bad_cases(model, layouts, tmp_path)[case]
  if '--out' not in args:
    args = [*args, '--out', str(tmp_path / 'out')]
  assert synthesize.main(args) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1 and expected in err, err
  assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('record', ['[1]', '{"flags": 5}', '{"flags": {"num_images": 2}}'])
def test_resume_refuses_a_record_that_is_not_one(tmp_path, capsys, record):
  (tmp_path / synthesis.RECORD).write_text(record)
  assert synthesize.main(['--out', str(tmp_path), '--resume']) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1, err
  assert f'{tmp_path / synthesis.RECORD}: not a synthesis record' in err, err


def test_resume_names_a_changed_layout_file(model, tmp_path, capsys):
  layouts = tmp_path / 'layouts.json'
  layouts.write_text(json.dumps(LAYOUTS))
  out = tmp_path / 'out'
  assert synthesize.main(['--model', model, '--layouts', str(layouts), '--out', str(out),
                          '--num_images', '1', '--batch_size', '4']) == 0
  layouts.write_text(json.dumps(LAYOUTS[:1]))
  capsys.readouterr()
  assert synthesize.main(['--out', str(out), '--resume']) == 2
  err = capsys.readouterr().err
  assert err == (f'error: --layouts {layouts}: the file has changed since the interrupted run in '
                 f'{out} started; restore it, or start a new --out\n'), err


def test_resume_names_images_removed_from_a_finished_run(finished, tmp_path, capsys):
  out = tmp_path / 'copy'
  shutil.copytree(finished, out)
  (out / 'images' / '000000000003.png').unlink()
  (out / 'images' / '000000000005.png').unlink()
  assert synthesize.main(['--out', str(out), '--resume']) == 2  # was: "complete"
  err = capsys.readouterr().err
  assert err == (f'error: {out} was finished, but 2 of the 7 images its annotations.json lists are '
                 'missing (images/000000000003.png, ...): they were removed afterwards. Generate '
                 'the dataset again in a new --out\n'), err


def test_resume_refuses_other_settings(finished, capsys):
  assert synthesize.main(['--out', str(finished), '--resume', '--seed', '4']) == 2
  assert '--seed=4 differs from the interrupted run' in capsys.readouterr().err
