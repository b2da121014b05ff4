"""Official PyTorch generator state dicts → our variables, and the convert CLI."""
import json
import logging
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from lama_jax.conversion import converter
from lama_jax.conversion import torch_mapping
from lama_jax.models import generator_from_spec
from lama_jax.models.layers import SNConv, SNDense
from lama_jax.conversion.torch_mapping import ConversionError, convert_state_dict, random_state_dict

REFERENCE = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'reference')
SMALL = dict(ch=4, mask_hidden=8)  # small enough to run the generator in a test


def _official_location(key: str, image_size: int):
  """Where an official key must land: (collection, our path, leaf), written independently of the
  converter's table (regex rules over the official names)."""
  k = key
  block = {64: r'res(\d)\.', 128: r'res(\d)\.', 256: r'res\.(\d)\.model\.'}[image_size]
  offset = {64: 2, 128: 1, 256: 0}[image_size]
  m = re.match(block, k)
  if m:
    k = f'res{int(m.group(1)) - offset}/' + k[m.end():]
  rules = [
      (r'^style_mapping\.(\d)\.', lambda m: f'style_mapping/fc{int(m.group(1)) // 2}/'),
      (r'^final\.0\.', lambda m: 'final_bn/'), (r'^final\.2\.', lambda m: 'final_conv/'),
      (r'^mask_regress\.final\.0\.', lambda m: 'mask_regress/final_bn/'),
      (r'^mask_regress\.final\.2\.', lambda m: 'mask_regress/final_conv/'),
      (r'^mask_regress\.conv(\d)\.conv\.0\.', lambda m: f'mask_regress/conv{m.group(1)}/bn/'),
      (r'^mask_regress\.conv(\d)\.conv\.2\.', lambda m: f'mask_regress/conv{m.group(1)}/conv/'),
      (r'^mask_regress\.query_local\.(\d)\.conv\.0\.',
       lambda m: f'lama/query_local_{m.group(1)}/gn/'),
      (r'^mask_regress\.query_local\.(\d)\.conv\.2\.',
       lambda m: f'lama/query_local_{m.group(1)}/conv/'),
      (r'^mask_regress\.query_local\.(\d)\.', lambda m: f'lama/query_local_{m.group(1)}/'),
      (r'^mask_regress\.(query|key)_affine\.', lambda m: f'lama/{m.group(1)}_affine/'),
      (r'^mask_regress\.mask_adjust_alpha$', lambda m: 'lama/alpha'),
      (r'^label_embedding\.weight$', lambda m: 'label_embedding/embedding'),
  ]
  for pattern, repl in rules:
    k = re.sub(pattern, repl, k)
  k = k.replace('.', '/')
  leaf_map = {'weight_orig': ('params', 'kernel'), 'weight_u': ('spectral', 'u'),
              'weight_v': ('spectral', 'v'), 'running_mean': ('batch_stats', 'mean'),
              'running_var': ('batch_stats', 'var'), 'weight': ('params', 'scale'),
              'bias': ('params', 'bias')}
  head, _, leaf = k.rpartition('/')
  if leaf in leaf_map:
    col, name = leaf_map[leaf]
    return col, f'{head}/{name}'
  return 'params', k


def _expected(key, x, shape_ours):
  """The official tensor in our layout."""
  if key.endswith('weight_orig'):
    return x.T if x.ndim == 2 else x.transpose(2, 3, 1, 0)
  if key.endswith('weight_v') and len(shape_ours) == 1:
    return None  # checked separately (reordered for convs)
  return x.reshape(shape_ours)


def _check_every_tensor(sd, image_size, variables):
  flat = {}
  for col, tree in variables.items():
    for k, v in traverse_util.flatten_dict(tree).items():
      flat[(col, '/'.join(k))] = v
  placed = set()
  for key, x in sd.items():
    key = key.removeprefix('module.')
    if key.endswith('num_batches_tracked'):
      continue
    loc = _official_location(key, image_size)
    assert loc in flat, (key, loc)
    placed.add(loc)
    ours = flat[loc]
    want = _expected(key, x, ours.shape)
    if want is not None:
      np.testing.assert_array_equal(ours, want, err_msg=key)
    if key.endswith('weight_orig'):  # sigma = u·(W v) with the official (in, kh, kw) order of v
      prefix = key[:-len('weight_orig')]
      w_mat = x.reshape(x.shape[0], -1).astype(np.float64)
      sigma = sd.get(prefix + 'weight_u', sd.get('module.' + prefix + 'weight_u')) @ (
          w_mat @ sd.get(prefix + 'weight_v', sd.get('module.' + prefix + 'weight_v')))
      np.testing.assert_allclose(flat[('spectral', loc[1].replace('/kernel', '/sigma'))], sigma,
                                 rtol=1e-6, err_msg=key)
      # Our v, flattened (kh, kw, in), gives the same W v as the official one.
      v_ours = flat[('spectral', loc[1].replace('/kernel', '/v'))]
      kernel = flat[loc]
      np.testing.assert_allclose(kernel.reshape(-1, kernel.shape[-1]).T @ v_ours,
                                 w_mat @ sd.get(prefix + 'weight_v',
                                                sd.get('module.' + prefix + 'weight_v')),
                                 rtol=1e-4, atol=1e-5, err_msg=key)
  sigmas = {k for k in flat if k[1].endswith('/sigma')}
  assert set(flat) - placed == sigmas  # every variable of ours came from the state dict


