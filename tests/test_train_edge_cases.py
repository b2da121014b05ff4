"""Training as a user runs it on edge-case datasets, configs and workdirs (`python -m lama_jax.main`).

The command runs in-process (`main.main(argv)` returns the exit code); the prepared dataset is a tiny
shapes set (3 train, 2 val images at 64×64) that the run itself generates and prepares.
"""
import pytest

from lama_jax import main as main_cmd
from lama_jax.training import checkpointing
from lama_jax.training import config_checks
from lama_jax.training import loop
from lama_jax.training.trainer import Trainer
from tests.train_helpers import tiny_config, tiny_config_file


def _one_error(capsys) -> str:
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1, err
  return err


@pytest.fixture(scope='module')
def tiny_shapes(tmp_path_factory):
  """The flags of a shapes set of 3 train and 2 val images, generated and prepared at 64×64."""
  root = tmp_path_factory.mktemp('shapes')
  flags = [f'--config.data.data_dir={root / "tfds"}',
           f'--config.data.shapes.manual_dir={root / "manual"}', '--config.data.dataset=shapes',
           '--config.data.shapes.num_train=3', '--config.data.shapes.num_val=2',
           '--config.model.num_classes=14']
  from lama_jax.datasets import loaders  # pylint: disable=g-import-not-at-top
  config = tiny_config(dataset='shapes', data_dir=str(root / 'tfds'), num_classes=14,
                       **{'data.shapes.manual_dir': str(root / 'manual'),
                          'data.shapes.num_train': 3, 'data.shapes.num_val': 2})
  loaders.ensure_prepared(config.data, 64)
  return flags, config


@pytest.fixture
def config_file(tmp_path):
  return tiny_config_file(tmp_path)


@pytest.mark.parametrize('norm', ['bgn', 'gn'])
def test_a_width_the_group_norm_cannot_split_is_refused(config_file, tmp_path, capsys, norm):
  """model.ch=6 was a reshape TypeError traceback from inside the generator's first trace."""
  workdir = tmp_path / 'run'
  assert main_cmd.main(['--config', config_file, '--workdir', str(workdir),
                        '--config.model.ch=6', f'--config.model.norm={norm}']) == 2
  assert f"--config.model.ch=6: must be a multiple of 4 with model.norm='{norm}'" in _one_error(
      capsys)
  assert not workdir.exists()
  config_checks.check(tiny_config(ch=6, norm='bn'))  # batch norm takes any width
