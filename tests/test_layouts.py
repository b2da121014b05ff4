"""The layout format: parsing, validation and the one-line errors (no JAX needed)."""
import math
import re

import numpy as np
import pytest

from lama_jax.inference import layouts
from lama_jax.inference.layouts import LayoutError
from lama_jax.datasets.vocabulary import load_vocabulary

VOCAB = load_vocabulary('shapes')
COCO = load_vocabulary('coco_stuff')


def obj(category='disk', bbox=(0.1, 0.1, 0.3, 0.3)):
  return {'category': category, 'bbox': list(bbox)}


def layout(*objects, name='scene'):
  return {'name': name, 'objects': list(objects) or [obj()]}


def parse(data, max_objects=8, vocab=VOCAB):
  return layouts.parse_layouts(data, vocab, max_objects, source='f.json')


def test_parses_names_and_ids_and_pads():
  (a, b) = parse([layout(obj('sky', (0, 0, 1, 0.5)), obj(1)), layout(name='other')])
  assert a.name == 'scene' and b.name == 'other'
  assert a.labels.tolist() == [9, 1] and a.categories == ('sky', 'disk')
  boxes, labels = a.arrays(4)
  assert labels.tolist() == [9, 1, 0, 0]
  np.testing.assert_allclose(boxes[2:], [layouts.PAD_BOX] * 2)
  np.testing.assert_allclose(boxes[0], [0, 0, 1, 0.5])
  stacked_boxes, stacked_labels = layouts.stack_layouts([a, b], 4)
  assert stacked_boxes.shape == (2, 4, 4) and stacked_labels.shape == (2, 4)


def test_numpy_ids_are_ids():
  # Objects built from an array of labels hold NumPy integers (was a TypeError from json.dumps).
  (a,) = parse(layout(obj(np.int64(1)), obj(np.uint8(9), np.array([0, 0, 1, 0.5], np.float32))))
  assert a.labels.tolist() == [1, 9] and a.categories == ('disk', 'sky')
  for category, expected in ((np.int32(99), 'unknown category id 99'),
                             (np.bool_(True), 'category must be a name or an integer id'),
                             (np.array([1]), 'category must be a name or an integer id')):
    with pytest.raises(LayoutError, match=re.escape(expected)):
      parse(layout(obj(category)))


def test_stack_layouts_refuses():
  (a,) = parse(layout(obj(), obj(), obj()))
  for args, expected in ((([a], 2), "layout 0 'scene': 3 objects, more than 2"),
                         (([], 4), 'no layouts to stack'),
                         (([a, layout()], 4), 'layout 1 is a dict, not a Layout')):
    with pytest.raises(LayoutError, match=re.escape(expected)):
      layouts.stack_layouts(*args)


def test_single_layout_and_default_names():
  assert parse({'objects': [obj()]})[0].name == 'layout'
  assert [l.name for l in parse([{'objects': [obj()]}, {'objects': [obj()]}])] == [
      'layout0', 'layout1']


def test_shipped_example_layouts_are_valid():
  shapes = layouts.load_layouts('data/layouts/shapes.json', VOCAB, 8)
  coco = layouts.load_layouts('data/layouts/coco.json', COCO, 8)
  moved = layouts.load_layouts('data/layouts/shapes_move.json', VOCAB, 8)
  assert len(shapes) >= 3 and len(coco) >= 3 and len(moved) == 3


@pytest.mark.parametrize('data, expected', [
    ([layout(obj('dsk'))], "layout 0 'scene', object 0 ('dsk'): unknown category 'dsk'"),
    ([layout(obj(), obj(99))], "object 1 (99): unknown category id 99"),
    ([layout(obj(-3))], 'unknown category id -3'),
    ([layout(obj('__image__'))], 'padding class'),
    ([layout(obj(0))], 'padding class'),
    ([layout(obj(1.5))], 'category must be a name or an integer id'),
    ([layout(obj(bbox=(0.1, 0.2, 0.3)))], 'bbox must be four numbers'),
    ([layout(obj(bbox=('0', 0, 1, 1)))], 'bbox must be four numbers'),
    ([layout(obj(bbox=(True, 0, 0.5, 0.5)))], 'bbox must be four numbers'),
    ([layout({'category': 'disk', 'bbox': 'all'})], 'bbox must be four numbers'),
    ([layout(obj(bbox=(math.nan, 0, 0.5, 0.5)))], 'not finite'),
    ([layout(obj(bbox=(math.nan, 0, 1, -10**400)))], 'bbox holds an integer too large for a '
                                                      'float (of 401 digits)'),
    ([layout(obj(bbox=(0, 0, 0, 0.5)))], 'zero or negative size'),
    ([layout(obj(bbox=(0.5, 0.5, -0.1, 0.2)))], 'zero or negative size'),
    # Positive, but a float32 zero or subnormal: the generator drew NaN images from it.
    ([layout(obj(bbox=(0.5, 0.5, 1e-40, 0.2)))], 'is too small (w=1e-40'),
    ([layout(obj(bbox=(0.5, 0.5, 0.2, 1e-50)))], 'is too small'),
    ([layout(obj(bbox=(0.8, 0, 0.5, 0.5)))], 'outside [0, 1]'),
    ([layout(obj(bbox=(-0.1, 0, 0.5, 0.5)))], 'outside [0, 1]'),
    ([layout(*[obj()] * 9)], '9 objects, more than the model takes (8)'),
    ([{'name': 'x', 'objs': []}], "layout 0 'x': missing \"objects\""),
    ([{'name': 'x', 'objects': {}}], '"objects" must be a list'),
    ([{'name': 'x', 'objects': []}], '"objects" is empty'),
    ([layout({'bbox': [0, 0, 1, 1]})], 'object 0: missing "category"'),
    ([layout({'category': 'disk'})], "object 0 ('disk'): missing \"bbox\""),
    ([layout(['disk', [0, 0, 1, 1]])], 'object 0: not an object'),
    ([1, 2], 'layout 0: not a layout'),
    ([], 'the list of layouts is empty'),
    ([layout(), layout()], 'already used by layout 0'),
    ([layout(name='../evil')], 'names the output files'),
    ([layout(name='')], 'names the output files'),
    # Shown as written, not as "\u00fcn" escapes, and the rule says ASCII ("ü" is a letter).
    ([layout(name='ünï')], 'name "ünï" must be a non-empty string of ASCII letters'),
    # Allowed characters only, but a leading "." or "-": the message names that rule.
    ([layout(name='.hidden')], 'not starting with "." or "-"'),
    ([layout(name='-x')], 'not starting with "." or "-"'),
    ([layout(name='x' * 201)], 'is 201 characters long, more than 200 (it names the output files)'),
])
def test_bad_layouts_are_refused_with_location(data, expected):
  with pytest.raises(LayoutError) as e:
    parse(data)
  message = str(e.value)
  assert expected in message, message
  assert message.startswith('f.json: ') and '\n' not in message


