"""prepare: the official COCO-Stuff filters on a fixture, Visual Genome's h5, and clear errors."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from lama_jax import prepare
from lama_jax.datasets import preparation as prepare_lib
from lama_jax.datasets import vocabulary
from lama_jax.datasets import builders
from lama_jax.datasets import coco_stuff
from lama_jax.datasets import common
from tests import coco_fixture

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


SIZES = (16, 128)  # 128: the builders' default config, what `tfds.builder(NAME)` opens


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  manual = coco_fixture.write_coco(str(tmp_path_factory.mktemp('coco')))
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  return prepare_lib.prepare('coco_stuff', manual, data_dir, image_sizes=SIZES), data_dir, manual


def _read_split(data_dir: str, split: str, size: int = 128) -> dict[int, dict]:
  ds = builders.make('coco_stuff', data_dir, size).as_dataset(split=split)
  return {int(ex['image_id']): ex for ex in tfds.as_numpy(ds)}


@pytest.mark.parametrize('split', ['train', 'val'])
def test_kept_images_and_objects_follow_official_rules(prepared, split):
  summaries, data_dir, _ = prepared
  expected = coco_fixture.EXPECTED[split]
  got = _read_split(data_dir, split)
  assert sorted(got) == sorted(expected)
  assert sorted(_read_split(data_dir, split, 16)) == sorted(expected)  # every size, same images
  for image_id, objects in expected.items():
    w, h, _ = coco_fixture.IMAGES[split][image_id]
    ex = got[image_id]
    np.testing.assert_array_equal(ex['labels'], [c for c, _ in objects])
    want = np.array([(x / w, y / h, bw / w, bh / h) for _, (x, y, bw, bh) in objects], np.float32)
    np.testing.assert_allclose(ex['boxes'], want, rtol=1e-6)
  want = {'split': split, 'images': len(expected), 'objects': sum(map(len, expected.values())),
          'skipped_degenerate_boxes': coco_fixture.DEGENERATE[split], **coco_fixture.OUTSIDE[split]}
  assert {k: summaries[split][k] for k in want} == want


def test_prepared_dataset_found_by_name(prepared):
  summaries, data_dir, _ = prepared
  builder = tfds.builder('coco_stuff', data_dir=data_dir)  # registered by name
  assert builder.info.splits['train'].num_examples == summaries['train']['images']
  assert tfds.builder('coco_stuff/16px', data_dir=data_dir).info.splits['val'].num_examples == 1


@pytest.mark.parametrize('size', SIZES)
def test_images_stored_resized_once(prepared, size):
  """Each size's copy holds every image resized the official way (test_input_pipeline checks the
  resize against PIL's and against what the pipeline computed before at every read)."""
  _, data_dir, manual = prepared
  for image_id, ex in _read_split(data_dir, 'train', size).items():
    assert ex['image'].shape == (size, size, 3) and ex['image'].dtype == np.uint8
    with open(os.path.join(manual, 'train2017', f'{image_id:012d}.jpg'), 'rb') as f:
      np.testing.assert_array_equal(ex['image'], common.resize_image(f.read(), size))


def _broken_copy(tmp_path, break_it) -> str:
  manual = coco_fixture.write_coco(str(tmp_path / 'coco'))
  break_it(manual)
  return manual


def _edit_json(manual, name, edit):
  path = os.path.join(manual, 'annotations', name)
  with open(path) as f:
    data = json.load(f)
  edit(data)
  with open(path, 'w') as f:
    json.dump(data, f)


