"""Official PyTorch discriminator state dicts → our variables (lama_jax/conversion/discriminator_mapping.py)."""
import contextlib
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lama_jax.conversion.discriminator_mapping import (convert_discriminator_state_dict,
                                                       official_discriminator_shapes,
                                                       random_discriminator_state_dict)
from lama_jax.conversion import converter
from lama_jax.conversion.torch_io import ConversionError
from lama_jax.conversion.torch_mapping import convert_state_dict, random_state_dict
from lama_jax.datasets.vocabulary import load_vocabulary
from lama_jax.models import generator_from_spec, make_discriminator
from lama_jax.training import checkpointing

REFERENCE = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'reference')


@pytest.mark.parametrize('size', [64, 128, 256])
def test_official_shapes_match_reference_key_lists(size):
  path = os.path.join(REFERENCE, f'keys_D{size}.json')
  if not os.path.exists(path):
    pytest.skip('shared/reference key lists not available')
  with open(path) as f:
    ref = json.load(f)
  shapes = official_discriminator_shapes(size)
  assert shapes == {k: tuple(v['shape']) for k, v in ref['keys'].items()}
  assert sum(int(np.prod(s)) for k, s in shapes.items()
             if ref['keys'][k]['kind'] == 'param') == ref['total_params']


def _where(key: str):
  """(collection, our path) of an official key, by rules written apart from the converter."""
  path, _, leaf = key.removeprefix('module.').removeprefix('obD.').rpartition('.')
  path = path.replace('.', '/')
  if leaf == 'alpha':
    return 'params', f'{path}/alpha' if path else 'alpha'
  col, name = {'weight_orig': ('params', 'embedding' if path == 'l_y' else 'kernel'),
               'weight_u': ('spectral', 'u'), 'weight_v': ('spectral', 'v'),
               'bias': ('params', 'bias')}[leaf]
  return col, f'{path}/{name}'


@pytest.mark.parametrize('size,prefix', [(64, ''), (128, 'module.'), (256, '')])
def test_every_tensor_lands_where_it_should(size, prefix):
  sd = random_discriminator_state_dict(size, seed=size, ch=4, num_classes=11)
  spec, variables = convert_discriminator_state_dict({prefix + k: v for k, v in sd.items()}, size)
  assert spec == {'image_size': size, 'ch': 4, 'num_classes': 11}
  flat = {(col, '/'.join(k)): v for col, tree in variables.items()
          for k, v in traverse_util.flatten_dict(tree).items()}
  placed = set()
  for key, x in sd.items():
    loc = _where(key)
    placed.add(loc)
    ours = flat[loc]
    if key.endswith('weight_orig') and x.ndim == 4:
      np.testing.assert_array_equal(ours, x.transpose(2, 3, 1, 0), err_msg=key)
    elif key.endswith('weight_orig') and loc[1] != 'l_y/embedding':
      np.testing.assert_array_equal(ours, x.T, err_msg=key)
    elif key.endswith('weight_v'):  # our v is flattened (kh, kw, in): the same W v
      w = sd[key.replace('weight_v', 'weight_orig')]
      kernel = flat[_where(key.replace('weight_v', 'weight_orig'))]
      kernel = kernel.T if loc[1] == 'l_y/v' else kernel
      np.testing.assert_allclose(kernel.reshape(-1, kernel.shape[-1]).T @ ours,
                                 w.reshape(w.shape[0], -1) @ x, rtol=1e-5, atol=1e-6, err_msg=key)
    else:
      np.testing.assert_array_equal(ours, x.reshape(ours.shape), err_msg=key)
  sigmas = {k for k in flat if k[1].endswith('/sigma')}
  assert set(flat) - placed == sigmas


def test_converted_discriminator_runs_and_matches_its_spectral_norm():
  sd = random_discriminator_state_dict(64, seed=1, ch=4, num_classes=11)
  spec, variables = convert_discriminator_state_dict(sd, 64)
  d = make_discriminator(**spec)
  images = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3), minval=-1.0, maxval=1.0)
  boxes = jnp.array([[[0.1, 0.1, 0.5, 0.5], [-0.6, -0.6, 0.5, 0.5]]] * 2)
  labels = jnp.array([[3, 0]] * 2)
  out_im, out_obj, valid = d.apply(variables, images, boxes, labels, train=False)
  assert out_im.shape == (2,) and out_obj.shape == (2, 2) and valid.tolist() == [[True, False]] * 2
  assert bool(jnp.isfinite(out_im).all() and jnp.isfinite(out_obj).all())
  w = sd['obD.l_y.weight_orig'].astype(np.float64)
  sigma = sd['obD.l_y.weight_u'] @ w @ sd['obD.l_y.weight_v']
  np.testing.assert_allclose(variables['spectral']['l_y']['sigma'], sigma, rtol=1e-6)