def test_official_shapes_match_reference_key_lists():
  for size in (64, 128, 256):
    path = os.path.join(REFERENCE, f'keys_G{size}.json')
    if not os.path.exists(path):
      pytest.skip('shared/reference key lists not available')
    with open(path) as f:
      ref = json.load(f)
    shapes = torch_mapping.official_shapes(size)
    assert {k: tuple(v['shape']) for k, v in ref['keys'].items()} == shapes
    params = sum(int(np.prod(s)) for k, s in shapes.items()
                 if ref['keys'][k]['kind'] == 'param')
    assert params == ref['total_params']


@pytest.mark.parametrize('prefix', ['', 'module.'])
def test_full_shapes_at_width_8_land_where_they_should(prefix):
  sd = random_state_dict(128, seed=1, ch=8)
  spec, variables = convert_state_dict({prefix + k: v for k, v in sd.items()}, 128)
  assert spec['ch'] == 8 and spec['num_classes'] == 184 and spec['embed_dim'] == 160
  assert spec['channels'] == [8, 8, 4, 4, 2, 1] and spec['mask_hidden'] == 128
  _check_every_tensor({prefix + k: v for k, v in sd.items()}, 128, variables)


@pytest.mark.parametrize('size', [64, 256])
def test_small_dicts_of_every_resolution(size):
  sd = random_state_dict(size, seed=2, num_classes=11, **SMALL)
  spec, variables = convert_state_dict(sd, size)
  assert spec['ch'] == 4 and spec['num_classes'] == 11 and spec['mask_hidden'] == 8
  _check_every_tensor(sd, size, variables)


def test_converted_generator_runs_finite():
  sd = random_state_dict(64, seed=3, num_classes=11, **SMALL)
  spec, variables = convert_state_dict(sd, 64)
  g = generator_from_spec(spec)
  b, o = 2, 3
  z_obj = jax.random.normal(jax.random.key(0), (b, o, 128))
  boxes = jnp.array([[[0.1, 0.1, 0.5, 0.5], [0.3, 0.2, 0.6, 0.7], [-0.6, -0.6, 0.5, 0.5]]] * b)
  labels = jnp.array([[1, 5, 0]] * b)
  image, mask, raw = jax.jit(lambda v: g.apply(v, z_obj, boxes, labels, jnp.zeros((b, 128)),
                                               rngs={'noise': jax.random.key(1)}))(variables)
  assert image.shape == (b, 64, 64, 3) and mask.shape == raw.shape == (b, o, 64, 64)
  assert all(bool(jnp.isfinite(x).all()) for x in (image, mask, raw))
  assert float(jnp.abs(raw[:, 2]).max()) == 0.0  # the padding box lies outside the image


def test_missing_key_is_named():
  sd = random_state_dict(64, num_classes=11, **SMALL)
  del sd['res3.b2.weight_proj.weight_u']
  with pytest.raises(ConversionError, match=r'missing keys: res3\.b2\.weight_proj\.weight_u'):
    convert_state_dict(sd, 64)
  sd = random_state_dict(64, num_classes=11, **SMALL)
  del sd['final.0.weight']
  with pytest.raises(ConversionError, match=r"missing key 'final\.0\.weight'"):
    convert_state_dict(sd, 64)


def test_keys_the_official_model_lacks_are_dropped_with_a_warning(caplog):
  # As the official test.py loads a checkpoint: the keys its model has, the others dropped.
  sd = random_state_dict(64, num_classes=11, **SMALL)
  _, want = convert_state_dict(sd, 64)
  extra = {**sd, 'mask_regress.conv4.alpha': np.zeros(()),
           **{f'ema.{i}': np.zeros((2,)) for i in range(11)}}
  with caplog.at_level(logging.WARNING):
    _, got = convert_state_dict(extra, 64)
  jax.tree.map(np.testing.assert_array_equal, got, want)
  assert 'Ignoring 12 state-dict key(s) that the official generator does not have' in caplog.text
  assert 'ema.0, ema.1, ema.10' in caplog.text and 'and 2 more' in caplog.text
  # Beside a missing key, the unmapped ones are named too (a renamed key shows as both).
  del extra['style_mapping.2.bias']
  with pytest.raises(ConversionError, match=r'missing keys: style_mapping\.2\.bias; unmapped keys: '
                                            r'ema\.0'):
    convert_state_dict(extra, 64)


def test_wrong_shape_is_named():
  sd = random_state_dict(64, num_classes=11, **SMALL)
  sd['style_mapping.2.bias'] = np.zeros((7,), np.float32)
  with pytest.raises(ConversionError, match=r'style_mapping\.2: shape \(7,\)'):
    convert_state_dict(sd, 64)


def test_wrong_image_size_gives_a_hint():
  sd = random_state_dict(64, num_classes=11, **SMALL)
  with pytest.raises(ConversionError, match='pass --image_size 64'):
    convert_state_dict(sd, 128)


