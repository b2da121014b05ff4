"""Training as a user runs it on edge-case datasets, configs and workdirs (`python -m lama_jax.main`).

The command runs in-process (`main.main(argv)` returns the exit code); the prepared dataset is a tiny
shapes set (3 train, 2 val images at 64×64) that the run itself generates and prepares.
"""
import pytest

from lama_jax import main as main_cmd
from lama_jax.datasets import loaders
from lama_jax.training import checkpointing
from lama_jax.training import config_checks
from lama_jax.training import loop
from lama_jax.training.trainer import Trainer
from tests.test_reliability import _one_error
from tests.train_helpers import tiny_config, tiny_config_file


@pytest.fixture(scope='module')
def tiny_shapes(tmp_path_factory):
  """(command-line flags, config) of a shapes set of 3 train and 2 val images, generated and
  prepared at 64×64 as a run does (`ensure_prepared`)."""
  root = tmp_path_factory.mktemp('shapes')
  flags = [f'--config.data.data_dir={root / "tfds"}',
           f'--config.data.shapes.manual_dir={root / "manual"}', '--config.data.dataset=shapes',
           '--config.data.shapes.num_train=3', '--config.data.shapes.num_val=2',
           '--config.model.num_classes=14']
  config = tiny_config(dataset='shapes', data_dir=str(root / 'tfds'), num_classes=14,
                       **{'data.shapes.manual_dir': str(root / 'manual'),
                          'data.shapes.num_train': 3, 'data.shapes.num_val': 2})
  loaders.ensure_prepared(config.data, 64)
  return flags, config


@pytest.fixture
def config_file(tmp_path):
  return tiny_config_file(tmp_path)


def test_a_batch_larger_than_the_train_split_is_refused(tiny_shapes, config_file, tmp_path, capsys):
  """3 images (6 with flips) and batch 8: no step per epoch, so every learning-rate milestone fell
  on step 0 (the rates ×0.01 from the start) and num_train_steps=-1 trained nothing, silently."""
  flags, _ = tiny_shapes
  workdir = tmp_path / 'run'
  assert main_cmd.main(['--config', config_file, '--workdir', str(workdir), *flags,
                        '--config.batch_size=8']) == 2
  err = _one_error(capsys)
  assert '--config.batch_size=8: more than the shapes train split' in err
  assert '3 images (6 with the official flip)' in err
  assert not workdir.exists()


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


def test_fewer_val_layouts_than_asked_is_said(tiny_shapes, caplog):
  """The grids and evaluators quietly took the 2 val layouts there were for 16 and 10."""
  config = tiny_shapes[1].copy_and_resolve_references()
  config.log.num_sample_images, config.evals.num_layouts = 16, 10
  evaluation = loop.Evaluation(config, None, None, '', None)
  evaluation._read_layouts()  # pylint: disable=protected-access
  assert len(evaluation.eval_layouts['labels']) == 2
  assert ('The val split holds only 2 layouts, fewer than config.log.num_sample_images=16 and '
          'config.evals.num_layouts=10 asks: all 2 are used.') in caplog.messages


def test_a_run_already_at_its_last_step_says_so_and_compiles_nothing(tmp_path, monkeypatch,
                                                                        capsys):
  """It printed 'training to step 2' and stopped without a word, after compiling the step."""
  config = tiny_config(num_train_steps=2, compilation_cache_dir='')
  trainer = Trainer(config, steps_per_epoch=100)
  manager = checkpointing.make_manager(str(tmp_path), 2, owner=True)
  state = trainer.init_state()
  checkpointing.save(manager, state.replace(step=state.step + 2))
  manager.wait_until_finished()
  manager.close()
  compiled = []
  monkeypatch.setattr(Trainer, 'compile_step', lambda self: compiled.append(1))
  loop.train_and_evaluate(config, str(tmp_path))
  assert 'The run is already at step 2: nothing to train' in capsys.readouterr().out
  assert not compiled


def test_a_shapes_set_of_another_size_than_the_config_asks_is_said(tiny_shapes, caplog):
  """A set generated earlier (3 train, 2 val) was used silently for num_train=3000, num_val=200."""
  config = tiny_shapes[1].copy_and_resolve_references()
  config.data.shapes.num_train, config.data.shapes.num_val = 3000, 200
  loaders.ensure_prepared(config.data, 64)
  assert any('holds 3 train and 2 val images, not the 3000 and 200 of config.data.shapes.num_train'
             in m for m in caplog.messages), caplog.messages
  caplog.clear()
  loaders.ensure_prepared(tiny_shapes[1].data, 64)  # the size asked: nothing to say
  assert not any('shapes set' in m for m in caplog.messages)
