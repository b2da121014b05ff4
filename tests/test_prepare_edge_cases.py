"""prepare on malformed and unusual datasets: one clear error for bad input, the rest prepared and
counted (what a QA sweep of coco_stuff and visual_genome found)."""
import json
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
import pytest
import tensorflow as tf

from lama_jax import prepare
from lama_jax.datasets import coco_stuff
from lama_jax.datasets import common
from lama_jax.datasets import preparation as prepare_lib
from lama_jax.datasets import segmentation_checks
from tests import coco_fixture
from tests.test_prepare import _edit_h5
from tests.test_prepare import _edit_json
from tests.test_prepare import _write_vg


def _coco(tmp_path) -> str:
  return coco_fixture.write_coco(str(tmp_path / 'coco'))


def _set_first_segmentation(manual: str, name: str, segmentation) -> int:
  """Gives the first annotation of `name` (val: image 101's first object, which is kept) the
  segmentation; returns the annotation's id."""
  ids = []
  def edit(data):
    data['annotations'][0]['segmentation'] = segmentation
    ids.append(data['annotations'][0]['id'])
  _edit_json(manual, name, edit)
  return ids[0]


@pytest.mark.parametrize('name, segmentation, problem', [
    ('instances', [10, 10, 40, 10, 40, 30], 'the polygon 10 is not a list of x, y numbers'),
    ('instances', [[10, 10, float('inf'), 10, 40, 30]], 'the polygon .* has a non-finite'),
    ('instances', [[10, 10, float('nan'), 10, 40, 30]], 'the polygon .* has a non-finite'),
    ('instances', [['10', '10', '40', '10', '40', '30']], 'the polygon .* is not a list of x, y'),
    ('stuff', {'size': [80, 80], 'counts': [10, 20]},
     'the RLE counts cover 30 pixels, but its size 80x80 has 6400'),
    ('stuff', {'size': [80, 80], 'counts': ''}, 'the RLE counts cover 0 pixels'),
    ('stuff', {'size': [80, 80], 'counts': [-5, 6405]}, 'the RLE counts .* are neither'),
    ('stuff', {'size': '80x80', 'counts': [6400]}, "the RLE size '80x80' is not \\[height, width"),
])
def test_malformed_segmentation_is_one_clear_error(tmp_path, name, segmentation, problem):
  """pycocotools decoded these into garbage (counts that do not cover the mask leave the rest
  uninitialised), allocated until the process was killed (an infinite polygon point), or raised a
  TypeError/OverflowError traceback."""
  manual = _coco(tmp_path)
  ann_id = _set_first_segmentation(manual, f'{name}_val2017.json', segmentation)
  with pytest.raises(common.DatasetError, match=(
      f'{name}_val2017.json: annotation id {ann_id} has a malformed segmentation: {problem}')):
    coco_stuff.select_images(manual, 'val')


def test_polygon_far_outside_is_a_full_box_and_counted(tmp_path):
  """A point 1e30 pixels away made pycocotools allocate until the process was killed."""
  manual = _coco(tmp_path)
  _set_first_segmentation(manual, 'instances_val2017.json', [[10, 10, 1e30, 10, 40, 30]])
  records, stats = coco_stuff.select_images(manual, 'val')
  assert records[0].segmentations[0] is None and stats.masks_outside_image == 1
  assert stats.objects_without_segmentation == 3  # the fixture's other objects have none either


def test_valid_segmentations_pass_the_checks():
  """Compressed and uncompressed RLE from pycocotools, polygons, and empty fields."""
  rng = np.random.default_rng(0)
  for h, w in ((1, 1), (7, 13), (480, 640)):
    for fill in (0.0, 0.3, 1.0):
      mask = np.asfortranarray((rng.random((h, w)) < fill).astype(np.uint8))
      rle = mask_utils.encode(mask)
      assert segmentation_checks.segmentation_problem({'size': [h, w], 'counts': rle['counts'].decode()}) is None
  assert segmentation_checks.segmentation_problem({'size': [2, 3], 'counts': [1, 4, 1]}) is None
  for empty in ([], [[]], [[1, 2, 3, 4]], {}, None):
    assert segmentation_checks.segmentation_problem(empty) is None
  assert segmentation_checks.segmentation_problem([[0, 0, 5.5, 0, 5, 5]]) is None


def _append_image(data, **fields):
  data['images'].append({**data['images'][0], **fields})


@pytest.mark.parametrize('name, edit, message', [
    ('instances', lambda d: d.pop('images'),
     'instances_val2017.json is not valid COCO JSON: it has no images list'),
    ('instances', lambda d: d.pop('annotations'), 'it has no annotations list'),  # was prepared
    ('stuff', lambda d: d.update(categories={}), 'stuff_val2017.json .* it has no categories list'),
    ('instances', lambda d: d['categories'][0].pop('name'),  # a KeyError traceback
     "instances_val2017.json: category {'id': 1} has no integer id and name"),
    ('instances', lambda d: _append_image(d, file_name='other.jpg'),  # one of them kept silently
     'instances_val2017.json: image id 101 is listed twice'),
    ('instances', lambda d: _append_image(d, id=2**70),  # an OverflowError deep inside TFDS
     'image id 1180591620717411303424 does not fit in 64 bits'),
    ('stuff', lambda d: d['annotations'][0].update(category_id='157'),  # said 'category id 157'
     "annotation id \\d+ has category id '157', which neither annotation file defines"),
    ('stuff', lambda d: d['annotations'].append(7), 'stuff_val2017.json: annotation 7 is not an'),
    # float() took these as 5.0, NaN and 1.0:
    ('instances', lambda d: d['annotations'][0].update(bbox=['5', 5, 30, 30]),
     r"annotation id \d+ has a malformed bbox \['5', 5, 30, 30\] \(need \[x, y, w, h\], four"),
    ('instances', lambda d: d['annotations'][0].update(bbox=[5, 'nan', 30, 30]), 'malformed bbox'),
    ('instances', lambda d: d['annotations'][0].update(bbox=[5, 5, True, 30]), 'malformed bbox'),
    ('instances', lambda d: d['annotations'][0].update(bbox=[5, 5, 30]), 'malformed bbox'),
    ('instances', lambda d: d['annotations'][0].update(bbox={'x': 5}), 'malformed bbox'),
])
def test_malformed_annotation_file_is_one_clear_error(tmp_path, name, edit, message):
  manual = _coco(tmp_path)
  _edit_json(manual, f'{name}_val2017.json', edit)
  with pytest.raises(common.DatasetError, match=message):
    coco_stuff.select_images(manual, 'val')


