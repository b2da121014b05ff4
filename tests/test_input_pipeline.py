"""The tf.data pipeline: batch contract, official flip, sharding, determinism, resize, prepared
sizes and versions."""
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from lama_jax.datasets import builders
from lama_jax.datasets import common
from lama_jax.datasets import input_pipeline
from lama_jax.datasets import preparation as prepare_lib
from tests import coco_fixture

N_TRAIN = len(coco_fixture.EXPECTED['train'])  # 10
SIZES = (16, 32, 48)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  manual = coco_fixture.write_coco(str(tmp_path_factory.mktemp('coco')))
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  prepare_lib.prepare('coco_stuff', manual, data_dir, image_sizes=SIZES)
  return data_dir, manual


def _take(ds, n):
  return [input_pipeline.as_numpy(b) for _, b in zip(range(n), ds)]


def _unbatch(batches):
  return [{k: v[i] for k, v in b.items()} for b in batches for i in range(len(b['labels']))]


def test_batch_contract(data):
  data_dir, _ = data
  (batch,) = _take(input_pipeline.create_train_dataset(data_dir, 'coco_stuff', 32, 4, 8), 1)
  assert batch['image'].shape == (4, 32, 32, 3) and batch['image'].dtype == np.float32
  assert batch['boxes'].shape == (4, 8, 4) and batch['boxes'].dtype == np.float32
  assert batch['labels'].shape == (4, 8) and batch['labels'].dtype == np.int32
  assert set(batch) == {'image', 'boxes', 'labels'}
  assert -1.0 <= batch['image'].min() and batch['image'].max() <= 1.0
  pad = batch['labels'] == 0
  assert pad.any()
  np.testing.assert_array_equal(batch['boxes'][pad],
                                np.tile(np.float32([-0.6, -0.6, 0.5, 0.5]), (pad.sum(), 1)))


def test_eval_fixed_order_partial_batch_and_ids(data):
  data_dir, _ = data
  ds = input_pipeline.create_eval_dataset(data_dir, 'coco_stuff', 16, 4, 8)
  first, second = list(ds.as_numpy_iterator()), list(ds.as_numpy_iterator())
  assert len(first) == 1 and first[0]['image_id'].tolist() == [101]  # one image: partial batch
  np.testing.assert_array_equal(first[0]['image'], second[0]['image'])
  assert first[0]['labels'][0].tolist() == [1, 3, 157, 0, 0, 0, 0, 0]
  assert input_pipeline.num_examples(data_dir, 'coco_stuff', 'val') == 1


def test_resize_matches_pil_bilinear(data):
  data_dir, manual = data
  (batch,) = input_pipeline.create_eval_dataset(data_dir, 'coco_stuff', 48, 1, 8).as_numpy_iterator()
  pil = Image.open(os.path.join(manual, 'val2017', '000000000101.jpg')).convert('RGB')
  want = np.asarray(pil.resize((48, 48), Image.BILINEAR), np.float32) / 127.5 - 1
  assert np.abs(batch['image'][0] - want).max() <= 3 / 127.5


def _resized_at_read_time(data: bytes, size: int) -> np.ndarray:
  """What the pipeline computed at every read before images were stored resized (version 1.1.0),
  in a tf.data map as it ran there (a plain tf.function may round the scaling differently)."""
  def old(encoded):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(tf.cast(image, tf.float32), (size, size), method='bilinear',
                            antialias=True)
    return tf.clip_by_value(tf.round(image), 0.0, 255.0) / 127.5 - 1.0
  return next(tf.data.Dataset.from_tensors(data).map(old).as_numpy_iterator())


@pytest.mark.parametrize('size', [16, 48])
def test_stored_images_give_the_batches_the_read_time_resize_gave(data, size):
  """Resizing once at prepare time changes no pixel of what training sees."""
  data_dir, manual = data
  ds = input_pipeline.create_eval_dataset(data_dir, 'coco_stuff', size, 1, 8)
  (batch,) = ds.as_numpy_iterator()
  with open(os.path.join(manual, 'val2017', '000000000101.jpg'), 'rb') as f:
    want = _resized_at_read_time(f.read(), size)
  np.testing.assert_array_equal(batch['image'][0], want)


def test_read_layouts_from_any_prepared_size(data):
  data_dir, _ = data
  layouts = input_pipeline.read_layouts(data_dir, 'coco_stuff', 'val', 8)
  assert layouts['image_id'].tolist() == [101]
  assert layouts['labels'][0].tolist() == [1, 3, 157, 0, 0, 0, 0, 0]
  np.testing.assert_allclose(layouts['boxes'][0, :3], [[5 / 80, 5 / 80, 40 / 80, 30 / 80]] * 3)
  np.testing.assert_array_equal(layouts['boxes'][0, 3:], np.float32([input_pipeline.PAD_BOX] * 5))


