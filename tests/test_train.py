"""Train step semantics, per-group learning rates, D-only iterations, end-to-end run and resume."""
import glob
import os

import flax.traverse_util
import jax
import numpy as np
import pytest

from lama_jax.training import checkpointing
from lama_jax.training import optimizers
from lama_jax.datasets import synthetic
from lama_jax.datasets.vocabulary import Vocabulary
from lama_jax.training import loop as train
from lama_jax.training import sample_grids
from lama_jax.training import trainer as trainer_lib
from lama_jax import visualize
from tests.train_helpers import tiny_config


def _flat(tree):
  return flax.traverse_util.flatten_dict(trainer_lib.to_host(tree), sep='/')


def _batches(config, batch_size):
  return synthetic.synthetic_batches(config.model.image_size, config.data.max_objects,
                                     config.model.num_classes, batch_size, seed=0,
                                     with_masks=config.gt_masks)


def _changed(a, b):
  fa, fb = _flat(a), _flat(b)
  return {k for k in fa if not np.array_equal(fa[k], fb[k])}


@pytest.fixture(scope='module')
def trainer():
  # steps_per_epoch 2, d_only_iters 1: step 0 is D-only, step 1 updates G too.
  return trainer_lib.Trainer(tiny_config(), steps_per_epoch=2)


def test_parameter_groups(trainer):
  state = trainer.init_state()
  g = flax.traverse_util.flatten_dict(optimizers.generator_labels(trainer_lib.to_host(state.g_params)), sep='/')
  d = flax.traverse_util.flatten_dict(optimizers.discriminator_labels(trainer_lib.to_host(state.d_params)), sep='/')
  assert {k for k, v in g.items() if v == 'g_slow'} == {
      k for k in g if 'style_mapping' in k or k.endswith('rho')}
  assert any(k.startswith('style_mapping') for k, v in g.items() if v == 'g_slow')
  assert {k for k, v in d.items() if v == 'd_alpha'} == {k for k in d if k.endswith('alpha')}
  assert float(optimizers.lr_factor(5, (4, 8))) == pytest.approx(0.1)
  assert float(optimizers.lr_factor(9, (4, 8))) == pytest.approx(0.01)


def test_d_only_then_g_update(trainer):
  batches = _batches(trainer.config, 2)
  s0 = trainer.init_state()
  g0, gs0, d0 = trainer_lib.to_host((s0.g_params, s0.g_state, s0.d_params))
  s1, m1 = trainer.step_fn(s0, trainer.global_batch(next(batches)), trainer.key)
  assert float(trainer_lib.to_host(m1)['G/g_updated']) == 0.0
  assert not _changed(g0, s1.g_params)  # D-only: G parameters untouched
  assert _changed(gs0['batch_stats'], s1.g_state['batch_stats'])  # G forward still ran in train mode
  assert _changed(d0, s1.d_params)
  g1, d1 = trainer_lib.to_host((s1.g_params, s1.d_params))  # s1 is donated to the next step
  s2, m2 = trainer.step_fn(s1, trainer.global_batch(next(batches)), trainer.key)
  m2 = trainer_lib.to_host(m2)
  assert float(m2['G/g_updated']) == 1.0
  changed = _changed(g1, s2.g_params)
  # ReZero: with every α at 0 only the α's and the paths outside the residual branches get gradient.
  assert 'fc/kernel' in changed and 'final_conv/kernel' in changed
  assert any(k.endswith('/alpha') for k in changed)
  assert int(trainer_lib.to_host(s2.step)) == 2
  # Per-group rates: the first Adam step (b1=0) moves each parameter by at most lr.
  assert m2['LR/g_slow'] == pytest.approx(0.1 * m2['LR/g'])
  assert m2['LR/d_alpha'] == pytest.approx(0.2 * m2['LR/d'])
  g_delta = _flat(jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b), trainer_lib.to_host(s2.g_params), g1))
  assert max(v.max() for v in g_delta.values()) <= 1.01e-4
  d_delta = _flat(jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b), d1, d0))
  alpha = max(v.max() for k, v in d_delta.items() if k.endswith('alpha'))
  other = max(v.max() for k, v in d_delta.items() if not k.endswith('alpha'))
  assert 5e-5 < alpha <= 6.1e-5 and 2.9e-4 < other <= 3.01e-4


def test_visualize_shapes():
  mask = np.zeros((2, 3, 8, 8), np.float32)
  mask[:, 0, :4] = 1.0
  out = visualize.colorize_masks(mask, np.array([[1, 2, 0], [3, 0, 0]]), 5)
  assert out.shape == (2, 8, 8, 3) and out.dtype == np.uint8
  assert out[:, 4:].max() == 0 and out[0, 0, 0].max() > 0
  drawn = visualize.draw_layout(np.zeros((8, 8, 3), np.uint8), np.array([[0.1, 0.1, 0.5, 0.5]]),
                                np.array([1]), {1: 'disk'}, 5)
  assert drawn.shape == (8, 8, 3) and drawn.max() > 0