@pytest.mark.parametrize('break_it, message', [
    (lambda m: os.remove(os.path.join(m, 'annotations', 'stuff_val2017.json')),
     'Missing annotation file .*stuff_val2017.json'),
    (lambda m: os.remove(os.path.join(m, 'train2017', '000000000003.jpg')),
     r'missing: .*000000000003.jpg \(image id 3\)'),
    (lambda m: _edit_json(m, 'instances_train2017.json', lambda d: d['annotations'].append(
        {'id': 999, 'image_id': 4242, 'category_id': 1, 'bbox': [0, 0, 9, 9], 'iscrowd': 0})),
     'annotation id 999 points at image id 4242'),
    (lambda m: _edit_json(m, 'stuff_train2017.json', lambda d: d['annotations'].append(
        {'id': 998, 'image_id': 1, 'category_id': 77, 'bbox': [0, 0, 9, 9], 'iscrowd': 0})),
     'annotation id 998 has category id 77'),
    (lambda m: open(os.path.join(m, 'annotations', 'instances_val2017.json'), 'w').write('{"im'),
     'instances_val2017.json is not valid COCO JSON'),
    (lambda m: open(os.path.join(m, 'train2017', '000000000002.jpg'), 'wb').write(b'\xff\xd8junk'),
     r'Corrupt or unreadable image .*000000000002.jpg \(image id 2\)'),
    (lambda m: Image.new('RGB', (7, 7)).save(os.path.join(m, 'val2017', '000000000101.jpg')),
     'is 7x7 but its annotations say 80x80'),
    (lambda m: open(os.path.join(m, 'annotations', 'stuff_val2017.json'), 'w').write('[]'),
     'stuff_val2017.json is not valid COCO JSON: the top level is not an object'),
    (lambda m: _edit_json(m, 'instances_val2017.json', lambda d: d['images'][0].pop('file_name')),
     'instances_val2017.json: image id 101 has no file_name'),
    (lambda m: _edit_json(m, 'instances_val2017.json', lambda d: d['images'][0].update(width='80')),
     "image id 101 has no positive width/height \\(got '80', 80\\)"),
    (lambda m: _edit_json(m, 'instances_val2017.json', lambda d: d['images'][0].update(id='a')),
     "image entry {'id': 'a', .* has no integer id"),
])
def test_bad_input_gives_clear_error(tmp_path, break_it, message):
  manual = _broken_copy(tmp_path, break_it)
  out = tmp_path / 'tfds'
  with pytest.raises(common.DatasetError, match=message):
    prepare_lib.prepare('coco_stuff', manual, str(out), image_sizes=(16,))
  # Nothing half-written is left where a later run would take it for a finished dataset.
  version = str(coco_stuff.CocoStuff.VERSION)
  assert not list(out.glob(f'coco_stuff/*/{version}'))


def test_a_size_interrupted_after_another_leaves_no_empty_folder(tmp_path, monkeypatch):
  """Ctrl-C while the second size was written left an empty coco_stuff/32px/ beside 16px/."""
  manual = coco_fixture.write_coco(str(tmp_path / 'coco'))
  real = coco_stuff.CocoStuff._generate_examples

  def interrupted_at_32(self, *args, **kwargs):
    if self.builder_config.image_size == 32:
      raise KeyboardInterrupt
    yield from real(self, *args, **kwargs)
  monkeypatch.setattr(coco_stuff.CocoStuff, '_generate_examples', interrupted_at_32)
  with pytest.raises(KeyboardInterrupt):
    prepare_lib.prepare('coco_stuff', manual, str(tmp_path / 'tfds'), image_sizes=(16, 32))
  # The finished size is kept (TFDS keeps its .config beside the sizes).
  assert sorted(n for n in os.listdir(tmp_path / 'tfds' / 'coco_stuff') if n[0] != '.') == ['16px']
  assert os.listdir(tmp_path / 'tfds' / 'coco_stuff' / '16px') == [str(coco_stuff.CocoStuff.VERSION)]
  # Adding the size later, interrupted again: still no empty 32px/ beside the prepared size.
  with pytest.raises(KeyboardInterrupt):
    prepare_lib.prepare('coco_stuff', manual, str(tmp_path / 'tfds'), image_sizes=(32,))
  assert sorted(n for n in os.listdir(tmp_path / 'tfds' / 'coco_stuff') if n[0] != '.') == ['16px']