def test_size_not_prepared_names_the_prepared_sizes_and_the_command(data):
  data_dir, _ = data
  assert builders.prepared_sizes(data_dir, 'coco_stuff') == list(SIZES)
  with pytest.raises(common.DatasetNotPreparedError,
                     match=r'prepared at 16x16, 32x32, 48x48, not at 64x64\. Run: python -m '
                           r'lama_jax.prepare --dataset coco_stuff --image_sizes 64 '):
    input_pipeline.create_train_dataset(data_dir, 'coco_stuff', 64, 2, 8)


def test_older_prepared_version_says_to_prepare_again(tmp_path):
  old = tmp_path / 'coco_stuff' / '1.1.0'
  old.mkdir(parents=True)
  (old / 'dataset_info.json').write_text('{}')
  with pytest.raises(common.DatasetNotPreparedError,
                     match=r'holds coco_stuff version\(s\) \[.1\.1\.0.\], not the current '
                           r'2\.0\.0, which stores the images already resized.*Re-run: python -m '
                           r'lama_jax.prepare '
                           r'--dataset coco_stuff --image_sizes 128 '):
    input_pipeline.num_examples(str(tmp_path), 'coco_stuff', 'train', 128)


def test_official_flip_mirrors_every_image_once_per_epoch(data):
  data_dir, _ = data
  assert input_pipeline.steps_per_epoch(data_dir, 'coco_stuff', 2, 'official') == N_TRAIN
  ds = input_pipeline.create_train_dataset(data_dir, 'coco_stuff', 16, 1, 8, flip='official')
  epoch = _unbatch(_take(ds, 2 * N_TRAIN))
  groups = {}
  for ex in epoch:
    groups.setdefault(tuple(ex['labels']), []).append(ex)
  assert len(groups) == N_TRAIN and all(len(g) == 2 for g in groups.values())
  for labels, (a, b) in groups.items():
    # The fixture images are white on their left half: that tells the original.
    orig, flipped = (a, b) if a['image'][:, 0].mean() > b['image'][:, 0].mean() else (b, a)
    np.testing.assert_array_equal(flipped['image'], orig['image'][:, ::-1])
    real = np.array(labels) > 0
    x, y, w, h = orig['boxes'][real].T
    np.testing.assert_allclose(flipped['boxes'][real], np.stack([1 - (x + w), y, w, h], -1),
                               atol=1e-6)
    np.testing.assert_array_equal(flipped['boxes'][~real], orig['boxes'][~real])
  originals = {tuple(l for l, _ in objs): objs for objs in coco_fixture.EXPECTED['train'].values()}
  for labels, group in groups.items():
    assert tuple(l for l in labels if l) in originals


def test_none_and_random_flip_deterministic(data):
  data_dir, _ = data
  make = lambda flip, seed: input_pipeline.create_train_dataset(
      data_dir, 'coco_stuff', 16, 2, 8, flip=flip, seed=seed)
  epoch = _unbatch(_take(make('none', 0), N_TRAIN // 2))
  assert len({tuple(ex['labels']) for ex in epoch}) == N_TRAIN
  a, b = _take(make('random', 5), 6), _take(make('random', 5), 6)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k])
  c = _take(make('random', 6), 6)
  assert any(not np.array_equal(x['image'], y['image']) for x, y in zip(a, c))