def test_end_to_end_and_resume(tmp_path):
  workdir = str(tmp_path / 'run')
  config = tiny_config(num_train_steps=2)
  state = train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert os.path.exists(os.path.join(workdir, 'samples', '000002.png'))
  for name in ('generator.json', 'vocabulary.json', 'config.json'):
    assert os.path.exists(os.path.join(workdir, name))
  # The saved state restores identically, and a longer run continues from step 2.
  trainer = trainer_lib.Trainer(config, steps_per_epoch=1000)
  manager = checkpointing.make_manager(workdir, 2)
  restored = checkpointing.restore_latest(manager, trainer.abstract_state)
  manager.close()
  for a, b in zip(jax.tree.leaves(trainer_lib.to_host(state)), jax.tree.leaves(trainer_lib.to_host(restored))):
    np.testing.assert_array_equal(a, b)
  state3 = train.train_and_evaluate(tiny_config(num_train_steps=3), workdir)
  assert int(trainer_lib.to_host(state3.step)) == 3
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '3']


def test_ground_truth_mask_training_uses_the_given_masks():
  """configs/*_gt_masks.py: the step draws from ground-truth masks; the mask network is unused."""
  config = tiny_config(gt_masks=True, d_only_iters=0)
  trainer = trainer_lib.Trainer(config, steps_per_epoch=10)
  state = trainer.init_state()
  before = trainer_lib.to_host(state.g_params)  # the step donates the state
  batch = next(_batches(config, config.batch_size))
  assert batch['masks'].shape == (2, 3, 32, 32)
  new_state, metrics = trainer.step_fn(state, trainer.global_batch(batch), trainer.key)
  changed = _changed(before, new_state.g_params)
  assert changed and not any(k.startswith(('mask_regress', 'lama')) for k in changed)
  assert np.isfinite(float(metrics['G/g_loss']))
  gen = trainer.layout_generator(new_state, Vocabulary.numbered('synthetic', 5))
  image, mask, _ = sample_grids.sample(gen, batch)
  from lama_jax.models.mask import masks_to_layout  # pylint: disable=g-import-not-at-top
  np.testing.assert_allclose(mask, masks_to_layout(batch['boxes'], batch['masks'], 64), atol=1e-6)
  assert image.shape == (2, 64, 64, 3)


def test_progress_line_leaves_out_the_time_spent_scoring(monkeypatch, capsys):
  """The demo's last line said '0.08 steps/s  ETA 9h01m' at ~1 step/s: the final scores' time."""
  from lama_jax.training import loop  # pylint: disable=g-import-not-at-top
  clock = [100.0]
  monkeypatch.setattr(loop.time, 'monotonic', lambda: clock[0])
  progress = loop.Progress(num_steps=1000, start_step=0)
  progress.first = False
  clock[0] += 10.0  # 10 steps in 10 s
  with progress.scoring():
    clock[0] += 110.0  # then the scores
  progress(10, {'D/d_loss': 1.0, 'G/g_loss': 2.0})
  clock[0] += 20.0  # the next 10 steps, no scoring
  progress(20, {'D/d_loss': 1.0, 'G/g_loss': 2.0})
  first, second = capsys.readouterr().out.splitlines()
  assert first.startswith('step 10/1000  1.00 steps/s  ETA 16m30s'), first
  assert second.startswith('step 20/1000  0.50 steps/s  ETA 32m40s'), second


def test_a_short_last_interval_is_measured_with_the_one_before(monkeypatch, capsys):
  """A run stopped one step after a log step said '0.81 steps/s  ETA 41m35s' at 2.1 steps/s: that
  one step carried the final checkpoint save."""
  from lama_jax.training import loop  # pylint: disable=g-import-not-at-top
  clock = [100.0]
  monkeypatch.setattr(loop.time, 'monotonic', lambda: clock[0])
  progress = loop.Progress(num_steps=1000, start_step=0)
  summary = {'D/d_loss': 1.0, 'G/g_loss': 2.0}
  for step, seconds in ((10, 30.0), (20, 5.0), (30, 5.0), (31, 1.5)):
    clock[0] += seconds
    progress(step, summary)
  lines = capsys.readouterr().out.splitlines()
  assert lines[0].startswith('step 10/1000  0.33 steps/s (incl. compiling)'), lines[0]
  assert lines[1].startswith('step 20/1000  2.00 steps/s  ETA'), lines[1]  # compiling left out
  assert lines[2].startswith('step 30/1000  2.00 steps/s'), lines[2]
  assert lines[3].startswith('step 31/1000  1.69 steps/s'), lines[3]  # 11 steps in 6.5 s, not 0.67