def test_missing_unmapped_and_misnamed_keys_are_named():
  sd = random_discriminator_state_dict(64, ch=4, num_classes=11)
  bad = dict(sd)
  del bad['obD.block3.conv2.bias']
  bad['obD.block9.alpha'] = np.zeros(())
  with pytest.raises(ConversionError, match=r'missing keys: obD\.block3\.conv2\.bias; '
                                            r'unmapped keys: obD\.block9\.alpha'):
    convert_discriminator_state_dict(bad, 64)
  with pytest.raises(ConversionError, match='pass --image_size 64'):
    convert_discriminator_state_dict(sd, 128)
  bad = dict(sd)
  bad['obD.block2.conv1.bias'] = np.zeros((5,), np.float32)
  with pytest.raises(ConversionError, match=r'obD\.block2\.conv1: shape \(5,\)'):
    convert_discriminator_state_dict(bad, 64)


def test_convert_cli_with_discriminator_writes_a_workdir_training_resumes(tmp_path, capsys):
  """`convert --torch_discriminator`: a step-0 training workdir that the trainer of a matching config
  restores (what `main --workdir` does on start), still loadable as a generator directory."""
  torch = pytest.importorskip('torch')
  from lama_jax import convert
  from lama_jax.conversion.torch_mapping import random_state_dict
  from lama_jax.inference.generator import LayoutGenerator
  from lama_jax.training import checkpointing
  from lama_jax.training import trainer as trainer_lib
  from tests.train_helpers import tiny_config

  def save(sd, name):
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, tmp_path / name)
    return str(tmp_path / name)

  g_path = save(random_state_dict(64, seed=4, num_classes=184, ch=4, mask_hidden=8), 'G.pth')
  dsd = random_discriminator_state_dict(64, seed=5, ch=4, num_classes=184)
  d_path = save({'module.' + k: v for k, v in dsd.items()}, 'D.pth')
  out = tmp_path / 'finetune'
  assert convert.main(['--torch_checkpoint', g_path, '--torch_discriminator', d_path,
                       '--image_size', '64', '--out', str(out)]) == 0
  assert 'training workdir at step 0 (discriminator ch=4)' in capsys.readouterr().out
  assert LayoutGenerator.load(str(out)).generator.ch == 4
  config = tiny_config(**{'model.num_classes': 184, 'data.max_objects': 8})
  trainer = trainer_lib.Trainer(config, steps_per_epoch=10)
  manager = checkpointing.make_manager(str(out), 1)
  state = trainer_lib.to_host(checkpointing.restore_latest(manager, trainer.abstract_state))
  manager.close()
  assert int(state.step) == 0
  _, want = convert_discriminator_state_dict(dsd, 64)
  got = traverse_util.flatten_dict({'params': state.d_params, **state.d_state})
  for key, value in traverse_util.flatten_dict(want).items():
    np.testing.assert_array_equal(got[key], value, err_msg=str(key))
  assert all(not np.any(x) for x in jax.tree.leaves(state.d_opt_state))  # fresh Adam
  # A discriminator of another model: one line, exit code 2, nothing written.
  other = save(random_discriminator_state_dict(64, ch=4, num_classes=11), 'D11.pth')
  assert convert.main(['--torch_checkpoint', g_path, '--torch_discriminator', other,
                       '--image_size', '64', '--out', str(tmp_path / 'x')]) == 2
  err = capsys.readouterr().err
  assert 'discriminator has 11 classes but the generator 184' in err and err.count('\n') == 1
  assert not (tmp_path / 'x').exists()


@pytest.mark.parametrize('during', ['save', 'wait'])
def test_ctrl_c_while_orbax_writes_leaves_no_temporary_folder(tmp_path, monkeypatch, during):
  """Ctrl-C during the save of a fine-tuning workdir: Orbax's writer threads end before atomic_dir
  removes the temporary folder (they recreated its subfolders after the removal, and a .out.XXXX.tmp
  folder was left behind)."""
  spec, g_vars = convert_state_dict(random_state_dict(64, seed=4, num_classes=184, ch=4,
                                                      mask_hidden=8), 64)
  _, d_vars = convert_discriminator_state_dict(random_discriminator_state_dict(
      64, seed=5, ch=4, num_classes=184), 64)
  managers, busy = [], []
  real_save, real_rmtree = checkpointing.save, shutil.rmtree

  def save(manager, state, force=False):
    real_save(manager, state, force)
    managers.append(manager)
    if during == 'save':
      raise KeyboardInterrupt  # while the writes go on in the background
    waits = []

    def wait_until_finished():
      if not waits:
        waits.append(1)
        raise KeyboardInterrupt  # the first wait (Ctrl-C during it), not close()'s
      type(manager).wait_until_finished(manager)
    manager.wait_until_finished = wait_until_finished
    return True

  def rmtree(path, *args, **kwargs):
    busy.append(any(m.is_saving_in_progress() for m in managers))
    real_rmtree(path, *args, **kwargs)
  monkeypatch.setattr(checkpointing, 'save', save)
  monkeypatch.setattr(shutil, 'rmtree', rmtree)
  with pytest.raises(KeyboardInterrupt):
    converter.save_training_workdir(str(tmp_path / 'out'), generator_from_spec(spec), g_vars,
                                    d_vars, 8, load_vocabulary('coco_stuff'))
  for manager in managers:
    with contextlib.suppress(Exception):  # writes into a removed folder fail (without the fix)
      manager.wait_until_finished()
  assert busy == [False]
  assert os.listdir(tmp_path) == []