def test_cli_error_is_one_clear_line(tmp_path):
  manual = coco_fixture.write_coco(str(tmp_path / 'coco'))
  os.remove(os.path.join(manual, 'annotations', 'instances_train2017.json'))
  proc = subprocess.run(
      [sys.executable, '-m', 'lama_jax.prepare', '--dataset', 'coco_stuff', '--manual_dir', manual,
       '--data_dir', str(tmp_path / 'tfds')], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2  # the one CLI convention: bad input exits 2
  assert 'error: Missing annotation file' in proc.stderr
  assert 'instances_train2017.json' in proc.stderr
  assert 'Traceback' not in proc.stderr


@pytest.mark.parametrize('sizes, message', [
    ('64,1x', '--image_sizes must be whole numbers, got 64,1x'),
    ('0', '--image_sizes must be positive, got 0'),
    ('64,100000', '--image_sizes must be at most 1024 (the models draw 64, 128 or 256), got '
     '64,100000')])
def test_cli_refuses_bad_image_sizes(tmp_path, capsys, sizes, message):
  manual = str(tmp_path)
  assert prepare.main(['--dataset', 'shapes', '--manual_dir', manual, '--image_sizes', sizes,
                       '--data_dir', str(tmp_path / 'tfds')]) == 2
  assert f'error: {message}' in capsys.readouterr().err
  assert not (tmp_path / 'tfds').exists()


def _write_vg(root) -> str:
  import h5py  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.join(root, 'images', 'VG_100K'))
  names = ['__image__'] + [f'cls{i}' for i in range(1, 179)]
  with open(os.path.join(root, 'vocab.json'), 'w') as f:
    json.dump({'object_idx_to_name': names, 'object_name_to_idx': {}}, f)
  for split, ids in (('train', [11, 12]), ('val', [21])):
    n, max_obj = len(ids), 12
    names_arr = np.full((n, max_obj), -1)
    boxes = np.zeros((n, max_obj, 4))
    per_image = np.array([12, 4, 3][:n])
    for i in range(n):
      names_arr[i, :per_image[i]] = np.arange(1, per_image[i] + 1)
      boxes[i, :per_image[i]] = [10, 5, 20, 10]
    boxes[1 if n > 1 else 0, 0] = [3, 3, 0, 5]  # a degenerate box
    subjects = np.array([[2, 3, 0], [1, 0, 0]])[:n]
    objects = np.array([[5, 7, 0], [2, 0, 0]])[:n]
    with h5py.File(os.path.join(root, f'{split}.h5'), 'w') as f:
      f['image_ids'] = np.array(ids)
      f.create_dataset('image_paths', data=np.array([f'VG_100K/{i}.jpg' for i in ids], object),
                       dtype=h5py.string_dtype())
      f['object_names'] = names_arr
      f['object_boxes'] = boxes
      f['objects_per_image'] = per_image
      f['relationships_per_image'] = np.array([2, 1][:n])
      f['relationship_subjects'] = subjects
      f['relationship_objects'] = objects
    for i in ids:
      Image.new('RGB', (100, 50), (i, 0, 0)).save(os.path.join(root, 'images', 'VG_100K',
                                                               f'{i}.jpg'))
  return root


def test_visual_genome_from_sg2im_h5(tmp_path):
  manual = _write_vg(str(tmp_path / 'vg'))
  data_dir = str(tmp_path / 'tfds')
  summaries = prepare_lib.prepare('visual_genome', manual, data_dir)
  assert summaries['train']['images'] == 2 and summaries['val']['images'] == 1
  ds = builders.BUILDERS['visual_genome'](data_dir=data_dir).as_dataset(split='train')
  got = {int(ex['image_id']): ex for ex in tfds.as_numpy(ds)}
  # Image 11: objects 2, 3, 5, 7 are in relationships, then orphans fill up to 9 objects.
  np.testing.assert_array_equal(got[11]['labels'], [3, 4, 6, 8, 1, 2, 5, 7, 9])
  np.testing.assert_allclose(got[11]['boxes'][0], [0.1, 0.1, 0.2, 0.2])
  # Image 12: object 0 has an empty box: skipped and counted.
  np.testing.assert_array_equal(got[12]['labels'], [2, 3, 4])
  assert summaries['train']['skipped_degenerate_boxes'] == 1
  vocab = vocabulary.load_vocabulary(os.path.join(data_dir, 'visual_genome', 'vocab.json'))
  assert vocab.num_classes == 179 and vocab.id_to_name[5] == 'cls5'