def test_spectral_norm_matches_torch():
  """Our SN layers with converted weight_orig/u/v compute what torch's spectral_norm computes."""
  torch = pytest.importorskip('torch')
  torch.manual_seed(0)
  conv = torch.nn.utils.spectral_norm(torch.nn.Conv2d(5, 6, 3, 1, 1))
  lin = torch.nn.utils.spectral_norm(torch.nn.Linear(7, 4))
  x = torch.randn(2, 5, 8, 8)
  y = torch.randn(3, 7)
  for _ in range(3):  # training forwards move u and v away from their init
    conv(x), lin(y)
  conv.eval(), lin.eval()
  with torch.no_grad():
    want_conv, want_lin = conv(x).numpy(), lin(y).numpy()
  for module, layer, inp, want, is_conv in (
      (conv, SNConv(6, 3), x, want_conv, True), (lin, SNDense(4), y, want_lin, False)):
    sd = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    # pylint: disable=protected-access
    reader = torch_mapping._Reader({f'l.{k}': v for k, v in sd.items()})
    leaves = torch_mapping._convert_sn(reader, 'l', is_conv, True)
    variables = {'params': {}, 'spectral': {}}
    for (col, name), arr in leaves.items():
      variables[col][name] = jnp.asarray(arr)
    inp = inp.numpy().transpose(0, 2, 3, 1) if is_conv else inp.numpy()
    got = np.asarray(layer.apply(variables, jnp.asarray(inp), False))
    if is_conv:
      got = got.transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('content, expected', [
    (b'{"dataset": "coco_stuff"}', ': Not a vocabulary'),
    (b'[1, 2]', ': Not a vocabulary'),
    (b'{"dataset": "coco_stuff", "num_classes": 184, "id_to_name": ["a"]}', ': Not a vocabulary'),
    (b'\x80\x02garbage', ' is not valid JSON'),  # bytes that are not text: the file was not named
])
def test_a_bad_vocab_file_is_named(tmp_path, content, expected):
  path = tmp_path / 'vocab.json'
  path.write_bytes(content)
  with pytest.raises(ConversionError) as e:
    converter.load_dataset_vocabulary('coco', 184, str(path))
  message = str(e.value)
  assert message.startswith(f'Vocabulary file {path}{expected}'), message
  assert 'pass --vocab' not in message, message  # it was passed


def test_convert_cli_writes_a_loadable_generator(tmp_path, capsys):
  torch = pytest.importorskip('torch')
  from lama_jax import convert
  from lama_jax.inference.generator import LayoutGenerator
  sd = random_state_dict(64, seed=4, num_classes=184, **SMALL)
  path = tmp_path / 'G.pth'
  torch.save({'module.' + k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, path)
  out = tmp_path / 'converted'
  assert convert.main(['--torch_checkpoint', str(path), '--image_size', '64', '--out', str(out),
                       '--dataset', 'coco']) == 0
  gen = LayoutGenerator.load(str(out))
  assert gen.step == 0 and gen.max_objects == 8 and gen.vocabulary.num_classes == 184
  assert gen.generator.ch == 4 and gen.image_size == 64
  np.testing.assert_array_equal(np.asarray(gen.variables['params']['label_embedding']['embedding']),
                                sd['label_embedding.weight'])
  # Bad inputs: one line on stderr, exit code 2.
  capsys.readouterr()
  assert convert.main(['--torch_checkpoint', str(path), '--image_size', '128', '--out',
                       str(tmp_path / 'x')]) == 2
  assert 'pass --image_size 64' in capsys.readouterr().err
  del sd['fc.bias']
  torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, path)
  assert convert.main(['--torch_checkpoint', str(path), '--image_size', '64', '--out',
                       str(tmp_path / 'y')]) == 2
  err = capsys.readouterr().err
  assert 'missing keys: fc.bias' in err and err.count('\n') == 1
  assert not (tmp_path / 'y').exists()
  (tmp_path / 'junk.pth').write_bytes(b'not a checkpoint')
  assert convert.main(['--torch_checkpoint', str(tmp_path / 'junk.pth'), '--image_size', '64',
                       '--out', str(tmp_path / 'z')]) == 2
  assert 'not a readable PyTorch checkpoint' in capsys.readouterr().err


def test_a_checkpoint_with_nan_weights_is_refused_by_name(tmp_path, capsys):
  torch = pytest.importorskip('torch')
  from lama_jax import convert  # pylint: disable=g-import-not-at-top
  sd = random_state_dict(64, seed=4, num_classes=184, **SMALL)
  sd['fc.bias'] = np.asarray(sd['fc.bias']).copy()
  sd['fc.bias'][3] = np.nan
  path = tmp_path / 'G.pth'
  torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}, path)
  out = tmp_path / 'converted'
  assert convert.main(['--torch_checkpoint', str(path), '--image_size', '64', '--out',
                       str(out)]) == 2
  assert capsys.readouterr().err == (f'error: {path}: fc.bias holds NaN or infinite values (a '
                                     'diverged or damaged checkpoint)\n')
  assert not out.exists()
