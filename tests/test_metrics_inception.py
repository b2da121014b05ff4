"""FID Inception: structure, forward pass and the pytorch-fid state-dict loader."""
import re

import jax
import numpy as np
import pytest

from lama_jax.metrics import inception


def _basic(name, cin, cout, k):
  kh, kw = (k, k) if isinstance(k, int) else k
  return [(name, cin, cout, kh, kw)]


def _pytorch_fid_convs():
  """(module path, in, out, kh, kw) of every BasicConv2d, from torchvision's Inception3."""
  convs = (_basic('Conv2d_1a_3x3', 3, 32, 3) + _basic('Conv2d_2a_3x3', 32, 32, 3)
           + _basic('Conv2d_2b_3x3', 32, 64, 3) + _basic('Conv2d_3b_1x1', 64, 80, 1)
           + _basic('Conv2d_4a_3x3', 80, 192, 3))
  for name, cin, pool in (('Mixed_5b', 192, 32), ('Mixed_5c', 256, 64), ('Mixed_5d', 288, 64)):
    convs += [(f'{name}.branch1x1', cin, 64, 1, 1), (f'{name}.branch5x5_1', cin, 48, 1, 1),
              (f'{name}.branch5x5_2', 48, 64, 5, 5), (f'{name}.branch3x3dbl_1', cin, 64, 1, 1),
              (f'{name}.branch3x3dbl_2', 64, 96, 3, 3), (f'{name}.branch3x3dbl_3', 96, 96, 3, 3),
              (f'{name}.branch_pool', cin, pool, 1, 1)]
  convs += [('Mixed_6a.branch3x3', 288, 384, 3, 3), ('Mixed_6a.branch3x3dbl_1', 288, 64, 1, 1),
            ('Mixed_6a.branch3x3dbl_2', 64, 96, 3, 3), ('Mixed_6a.branch3x3dbl_3', 96, 96, 3, 3)]
  for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
    convs += [(f'{name}.branch1x1', 768, 192, 1, 1), (f'{name}.branch7x7_1', 768, c7, 1, 1),
              (f'{name}.branch7x7_2', c7, c7, 1, 7), (f'{name}.branch7x7_3', c7, 192, 7, 1),
              (f'{name}.branch7x7dbl_1', 768, c7, 1, 1), (f'{name}.branch7x7dbl_2', c7, c7, 7, 1),
              (f'{name}.branch7x7dbl_3', c7, c7, 1, 7), (f'{name}.branch7x7dbl_4', c7, c7, 7, 1),
              (f'{name}.branch7x7dbl_5', c7, 192, 1, 7), (f'{name}.branch_pool', 768, 192, 1, 1)]
  convs += [('Mixed_7a.branch3x3_1', 768, 192, 1, 1), ('Mixed_7a.branch3x3_2', 192, 320, 3, 3),
            ('Mixed_7a.branch7x7x3_1', 768, 192, 1, 1), ('Mixed_7a.branch7x7x3_2', 192, 192, 1, 7),
            ('Mixed_7a.branch7x7x3_3', 192, 192, 7, 1), ('Mixed_7a.branch7x7x3_4', 192, 192, 3, 3)]
  for name, cin in (('Mixed_7b', 1280), ('Mixed_7c', 2048)):
    convs += [(f'{name}.branch1x1', cin, 320, 1, 1), (f'{name}.branch3x3_1', cin, 384, 1, 1),
              (f'{name}.branch3x3_2a', 384, 384, 1, 3), (f'{name}.branch3x3_2b', 384, 384, 3, 1),
              (f'{name}.branch3x3dbl_1', cin, 448, 1, 1), (f'{name}.branch3x3dbl_2', 448, 384, 3, 3),
              (f'{name}.branch3x3dbl_3a', 384, 384, 1, 3),
              (f'{name}.branch3x3dbl_3b', 384, 384, 3, 1), (f'{name}.branch_pool', cin, 192, 1, 1)]
  return convs


