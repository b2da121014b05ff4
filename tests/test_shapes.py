"""The shapes generator: deterministic, COCO-Stuff layout, masks that match the pixels."""
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
import pytest

from lama_jax.datasets import vocabulary
from lama_jax.datasets import shapes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def shapes_dir(tmp_path_factory):
  out = str(tmp_path_factory.mktemp('s') / 'shapes')
  shapes.generate(out, num_train=12, num_val=4, seed=3, num_workers=1)
  return out


def _files(root):
  return sorted(os.path.relpath(os.path.join(d, f), root)
                for d, _, fs in os.walk(root) for f in fs)


def test_same_seed_same_bytes_whatever_the_workers(shapes_dir, tmp_path):
  again = str(tmp_path / 'again')
  shapes.generate(again, num_train=12, num_val=4, seed=3, num_workers=2)
  files = _files(shapes_dir)
  assert files == _files(again)
  _, mismatch, errors = filecmp.cmpfiles(shapes_dir, again, files, shallow=False)
  assert not mismatch and not errors
  other = str(tmp_path / 'other')
  shapes.generate(other, num_train=12, num_val=4, seed=4, num_workers=1)
  assert not filecmp.cmp(os.path.join(shapes_dir, 'train2017', '000000000001.png'),
                         os.path.join(other, 'train2017', '000000000001.png'), shallow=False)


@pytest.mark.filterwarnings('ignore::DeprecationWarning')  # pycocotools vs NumPy 2
def test_layout_and_masks_match_pixels(shapes_dir):
  vocab = vocabulary.load_vocabulary('shapes')
  for split, count in (('train', 12), ('val', 4)):
    with open(os.path.join(shapes_dir, 'annotations', f'instances_{split}2017.json')) as f:
      things = json.load(f)
    with open(os.path.join(shapes_dir, 'annotations', f'stuff_{split}2017.json')) as f:
      stuff = json.load(f)
    assert len(things['images']) == count and things['images'] == stuff['images']
    assert {c['id'] for c in things['categories']} == set(range(1, 9))
    assert {c['id'] for c in stuff['categories']} == set(range(9, 14))
    for c in things['categories'] + stuff['categories']:
      assert vocab.id_to_name[c['id']] == c['name']
    for img in things['images']:
      pixels = np.asarray(Image.open(os.path.join(shapes_dir, f'{split}2017', img['file_name'])))
      assert pixels.shape == (128, 128, 3)
      anns = [a for a in things['annotations'] + stuff['annotations']
              if a['image_id'] == img['id']]
      n_things = sum(a['category_id'] <= 8 for a in anns)
      assert 1 <= n_things <= 6 and len(anns) - n_things <= 2
      coverage = np.zeros((128, 128), int)
      for a in anns:
        m = mask_utils.decode(a['segmentation']).astype(bool)
        assert a['iscrowd'] == 0 and a['area'] == m.sum() > 0
        ys, xs = np.nonzero(m)
        assert a['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        if a['category_id'] in shapes.THING_COLORS:
          assert (pixels[m] == shapes.THING_COLORS[a['category_id']]).all()
        else:  # textured stuff: near its colour on average
          mean = pixels[m].mean(axis=0)
          assert np.abs(mean - shapes.STUFF_COLORS[a['category_id']]).max() < 60
        coverage += m
      assert (coverage == 1).all()  # visible masks tile the image exactly


def test_no_more_workers_than_images(tmp_path, monkeypatch):
  sizes = []

  class Pool:  # records the pool size, draws in this process
    def __init__(self, processes, initializer=None):
      del initializer
      sizes.append(processes)

    def __enter__(self):
      return self

    def __exit__(self, *exc):
      return False

    def map(self, fn, jobs, chunksize=1):
      del chunksize
      return [fn(job) for job in jobs]

  context = type('Context', (), {'Pool': Pool})
  monkeypatch.setattr(shapes.multiprocessing, 'get_context', lambda method: context)
  shapes.generate(str(tmp_path / 'out'), num_train=3, num_val=1, seed=3, num_workers=64)
  assert sizes == [3]  # train: 3 images, 3 workers; val: 1 image, drawn in this process


def test_refuses_non_empty_out(shapes_dir):
  with pytest.raises(FileExistsError, match='not empty'):
    shapes.generate(shapes_dir, num_train=1, num_val=1)


def test_cli_help():
  proc = subprocess.run([sys.executable, '-m', 'lama_jax.datasets.shapes', '--help'], cwd=REPO,
                        capture_output=True, text=True, timeout=60)
  assert '--num_train' in proc.stdout and '--seed' in proc.stdout  # absl exits 1 after --help
