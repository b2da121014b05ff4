"""export --format stablehlo: the portable artifact, loaded by LayoutGenerator and by a bare process."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from lama_jax import export
from lama_jax.datasets.vocabulary import load_vocabulary
from lama_jax.inference import generator_dir
from lama_jax.inference import portable_runtime
from lama_jax.inference.generator import LayoutGenerator
from lama_jax.inference.generator_dir import GeneratorDirError
from lama_jax.inference.layouts import LayoutError
from tests.test_inference import MAX_OBJECTS, _tiny_variables

BOXES = np.array([[[0, 0, 1, 0.5], [0, 0.5, 1, 0.5], [0.2, 0.3, 0.4, 0.4]],
                  [[0, 0, 1, 0.6], [0.1, 0.1, 0.3, 0.3], [0, 0, 1, 1]]], np.float32)
LABELS = np.array([[9, 11, 1], [10, 8, 0]], np.int32)


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  g, variables = _tiny_variables()
  path = str(tmp_path_factory.mktemp('gen') / 'gen')
  generator_dir.save_generator_dir(path, g, variables, MAX_OBJECTS, 'shapes',
                                   load_vocabulary('shapes'), step=9)
  return path


@pytest.fixture(scope='module')
def artifact(model, tmp_path_factory):
  out = tmp_path_factory.mktemp('export') / 'hlo'
  assert export.main(['--workdir', model, '--out', str(out), '--format', 'stablehlo']) == 0
  return out


@pytest.fixture(scope='module')
def runtime(artifact):
  return portable_runtime.load(artifact)


def test_artifact_files_and_manifest(artifact):
  assert sorted(os.listdir(artifact)) == sorted(
      ['manifest.json', 'vocabulary.json', 'weights.npz', 'sample.jax', 'forward.jax',
       'lama_portable.py'])
  manifest = json.loads((artifact / 'manifest.json').read_text())
  assert manifest['format'] == 'lama_jax.portable' and manifest['jax_version']
  assert manifest['model'] | {'generator': None} == {
      'image_size': 64, 'max_objects': MAX_OBJECTS, 'z_dim': 128, 'num_classes': 14, 'step': 9,
      'dataset': 'shapes', 'generator': None}
  sample = manifest['programs']['sample']
  assert sample['inputs'][1] == {'name': 'boxes', 'shape': ['b', MAX_OBJECTS, 4],
                                 'dtype': 'float32'}
  assert sample['outputs'][0] == {'name': 'image', 'shape': ['b', 64, 64, 3], 'dtype': 'float32'}
  assert sample['platforms'] == ['cpu', 'cuda', 'tpu']
  assert set(manifest['sha256']) == set(os.listdir(artifact)) - {'manifest.json'}


def test_a_platform_named_twice_is_lowered_once(model, tmp_path):
  out = tmp_path / 'hlo'
  assert export.main(['--workdir', model, '--out', str(out), '--format', 'stablehlo',
                      '--platforms', 'cpu,cpu']) == 0
  manifest = json.loads((out / 'manifest.json').read_text())
  assert manifest['programs']['sample']['platforms'] == ['cpu']


def test_layout_generator_loads_the_artifact(model, artifact):
  ref, hlo = LayoutGenerator.load(model), LayoutGenerator.load(str(artifact))
  assert (hlo.image_size, hlo.max_objects, hlo.step, hlo.dataset) == (64, MAX_OBJECTS, 9, 'shapes')
  assert hlo.vocabulary == ref.vocabulary
  for a, b in zip(ref.generate(BOXES, LABELS, seed=5), hlo.generate(BOXES, LABELS, seed=5)):
    np.testing.assert_allclose(a, b, atol=1e-6)
  with pytest.raises(GeneratorDirError, match='holds step 9, not 3'):
    LayoutGenerator.load(str(artifact), step=3)
  with pytest.raises(LayoutError, match='layouts only'):
    hlo.generate(BOXES, LABELS, masks=np.zeros((2, 3, 64, 64)))


_BARE = r'''
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import lama_portable
gen = lama_portable.load(sys.argv[1])
ref = np.load(sys.argv[2])
out = gen.generate(ref['boxes'], ref['labels'], seed=5)
for k, v in zip(('image', 'mask', 'raw_mask'), out):
  np.testing.assert_allclose(v, ref[k], atol=1e-6)
one = gen.generate(ref['boxes'][:1], ref['labels'][:1], seed=5)  # another batch size
np.testing.assert_allclose(one.image, ref['image'][:1], atol=1e-6)
given = gen.forward(ref['z_obj'], ref['boxes'], ref['labels'], ref['z_im'], ref['keys'])
np.testing.assert_allclose(given.image, ref['image'], atol=1e-6)
loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('flax', 'lama_jax', 'orbax'))
assert not loaded, loaded
print('ok', gen.id_to_name[1])
'''


def test_a_bare_process_runs_the_artifact(model, artifact, tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from lama_jax.inference import generator as generator_lib  # pylint: disable=g-import-not-at-top
  ref = LayoutGenerator.load(model)
  out = ref.generate(BOXES, LABELS, seed=5)
  z_obj, z_im = ref.sample_z(2, seed=5)
  keys = jax.random.key_data(generator_lib.noise_keys(generator_lib.row_keys(5, 2)))
  np.savez(tmp_path / 'ref.npz', boxes=BOXES, labels=LABELS, image=out.image, mask=out.mask,
           raw_mask=out.raw_mask, z_obj=z_obj, z_im=z_im, keys=np.asarray(keys))
  # Without the CPU flag lama_jax sets: the runtime must set it itself to match.
  flags = ' '.join(f for f in os.environ.get('XLA_FLAGS', '').split() if 'ynn' not in f)
  proc = subprocess.run([sys.executable, '-c', _BARE, str(artifact), str(tmp_path / 'ref.npz')],
                        cwd=tmp_path, capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH='', XLA_FLAGS=flags))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.split() == ['ok', 'disk']


@pytest.mark.parametrize('boxes, labels, expected', [
    (BOXES, np.where(LABELS == 1, 2**32 + 1, LABELS.astype(np.int64)),  # was cast to 1
     'labels must lie in [0, 14)'),
    (BOXES, LABELS + 0.5, 'labels must be whole numbers'),  # was cut to LABELS
    (np.where(LABELS[..., None] == 1, np.nan, BOXES), LABELS,  # drew NaN images
     'boxes of real objects (label > 0) must be finite'),
    (np.where(LABELS[..., None] == 1, [0.1, 0.1, 0.0, 0.5], BOXES), LABELS,  # drew NaN images
     'boxes of real objects (label > 0) must have a positive width and height'),
    (np.where(LABELS[..., None] == 1, [0.1, 0.1, 0.5, 1e-40], BOXES), LABELS,  # so did this
     'boxes of real objects (label > 0) must have a positive width and height (at least 1.18e-38'),
    (BOXES[:0], LABELS[:0], 'no layouts (B = 0)'),  # was jax.export's ValueError
    ([[[0, 0, 1, 1], [0, 0, 1]]], [[1, 2]], 'boxes must be a regular array'),
    (BOXES, LABELS.astype(str), 'labels must be an array of numbers, got dtype <U'),
])
def test_runtime_refuses_bad_layouts(runtime, boxes, labels, expected):
  with pytest.raises(portable_runtime.PortableError) as e:
    runtime.generate(boxes, labels)
  assert expected in str(e.value), str(e.value)
  assert np.isfinite(runtime.generate(BOXES[:1, :2], LABELS[:1, :2].tolist()).image).all()


@pytest.mark.parametrize('kwargs, expected', [
    (dict(seed=1.5), 'seed must be an integer, not 1.5'),  # was cut to 1
    (dict(seed=None), 'seed must be an integer, not None'),  # was int()'s TypeError
    (dict(truncation=0), 'truncation must be a positive number or None, not 0'),  # redrew all z
    (dict(truncation=float('nan')), 'not nan'),  # redrew none
])
def test_runtime_refuses_bad_sampling_arguments(runtime, kwargs, expected):
  with pytest.raises(portable_runtime.PortableError) as e:
    runtime.generate(BOXES, LABELS, **kwargs)
  assert expected in str(e.value), str(e.value)


def test_runtime_forward_names_a_wrong_shape(runtime):
  z_obj, z_im = np.zeros((2, MAX_OBJECTS, 128)), np.zeros((2, 128))
  keys = np.zeros((2, 2), np.uint32)
  for args, expected in (((z_obj[:, :3], z_im, keys), 'z_obj must have shape [2, 4, 128], got'),
                         ((z_obj, z_im[:1], keys), 'z_im must have shape [2, 128], got [1, 128]'),
                         ((z_obj, z_im, keys[:, :1]), 'noise_keys must have shape [2, 2]'),
                         ((z_obj * np.nan, z_im, keys), 'z_obj holds NaN')):
    with pytest.raises(portable_runtime.PortableError) as e:
      runtime.forward(args[0], BOXES, LABELS, *args[1:])
    assert expected in str(e.value), str(e.value)


def test_runtime_refuses_what_is_not_an_artifact(model, tmp_path):
  assert not portable_runtime.is_portable(model)
  with pytest.raises(portable_runtime.PortableError, match='not a portable generator'):
    portable_runtime.load(model)
  (tmp_path / 'manifest.json').write_text(json.dumps({'format': 'lama_jax.portable',
                                                      'format_version': 99}))
  with pytest.raises(portable_runtime.PortableError, match='format version 99'):
    portable_runtime.load(tmp_path)


def test_a_cut_short_manifest_is_named(artifact, tmp_path):
  """Not "no generator.json: not a generator directory", as if the folder were something else."""
  damaged = tmp_path / 'damaged'
  shutil.copytree(artifact, damaged)
  (damaged / 'manifest.json').write_text('{"format": "lama_jax.por')
  with pytest.raises(GeneratorDirError, match=re.escape(
      f'{damaged}/manifest.json: cannot read it as JSON')):
    LayoutGenerator.load(str(damaged))


def _edit_json(path, edit):
  data = json.loads(path.read_text())
  edit(data)
  path.write_text(json.dumps(data))


def _cut_weight(path):
  with np.load(path) as npz:
    weights = {k: npz[k] for k in npz.files}
  weights['params/fc/kernel'] = weights['params/fc/kernel'][:, :1]
  np.savez(path, **weights)


@pytest.mark.parametrize('damage, expected', [
    (lambda d: _edit_json(d / 'manifest.json', lambda m: m.pop('model')),  # was a KeyError
     "manifest.json: not a complete manifest (KeyError: 'model')"),
    (lambda d: _edit_json(d / 'manifest.json', lambda m: m.update(weights=5)),  # a TypeError
     'manifest.json: not a complete manifest (TypeError'),
    (lambda d: _edit_json(d / 'vocabulary.json', lambda v: v.update(id_to_name=['a'])),
     'vocabulary.json: not a vocabulary'),  # was an AttributeError
    (lambda d: (d / 'weights.npz').write_bytes((d / 'weights.npz').read_bytes()[:1000]),
     'weights.npz: not an .npz archive (cut short or damaged?)'),  # was zipfile's BadZipFile
    (lambda d: (d / 'weights.npz').write_bytes(b''),
     'weights.npz: not an .npz archive'),  # was an EOFError
    (lambda d: (d / 'weights.npz').write_bytes(b'\x80garbage' * 100),  # suggested allow_pickle
     'weights.npz: not an .npz archive'),
    # Loaded, then failed in the first call with JAX's "Shape mismatch for args[0][27]".
    (lambda d: _cut_weight(d / 'weights.npz'),
     'weights.npz: params/fc/kernel has shape [128, 1] but'),
    (lambda d: shutil.copyfile(d / 'sample.jax', d / 'forward.jax'),
     'forward.jax: a program of'),
    (lambda d: shutil.copyfile(d / 'forward.jax', d / 'sample.jax'),
     'sample.jax: a program of'),
])
def test_a_damaged_artifact_file_is_named_when_loaded(artifact, tmp_path, damage, expected):
  """Each file of the artifact changed: one error naming it, from the runtime and from
  LayoutGenerator.load (sample, evaluate, synthesize, the studio)."""
  damaged = tmp_path / 'damaged'
  shutil.copytree(artifact, damaged)
  damage(damaged)
  with pytest.raises(portable_runtime.PortableError, match=re.escape(f'{damaged}/{expected}')):
    portable_runtime.load(damaged)
  with pytest.raises(GeneratorDirError, match=re.escape(f'{damaged}/{expected}')):
    LayoutGenerator.load(str(damaged))


@pytest.mark.parametrize('args, expected', [
    (['--format', 'onnx'], '--format=onnx: value should be one of'),
    (['--format', 'stablehlo', '--platforms', 'cpu,gpu'], '--platforms cpu,gpu: choose from'),
    (['--platforms', 'tpu'], '--platforms applies to --format stablehlo only (--format is dir'),
])
def test_export_refuses_bad_flags(model, tmp_path, capsys, args, expected):
  assert export.main(['--workdir', model, '--out', str(tmp_path / 'o'), *args]) == 2
  assert expected in capsys.readouterr().err
  assert not (tmp_path / 'o').exists()


def test_export_refuses_a_used_folder(model, artifact, capsys):
  before = sorted(os.listdir(artifact))
  assert export.main(['--workdir', model, '--out', str(artifact), '--format', 'stablehlo']) == 2
  assert 'not empty' in capsys.readouterr().err
  assert sorted(os.listdir(artifact)) == before


@pytest.mark.parametrize('fmt', ['dir', 'stablehlo'])
def test_export_names_an_artifact_given_as_workdir(artifact, tmp_path, capsys, fmt):
  # It was 'has no generator.json: not a generator directory or training workdir'.
  assert export.main(['--workdir', str(artifact), '--out', str(tmp_path / 'o'), '--format',
                      fmt]) == 2
  err = capsys.readouterr().err
  assert err == (f'error: {artifact} is a portable artifact (export --format stablehlo), which '
                 'cannot be exported again; export from the training workdir or generator '
                 'directory it was made from, or copy the folder\n'), err
  assert not (tmp_path / 'o').exists()


def test_synthesize_runs_from_the_artifact(model, artifact, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from lama_jax import synthesize  # pylint: disable=g-import-not-at-top
  layouts = tmp_path / 'layouts.json'
  layouts.write_text(json.dumps({'name': 'a', 'objects': [
      {'category': 'sky', 'bbox': [0, 0, 1, 0.5]}, {'category': 'disk', 'bbox': [0.2, 0.3, .4, .4]}]}))
  for name, source in (('dir', model), ('hlo', str(artifact))):
    assert synthesize.main(['--model', source, '--layouts', str(layouts), '--out',
                            str(tmp_path / name), '--num_images', '2', '--batch_size', '2']) == 0
  for n in (1, 2):
    a, b = (np.asarray(Image.open(tmp_path / k / 'images' / f'{n:012d}.png'), np.int16)
            for k in ('dir', 'hlo'))
    assert np.abs(a - b).max() <= 1  # the same numbers up to float rounding at a level boundary