def fake_pytorch_fid_state_dict(seed=0):
  """Random numpy tensors under pytorch-fid's key names and PyTorch (OIHW) shapes."""
  rng = np.random.default_rng(seed)
  state = {}
  for name, cin, cout, kh, kw in _pytorch_fid_convs():
    state[f'{name}.conv.weight'] = rng.normal(0, (cin * kh * kw) ** -0.5,
                                              (cout, cin, kh, kw)).astype(np.float32)
    state[f'{name}.bn.weight'] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
    state[f'{name}.bn.bias'] = rng.normal(0, 0.1, cout).astype(np.float32)
    state[f'{name}.bn.running_mean'] = rng.normal(0, 0.1, cout).astype(np.float32)
    state[f'{name}.bn.running_var'] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
  state['fc.weight'] = np.zeros((1008, 2048), np.float32)
  state['fc.bias'] = np.zeros((1008,), np.float32)
  return state


@pytest.fixture(scope='module')
def state_dict():
  return fake_pytorch_fid_state_dict()


def test_loader_maps_every_tensor(state_dict):
  assert len(_pytorch_fid_convs()) == 94
  variables = inception.load_inception_params(state_dict)
  leaves = jax.tree_util.tree_leaves(variables)
  assert len(leaves) == 94 * 5  # every conv + BN tensor, fc ignored
  kernel = variables['params']['Mixed_6b']['branch7x7_2']['conv']['kernel']
  np.testing.assert_array_equal(
      kernel, state_dict['Mixed_6b.branch7x7_2.conv.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['batch_stats']['Mixed_7c']['branch_pool']['bn']['var'],
                                state_dict['Mixed_7c.branch_pool.bn.running_var'])


def test_loader_fails_loudly(state_dict):
  missing = dict(state_dict)
  del missing['Mixed_5b.branch5x5_2.bn.running_mean']
  with pytest.raises(KeyError, match='Mixed_5b/branch5x5_2/bn/mean'):
    inception.load_inception_params(missing)
  extra = dict(state_dict, **{'Mixed_5b.branch9x9.conv.weight': np.zeros((1, 1, 1, 1))})
  with pytest.raises(KeyError, match='Mixed_5b.branch9x9.conv.weight'):
    inception.load_inception_params(extra)
  wrong = dict(state_dict, **{'Conv2d_1a_3x3.conv.weight': np.zeros((32, 3, 5, 5), np.float32)})
  with pytest.raises(ValueError, match='Conv2d_1a_3x3.conv.weight'):
    inception.load_inception_params(wrong)


def test_loader_refuses_torchvision_imagenet_inception(state_dict):
  """torchvision's inception_v3_google weights have the same tensor names (fc of 1000 classes,
  AuxLogits): they loaded silently and gave FIDs not comparable with pytorch-fid's."""
  torchvision = dict(state_dict, **{'fc.weight': np.zeros((1000, 2048), np.float32),
                                    'fc.bias': np.zeros((1000,), np.float32),
                                    'AuxLogits.fc.weight': np.zeros((1000, 768), np.float32)})
  with pytest.raises(ValueError, match=re.escape(
      "an Inception-v3 with 1000 classes (fc.weight), not the FID Inception's 1008 "
      "(torchvision's ImageNet weights?)")):
    inception.load_inception_params(torchvision)
  no_fc = {k: v for k, v in state_dict.items() if not k.startswith('fc.')}
  assert len(jax.tree_util.tree_leaves(inception.load_inception_params(no_fc))) == 94 * 5


def test_extractor_runs_at_299(state_dict):
  variables = inception.load_inception_params(state_dict)
  extractor = inception.InceptionFeatureExtractor(variables, batch_size=2)
  images = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
  feats = extractor(images, progress=False)
  assert feats.shape == (3, 2048)
  assert np.isfinite(feats).all() and (feats >= 0).all()  # ReLU then mean
  assert not np.allclose(feats[0], feats[1])
  # uint8 and [0, 1] floats give the same features; the padded last batch does not leak.
  single = extractor(images[2:].astype(np.float32) / 255.0, progress=False)
  np.testing.assert_allclose(single[0], feats[2], rtol=1e-4, atol=1e-5)