def test_a_visual_genome_image_whose_boxes_are_all_empty_is_skipped(tmp_path):
  """It was stored with no object at all (the empty-box filter is ours; sg2im never writes one)."""
  manual = _write_vg(str(tmp_path / 'vg'))
  _edit_h5(manual, 'train', 'object_boxes', lambda a: np.where(
      np.arange(len(a))[:, None, None] == 1, a * [1, 1, 0, 1], a))  # image 12: every w = 0
  summaries = prepare_lib.prepare('visual_genome', manual, str(tmp_path / 'tfds'), [16])
  assert summaries['train']['images'] == 1 and summaries['train']['objects'] == 9
  assert summaries['train']['skipped_images_without_objects'] == 1
  assert summaries['train']['skipped_degenerate_boxes'] == 4
  _edit_h5(manual, 'val', 'object_boxes', lambda a: a * [1, 1, 1, 0])
  with pytest.raises(common.DatasetError, match=r'val.h5 in .* lists no images with objects '
                     r'\(1 without any box skipped\)'):
    prepare_lib.prepare('visual_genome', manual, str(tmp_path / 'tfds2'), [16])


def _edit_h5(manual, split, name, edit):
  import h5py  # pylint: disable=g-import-not-at-top
  with h5py.File(os.path.join(manual, f'{split}.h5'), 'a') as f:
    value = edit(f[name][()])
    del f[name]
    f[name] = value


@pytest.mark.parametrize('break_it, message', [
    (lambda m: _edit_h5(m, 'val', 'relationship_subjects', lambda a: a + 40),
     r'val.h5: image id 21: relationships name objects \[42, 43\], but it has 12'),
    (lambda m: _edit_h5(m, 'val', 'object_boxes', lambda a: a * np.nan),
     r'val.h5: image id 21 object 2 has a non-finite box'),
    (lambda m: _edit_h5(m, 'val', 'object_boxes', lambda a: a[..., 0]),
     r'val.h5: the sg2im datasets do not fit together \(.*object_boxes \[1, 12\]'),
    (lambda m: _edit_h5(m, 'train', 'image_ids', lambda a: a * 0 + 11),
     r'train.h5: image ids \[11\] appear more than once'),
    (lambda m: [_edit_h5(m, 'val', k, lambda a: a[:0]) for k in ('image_ids', 'image_paths',
        'object_names', 'object_boxes', 'objects_per_image', 'relationships_per_image',
        'relationship_subjects', 'relationship_objects')],
     r'visual_genome val: val.h5 in .* lists no images'),
    (lambda m: open(os.path.join(m, 'vocab.json'), 'w').write('{"object_idx_to_name": {"0": 1}}'),
     'vocab.json is not an sg2im vocab.json .*a dict, not a list'),
    (lambda m: open(os.path.join(m, 'vocab.json'), 'w').write('{"object_idx_to_name": ["a"]}'),
     'vocab.json is not an sg2im vocab.json .*id 0 must be "__image__"'),
])
def test_visual_genome_bad_input_gives_clear_error(tmp_path, break_it, message):
  manual = _write_vg(str(tmp_path / 'vg'))
  break_it(manual)
  with pytest.raises(common.DatasetError, match=message):
    prepare_lib.prepare('visual_genome', manual, str(tmp_path / 'tfds'), image_sizes=(16,))
  assert not (tmp_path / 'tfds').exists()


def test_shipped_vocabularies():
  coco = vocabulary.load_vocabulary('coco_stuff')
  assert coco.num_classes == 184 and len(coco.id_to_name) == 184
  assert (coco.id_to_name[1], coco.id_to_name[92], coco.id_to_name[182]) == (
      'person', 'banner', 'wood')
  assert coco.id_to_name[183] == 'other' and coco.id_to_name[12] == '__unused_12__'
  assert sum(not n.startswith('__') for n in coco.id_to_name.values()) == 80 + 91 + 1
  shapes = vocabulary.load_vocabulary('shapes')
  assert shapes.num_classes == 14 and shapes.name_to_id['water'] == 13
  assert vocabulary.Vocabulary.from_json(shapes.to_json()) == shapes
