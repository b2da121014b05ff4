"""Fast restarts: the compilation cache folder, and the exported train step (the same numbers as
the plain step; a later start loads it without tracing the step or the models' init)."""
import jax
import numpy as np
import pytest

from lama_jax.datasets import synthetic
from lama_jax.errors import LamaError
from lama_jax.training import compilation_cache
from lama_jax.training import step_cache
from lama_jax.training import trainer as trainer_lib
from tests.train_helpers import tiny_config


def test_cache_folder_setting(monkeypatch, tmp_path):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'env'))
  assert compilation_cache.resolve('auto') == str(tmp_path / 'env')  # the user's JAX setting wins
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR')
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
  assert compilation_cache.resolve('auto') == str(tmp_path / 'xdg' / 'lama_jax' / 'xla')
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  assert compilation_cache.resolve('auto') == str(tmp_path / 'home' / '.cache' / 'lama_jax' / 'xla')
  assert compilation_cache.resolve('~/c') == str(tmp_path / 'home' / 'c')
  assert compilation_cache.resolve('') == ''  # off


def test_fingerprint_ignores_loop_only_fields_and_sees_the_rest():
  mesh = trainer_lib.create_mesh()
  key = step_cache.fingerprint(tiny_config(), 2, mesh)
  assert step_cache.fingerprint(tiny_config(num_train_steps=9, every_steps=7), 2, mesh) == key
  assert step_cache.fingerprint(tiny_config(g_lr=1e-3), 2, mesh) != key
  assert step_cache.fingerprint(tiny_config(), 3, mesh) != key


def test_exported_step_equals_the_plain_step_and_loads_without_tracing(tmp_path, monkeypatch):
  config, folder = tiny_config(), str(tmp_path)
  first = trainer_lib.Trainer(config, steps_per_epoch=2, step_cache_dir=folder)  # exports
  assert len(list((tmp_path / step_cache.SUBDIR).glob('*.step'))) == 1

  # A later start: nothing traced (neither init for the abstract state nor the step), nothing saved.
  def no_trace(*args, **kwargs):
    raise AssertionError('traced instead of loading the cached step')
  monkeypatch.setattr(trainer_lib.Trainer, '_init_fn', no_trace)
  monkeypatch.setattr(step_cache, '_export', no_trace)
  later = trainer_lib.Trainer(config, steps_per_epoch=2, step_cache_dir=folder)
  monkeypatch.undo()
  assert jax.tree.structure(later.abstract_state) == jax.tree.structure(first.abstract_state)
  for a, b in zip(jax.tree.leaves(later.abstract_state), jax.tree.leaves(first.abstract_state)):
    assert (a.shape, a.dtype, a.sharding) == (b.shape, b.dtype, b.sharding)

  plain = trainer_lib.Trainer(config, steps_per_epoch=2)
  batch = plain.global_batch(next(synthetic.synthetic_batches(64, 3, 5, 2, seed=0)))
  results = []
  for step_fn in (later.compile_step(), plain.step_fn):
    state, metrics = step_fn(plain.init_state(), batch, plain.key)
    results.append(trainer_lib.to_host((state, metrics)))
  assert jax.tree.structure(results[0]) == jax.tree.structure(results[1])
  for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1])):
    np.testing.assert_array_equal(a, b)

  # A damaged entry is exported again and replaced.
  (entry,) = (tmp_path / step_cache.SUBDIR).glob('*.step')
  entry.write_bytes(b'not a pickle')
  again = trainer_lib.Trainer(config, steps_per_epoch=2, step_cache_dir=folder)
  assert again.abstract_state is not None and entry.read_bytes() != b'not a pickle'


def test_cache_folder_that_is_a_file_is_one_line_naming_the_flag(monkeypatch, tmp_path):
  (tmp_path / 'cache').write_text('')
  with pytest.raises(LamaError, match=r'^--compilation_cache_dir .*cache: exists and is not a folder'):
    compilation_cache.configure(str(tmp_path / 'cache'), '--compilation_cache_dir')
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', str(tmp_path / 'cache' / 'xla'))
  with pytest.raises(LamaError, match=r'^--config.compilation_cache_dir \(auto\) .*: .*cache is a file'):
    compilation_cache.configure('auto')


@pytest.fixture(autouse=True)
def _keep_jax_cache_setting():
  """These tests must not move the session's compilation cache (conftest.py)."""
  before = (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir)
  yield
  assert (jax.config.jax_enable_compilation_cache, jax.config.jax_compilation_cache_dir) == before