@pytest.mark.parametrize('category, hint', [
    ('sky-othr', "did you mean 'sky-other'"),
    ('sky', "did you mean 'sky-other'"),  # COCO-Stuff's suffixed stuff names
    ('wall', "did you mean 'wall-brick', 'wall-concrete', 'wall-other'"),
    ('3', "an id is a JSON number: 3, 'car'"),
])
def test_unknown_name_suggests_close_matches(category, hint):
  with pytest.raises(LayoutError, match=re.escape(hint)):
    parse(layout(obj(category)), vocab=COCO)


def test_a_file_with_a_byte_order_mark_reads(tmp_path):
  """Editors on Windows write UTF-8 with a BOM; json.loads refused it."""
  path = tmp_path / 'l.json'
  path.write_bytes('\ufeff{"name": "n", "objects": [{"category": "disk", "bbox": [0, 0, 0.5, 0.5]}]}'
                   .encode('utf-8'))
  assert [l.name for l in layouts.load_layouts(str(path), VOCAB, 8)] == ['n']


def test_unused_coco_ids_are_refused():
  with pytest.raises(LayoutError, match='unknown category id 12'):
    parse(layout(obj(12)), vocab=COCO)


@pytest.mark.parametrize('text, expected', [
    ('{"objects": [', 'broken JSON at line 1'),
    ('42', 'not a layout or a list of layouts'),
    ('"beach"', 'not a layout or a list of layouts'),
])
def test_bad_files(tmp_path, text, expected):
  path = tmp_path / 'l.json'
  path.write_text(text)
  with pytest.raises(LayoutError, match=expected) as e:
    layouts.load_layouts(str(path), VOCAB, 8)
  assert str(e.value).startswith(str(path))


def test_nan_in_json_file(tmp_path):
  path = tmp_path / 'l.json'
  path.write_text('{"name": "n", "objects": [{"category": "disk", "bbox": [NaN, 0, 0.5, 0.5]}]}')
  with pytest.raises(LayoutError, match=r"layout 0 'n', object 0 \('disk'\): bbox .* not finite"):
    layouts.load_layouts(str(path), VOCAB, 8)


def test_missing_file(tmp_path):
  with pytest.raises(LayoutError, match='cannot read'):
    layouts.load_layouts(str(tmp_path / 'none.json'), VOCAB, 8)


def test_check_arrays_replaces_padding_boxes():
  boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [7.0, np.nan, -1.0, 0.0]]], np.float32)
  labels = np.array([[3, 0]])
  out_boxes, out_labels = layouts.check_arrays(boxes, labels, 14, 8)
  np.testing.assert_allclose(out_boxes[0, 1], layouts.PAD_BOX)
  np.testing.assert_allclose(out_boxes[0, 0], boxes[0, 0])
  assert out_labels.dtype == np.int32


@pytest.mark.parametrize('boxes, labels, expected', [
    (np.zeros((2, 4)), np.zeros((2,)), 'boxes must have shape [B, O, 4]'),
    (np.zeros((1, 2, 3)), np.zeros((1, 2)), 'boxes must have shape [B, O, 4]'),
    (np.full((1, 2, 4), 0.2), np.ones((1, 3)), 'labels must have shape [B, O] = [1, 2]'),
    (np.full((1, 9, 4), 0.2), np.ones((1, 9)), '9 objects per layout, more than'),
    (np.full((1, 2, 4), 0.2), np.array([[1, 14]]), 'layout 0, object 1: label 14 outside'),
    (np.full((1, 2, 4), 0.2), np.array([[1, -1]]), 'label -1 outside'),
    (np.full((1, 2, 4), 0.2), np.array([[1.5, 1]]), 'label 1.5 is not an integer'),
    (np.array([[[0.2, 0.2, np.nan, 0.1]]]), np.array([[2]]), 'layout 0, object 0 (label 2): bbox'),
    (np.array([[[0.2, 0.2, 0.0, 0.1]]]), np.array([[2]]), 'zero or negative size'),
    (np.array([[[0.2, 0.2, 1e-50, 0.1]]]), np.array([[2]]), 'is too small'),
    (np.array([[[0.9, 0.2, 0.5, 0.1]]]), np.array([[2]]), 'outside [0, 1]'),
])
def test_check_arrays_refuses(boxes, labels, expected):
  with pytest.raises(LayoutError) as e:
    layouts.check_arrays(boxes, labels, 14, 8)
  assert expected in str(e.value), str(e.value)