def test_annotation_file_with_byte_order_mark_reads(tmp_path):
  manual = _coco(tmp_path)
  path = os.path.join(manual, 'annotations', 'stuff_val2017.json')
  with open(path, encoding='utf-8') as f:
    text = f.read()
  with open(path, 'w', encoding='utf-8-sig') as f:  # what some Windows editors save
    f.write(text)
  records, _ = coco_stuff.select_images(manual, 'val')
  assert [r.image_id for r in records] == list(coco_fixture.EXPECTED['val'])


def test_bad_annotation_file_leaves_nothing(tmp_path):
  manual = _coco(tmp_path)
  _edit_json(manual, 'instances_train2017.json', lambda d: _append_image(d, id=2**63))
  out = tmp_path / 'tfds'
  with pytest.raises(common.DatasetError, match='image id 9223372036854775808 does not fit'):
    prepare_lib.prepare('coco_stuff', manual, str(out), image_sizes=(16,))
  assert not out.exists()


def _replace_with_group(manual: str, split: str, name: str) -> None:
  import h5py  # pylint: disable=g-import-not-at-top
  with h5py.File(os.path.join(manual, f'{split}.h5'), 'a') as f:
    del f[name]
    f.create_group(name)


@pytest.mark.parametrize('break_it, message', [
    (lambda m: _replace_with_group(m, 'val', 'image_ids'),  # a TypeError traceback from h5py
     r"val.h5 lacks the sg2im datasets \['image_ids'\]"),
    (lambda m: _edit_h5(m, 'val', 'image_paths', lambda a: np.array([b'VG_100K/\xff.jpg'])),
     r"val.h5: image id 21 has an image path that is not UTF-8: b'VG_100K/\\xff.jpg'"),
    (lambda m: _edit_h5(m, 'val', 'image_ids', lambda a: np.array([b'x'])),  # int(b'x') traceback
     r'val.h5: image_ids must hold whole numbers, not \|S1'),
    (lambda m: _edit_h5(m, 'val', 'object_names', lambda a: a + 0.5),  # labels truncated silently
     'val.h5: object_names must hold whole numbers, not float64'),
    (lambda m: _edit_h5(m, 'val', 'image_ids', lambda a: a.astype(np.uint64) + 2**63),
     'val.h5: image ids must fit in 64 bits .*, got 9223372036854775829'),  # TFDS OverflowError
])
def test_visual_genome_malformed_h5_is_one_clear_error(tmp_path, break_it, message):
  manual = _write_vg(str(tmp_path / 'vg'))
  break_it(manual)
  with pytest.raises(common.DatasetError, match=message):
    prepare_lib.prepare('visual_genome', manual, str(tmp_path / 'tfds'), image_sizes=(16,))
  assert not (tmp_path / 'tfds').exists()


def _record(path: str, size: tuple[int, int]) -> common.ImageRecord:
  return common.ImageRecord(image_id=7, path=path, pixel_boxes=np.zeros((0, 4)),
                            labels=np.zeros(0, np.int64), width=size[0], height=size[1])


def test_16_bit_grayscale_png_keeps_its_grey_levels(tmp_path):
  """PIL's convert('RGB') clipped every level above 255 of 65535: a white image was stored."""
  levels = np.tile(np.arange(0, 250, 10, dtype=np.uint8)[None, :, None], (4, 1, 1))  # [4, 25, 1]
  path = str(tmp_path / 'deep.png')
  with open(path, 'wb') as f:
    f.write(tf.io.encode_png(levels.astype(np.uint16) * 257).numpy())
  data, size = common.read_image(_record(path, (25, 4)))
  assert size == (25, 4)
  np.testing.assert_array_equal(common.resize_image(data, 25)[0, :, 0],
                                common.resize_image(tf.io.encode_png(levels).numpy(), 25)[0, :, 0])


def test_image_too_large_for_pil_is_one_clear_error(tmp_path, monkeypatch):
  """PIL's DecompressionBombError (over ~179 million pixels) was a traceback."""
  path = str(tmp_path / 'big.jpg')
  Image.new('RGB', (80, 80)).save(path)
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)  # 80x80 is then over twice the limit
  with pytest.raises(common.DatasetError, match=r'big.jpg \(image id 7\) is too large'):
    common.read_image(_record(path, (80, 80)))


def test_stdout_holds_only_the_json_lines(tmp_path, capsys):
  """TFDS printed 'Downloading and preparing dataset ...' and '... downloaded and prepared to ...'
  to stdout for every size, between the JSON lines that `prepare` documents."""
  manual = _coco(tmp_path)
  assert prepare.main(['--dataset', 'coco_stuff', '--manual_dir', manual, '--data_dir',
                       str(tmp_path / 'tfds'), '--image_sizes', '8,16']) == 0
  lines = capsys.readouterr().out.splitlines()
  assert [json.loads(line)['split'] for line in lines] == ['train', 'val']
