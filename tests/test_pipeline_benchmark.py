"""`benchmark --mode pipeline`: the COCO-like photo set passes the official filters, and the mode
times the real training pipeline."""
import json
import os

from PIL import Image
import pytest

from lama_jax import benchmark
from lama_jax.datasets import pipeline_benchmark
from lama_jax.datasets import preparation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_coco_like_set_keeps_every_image(tmp_path):
  manual = pipeline_benchmark.write_coco_like(str(tmp_path / 'coco'), num_train=3, num_val=1)
  with Image.open(os.path.join(manual, 'train2017', '000000000001.jpg')) as image:
    assert image.size == pipeline_benchmark.PHOTO_SIZE and image.format == 'JPEG'
  summaries = preparation.prepare('coco_stuff', manual, str(tmp_path / 'tfds'), image_sizes=(16,))
  assert summaries['train']['images'] == 3 and summaries['val']['images'] == 1
  assert 9 <= summaries['train']['objects'] <= 24  # 3-8 objects each, none filtered out


def test_pipeline_mode_prints_one_line_per_size(capsys, monkeypatch):
  monkeypatch.chdir(REPO)
  assert benchmark.main(['--mode', 'pipeline', '--config', 'configs/coco64.py', '--coco_like', '4',
                         '--image_sizes', '16,24', '--batch_size', '2', '--batches', '2']) == 0
  lines = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.startswith('{')]
  assert [l['image_size'] for l in lines] == [16, 24]
  for line in lines:
    assert line['images'] == 4 and line['batch_size'] == 2
    assert line['images_per_s'] > 0 and line['cores'] >= 1 and line['cpu_ms_per_image'] >= 0


def test_pipeline_mode_refuses_bad_sizes(capsys):
  assert benchmark.main(['--mode', 'pipeline', '--config', 'configs/coco64.py',
                         '--image_sizes', '64,x']) == 2
  assert 'error:' in capsys.readouterr().err


@pytest.mark.parametrize('args, expected', [
    (['--mode', 'pipeline', '--steps', '3', '--sample_batch', '0'],
     'error: --steps, --sample_batch applies to --mode step only (--mode is pipeline)\n'),
    (['--image_sizes', '16', '--batches', '3'],
     'error: --image_sizes, --batches applies to --mode pipeline only (--mode is step)\n'),
])
def test_flags_of_the_other_mode_are_refused(args, expected, capsys):
  """They were ignored without a word: --image_sizes 16 timed the step at the config's size."""
  assert benchmark.main(['--config', os.path.join(REPO, 'configs/coco64.py'), *args]) == 2
  assert capsys.readouterr().err == expected