def test_processes_read_disjoint_shards(data, monkeypatch):
  data_dir, _ = data
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  seen = []
  for index in range(2):
    monkeypatch.setattr(jax, 'process_index', lambda index=index: index)
    ds = input_pipeline.create_train_dataset(data_dir, 'coco_stuff', 16, 2, 8, flip='none')
    batches = _take(ds, N_TRAIN)  # local batch 1; two epochs of this process's shard
    assert batches[0]['image'].shape[0] == 1
    shard = [tuple(ex['labels']) for ex in _unbatch(batches)]
    assert sorted(shard[:N_TRAIN // 2]) == sorted(shard[N_TRAIN // 2:])  # an epoch = its shard
    seen.append(set(shard))
  assert len(seen[0]) == len(seen[1]) == N_TRAIN // 2
  assert not seen[0] & seen[1]
  assert input_pipeline.steps_per_epoch(data_dir, 'coco_stuff', 2, 'none') == N_TRAIN // 2


def test_unprepared_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(FileNotFoundError, match='python -m lama_jax.prepare --dataset shapes'):
    input_pipeline.create_eval_dataset(str(tmp_path), 'shapes', 16, 2, 8)


def test_the_truncation_warning_is_said_once(caplog):
  """A run builds three pipelines (train, eval, layouts): the warning came 2-3 times per run."""
  input_pipeline._warn_truncation.cache_clear()
  for _ in range(3):
    input_pipeline._warn_truncation('coco_stuff', 2)
  assert sum('max_objects=2 <' in r.getMessage() for r in caplog.records) == 1


_READ_BOTH = """
import sys
from lama_jax.datasets import input_pipeline
input_pipeline.create_train_dataset(sys.argv[1], 'coco_stuff', 32, 4, 8)
input_pipeline.create_eval_dataset(sys.argv[1], 'coco_stuff', 16, 4, 8)
"""


def test_tfds_dtype_notice_is_left_out(data):
  """TFDS's SkipDecoding logged '`FeatureConnector.dtype` is deprecated. Please change your code'
  amid every run's progress lines (a fresh process: TFDS says it at most 10 times per process)."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  proc = subprocess.run([sys.executable, '-c', _READ_BOTH, data[0]], cwd=root, capture_output=True,
                        text=True, timeout=300, env={**os.environ, 'PYTHONPATH': root})
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'is deprecated' not in proc.stderr, proc.stderr[-3000:]


def _damage(path: str, how: str) -> None:
  data = open(path, 'rb').read()
  if how == 'flipped bits':
    data = bytes(b ^ 0xFF if i % 997 == 500 else b for i, b in enumerate(data))
  elif how == 'cut short':
    data = data[:len(data) // 2]
  elif how == 'emptied':
    data = b''
  if how == 'removed':
    os.remove(path)
  else:
    with open(path, 'wb') as f:
      f.write(data)


@pytest.mark.parametrize('how, detail', [('flipped bits', 'corrupted record'),
                                         ('cut short', 'truncated record'),
                                         ('removed', 'No such file or directory'),
                                         ('emptied', 'expected to contain')])
def test_damaged_prepared_files_are_one_error_naming_the_folder(data, tmp_path, how, detail):
  """A prepared TFRecord changed after `prepare` was a TensorFlow traceback (DataLossError
  'corrupted record at 12', NotFoundError, ...) from the training loop's first batch."""
  data_dir = str(tmp_path / 'tfds')
  shutil.copytree(data[0], data_dir)
  folder = os.path.join(data_dir, 'coco_stuff', '16px', str(builders.BUILDERS['coco_stuff'].VERSION))
  (train,) = [n for n in os.listdir(folder) if '-train.tfrecord' in n]
  _damage(os.path.join(folder, train), how)
  ds = input_pipeline.create_train_dataset(data_dir, 'coco_stuff', 16, 2, 8)
  with pytest.raises(common.DatasetError) as e:
    for _ in zip(range(2 * N_TRAIN), input_pipeline.numpy_batches(ds, data_dir, 'coco_stuff', 16,
                                                                   'train')):
      pass
  message = str(e.value)
  assert message.startswith(f'{folder}: cannot read the prepared coco_stuff train split ('), message
  assert detail in message and '{{' not in message and '[Op:' not in message, message
  assert (f'delete {os.path.dirname(folder)} and run python -m lama_jax.prepare --dataset '
          f'coco_stuff --image_sizes 16 --manual_dir DIR --data_dir {data_dir}') in message
  # The val split of the same copy still reads, at every size and without images.
  assert len(input_pipeline.read_layouts(data_dir, 'coco_stuff', 'val', 8)['labels']) == 1


def test_a_damaged_val_split_is_named_by_the_layout_reader(data, tmp_path):
  data_dir = str(tmp_path / 'tfds')
  shutil.copytree(data[0], data_dir)
  for size in SIZES:  # read_layouts takes any prepared size
    folder = os.path.join(data_dir, 'coco_stuff', f'{size}px',
                          str(builders.BUILDERS['coco_stuff'].VERSION))
    (val,) = [n for n in os.listdir(folder) if '-val.tfrecord' in n]
    _damage(os.path.join(folder, val), 'cut short')
  with pytest.raises(common.DatasetError, match=r'cannot read the prepared coco_stuff val split '
                     r'\(truncated record'):
    input_pipeline.read_layouts(data_dir, 'coco_stuff', 'val', 8)


def test_a_damaged_dataset_info_is_one_error_naming_the_folder(data, tmp_path):
  """TFDS read it with a protobuf ParseError traceback, in every command that opens the data."""
  data_dir = str(tmp_path / 'tfds')
  shutil.copytree(data[0], data_dir)
  folder = os.path.join(data_dir, 'coco_stuff', '32px', str(builders.BUILDERS['coco_stuff'].VERSION))
  _damage(os.path.join(folder, 'dataset_info.json'), 'cut short')
  with pytest.raises(common.DatasetError) as e:
    input_pipeline.create_eval_dataset(data_dir, 'coco_stuff', 32, 2, 8)
  assert str(e.value).startswith(f'{folder}: cannot read the prepared coco_stuff (dataset_info.json: '
                                 'Failed to load JSON'), str(e.value)
  assert f'--image_sizes 32 --manual_dir DIR --data_dir {data_dir}' in str(e.value)
