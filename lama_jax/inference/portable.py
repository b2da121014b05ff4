"""The portable generator: the eval-mode generator as `jax.export` programs, runnable without Flax.

`export_portable` writes the folder that `portable_runtime` describes (programs, weights, vocabulary,
manifest and the runtime itself as `lama_portable.py`); `load_layout_generator` gives a
`LayoutGenerator` that runs those programs, so `LayoutGenerator.load` and `sample` accept the folder.

What it is for: serving from a process that has JAX but not our code or Flax, and pinning a model
version: the computation is frozen as StableHLO with its weights (hashes in the manifest), so a later
change of our code or of Flax does not change the images.
"""
import hashlib
import os
from pathlib import Path
import shutil
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np

from lama_jax import files
from lama_jax.datasets import vocabulary as vocabulary_lib
from lama_jax.inference import generator as generator_lib
from lama_jax.inference import generator_dir
from lama_jax.inference import portable_runtime as rt
from lama_jax.inference.generator_dir import GeneratorDirError
from lama_jax.inference.layouts import LayoutError

# Lowered for all three, so one artifact serves on CPU, NVIDIA GPU and TPU (the generator has no
# platform-specific custom calls).
DEFAULT_PLATFORMS = ('cpu', 'cuda', 'tpu')


def _names(variables: dict[str, Any]) -> tuple[list[str], list[np.ndarray], Any]:
  """Flattened variables: ('params/fc/kernel', ...) names, arrays and the tree structure."""
  with_path, treedef = jax.tree_util.tree_flatten_with_path(variables)
  names = ['/'.join(str(getattr(k, 'key', k)) for k in path) for path, _ in with_path]
  return names, [np.asarray(x, np.float32) for _, x in with_path], treedef


def _programs(loaded: generator_dir.LoadedGenerator, treedef: Any, weights: Sequence[np.ndarray],
              platforms: Sequence[str]) -> dict[str, jax.export.Exported]:
  """The `forward` and `sample` programs, exported with a symbolic batch dimension."""
  g, o, z = loaded.generator, int(loaded.config['max_objects']), loaded.generator.z_dim

  def forward(weights, z_obj, boxes, labels, z_im, key_data):
    variables = jax.tree_util.tree_unflatten(treedef, weights)
    keys = jax.vmap(jax.random.wrap_key_data)(key_data)
    # The very function LayoutGenerator jits (which, on CPU, runs a batch's rows a few at a time:
    # the same numbers to float32 rounding; a symbolic batch runs them all at once).
    return generator_lib._forward(g, variables, z_obj, boxes, labels, z_im, keys)  # pylint: disable=protected-access

  def sample(weights, boxes, labels, seed, truncation):
    keys = generator_lib.row_keys(seed, boxes.shape[0])
    z_obj, z_im = generator_lib.draw_z(keys, o, z, truncation)
    key_data = jax.random.key_data(generator_lib.noise_keys(keys))
    return forward(weights, z_obj, boxes, labels, z_im, key_data)

  b, = jax.export.symbolic_shape('b')
  spec = jax.ShapeDtypeStruct
  w = [spec(x.shape, x.dtype) for x in weights]
  layout = (spec((b, o, 4), jnp.float32), spec((b, o), jnp.int32))
  export = lambda f: jax.export.export(jax.jit(f), platforms=tuple(platforms))
  return {
      'forward': export(forward)(w, spec((b, o, z), jnp.float32), *layout, spec((b, z), jnp.float32),
                                 spec((b, 2), jnp.uint32)),
      'sample': export(sample)(w, *layout, spec((), jnp.int32), spec((), jnp.float32)),
  }


def _aval(name: str, aval: Any) -> dict[str, Any]:
  shape = [d if isinstance(d, int) else str(d) for d in aval.shape]
  return {'name': name, 'shape': shape, 'dtype': str(aval.dtype)}


_OUTPUTS = ('image', 'mask', 'raw_mask')


def _manifest(loaded: generator_dir.LoadedGenerator, names: list[str], weights: list[np.ndarray],
              programs: dict[str, jax.export.Exported], source: str) -> dict[str, Any]:
  g = loaded.generator
  described = {}
  for key, exp in programs.items():
    inputs = exp.in_avals[len(weights):]
    described[key] = {
        'file': rt.SAMPLE if key == 'sample' else rt.FORWARD,
        'inputs': [{'name': 'weights', 'count': len(weights)}] + [
            _aval(n, a) for n, a in zip(rt.INPUTS[key], inputs)],
        'outputs': [_aval(n, a) for n, a in zip(_OUTPUTS, exp.out_avals)],
        'platforms': list(exp.platforms),
        'calling_convention_version': exp.calling_convention_version,
    }
  return {
      'format': rt.FORMAT, 'format_version': rt.FORMAT_VERSION,
      'model': {'image_size': g.image_size, 'max_objects': int(loaded.config['max_objects']),
                'z_dim': g.z_dim, 'num_classes': g.num_classes, 'step': loaded.step,
                'dataset': loaded.config.get('dataset', loaded.vocabulary.dataset),
                'generator': loaded.config},
      'padding': {'label': rt.PAD_LABEL, 'box': list(rt.PAD_BOX)},
      'programs': described,
      'weights': [{'name': n, 'shape': list(x.shape), 'dtype': str(x.dtype)}
                  for n, x in zip(names, weights)],
      'jax_version': jax.__version__, 'jaxlib_version': jaxlib.__version__,
      'source': os.path.abspath(source),
  }


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def export_portable(workdir: str, out: str, step: int | None = None,
                    platforms: Sequence[str] = DEFAULT_PLATFORMS) -> int:
  """Writes the portable generator of `workdir` (latest checkpoint, or `step`) to `out`.

  Returns:
    The step exported.

  Raises:
    GeneratorDirError: `workdir` is not usable, its generator has no mask network (trained on given
      masks), or `out` exists and is not empty.
  """
  out_path = Path(out).absolute()
  if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
    raise GeneratorDirError(f'{out} already exists and is not empty; choose a new --out.')
  loaded = generator_dir.load_generator_dir(workdir, step)
  if 'mask_regress' not in loaded.variables['params']:
    raise GeneratorDirError(f'{workdir}: this generator was trained on given masks and has no '
                            'layout-to-mask network; the portable artifact generates from layouts.')
  names, weights, treedef = _names(loaded.variables)
  programs = _programs(loaded, treedef, weights, platforms)
  manifest = _manifest(loaded, names, weights, programs, workdir)
  with files.atomic_dir(out_path) as tmp:
    with files.atomic_open(tmp / rt.WEIGHTS, 'wb') as f:
      np.savez(f, **dict(zip(names, weights)))
    for program in manifest['programs'].values():
      with files.atomic_open(tmp / program['file'], 'wb') as f:
        f.write(programs['sample' if program['file'] == rt.SAMPLE else 'forward'].serialize())
    vocabulary_lib.save_vocabulary(loaded.vocabulary, str(tmp / rt.VOCABULARY))
    shutil.copyfile(rt.__file__, tmp / rt.RUNTIME)
    manifest['sha256'] = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
    files.write_json(tmp / rt.MANIFEST, manifest)
  return loaded.step


class PortableLayoutGenerator(generator_lib.LayoutGenerator):
  """A `LayoutGenerator` whose forward pass is the artifact's `forward` program (no Flax module).

  `generator` is None and `variables` empty; everything else (generate, layouts, sample_z) is the
  same. Given masks (the Sec. 3 experiment) are not supported.
  """

  def __init__(self, runtime: rt.PortableGenerator, vocabulary: vocabulary_lib.Vocabulary):
    super().__init__(None, {}, vocabulary, runtime.max_objects, runtime.dataset, runtime.step)
    self.runtime = runtime

  @property
  def image_size(self) -> int:
    return self.runtime.image_size

  @property
  def num_classes(self) -> int:
    return self.runtime.num_classes

  @property
  def z_dim(self) -> int:
    return self.runtime.z_dim

  def _start(self, formats, seed, first_row, boxes, labels, z_obj, z_im, masks):
    if masks is not None:
      raise LayoutError(f'{self.runtime.path}: the portable generator generates from layouts only '
                        '(no given masks)')
    keys = generator_lib.row_keys(seed, boxes.shape[0], first_row)
    z_obj, z_im = generator_lib.fill_z(keys, boxes.shape[1], self.z_dim, formats.truncation,
                                       z_obj, z_im)
    outputs = self.runtime._forward(self.runtime.weights, z_obj, boxes, labels, z_im,  # pylint: disable=protected-access
                                    jax.random.key_data(generator_lib.noise_keys(keys)))
    return generator_lib.format_outputs(formats, *outputs)


def load_layout_generator(path: str, step: int | None = None) -> PortableLayoutGenerator:
  """Loads a portable artifact as a `LayoutGenerator`.

  Raises:
    GeneratorDirError: the artifact is unreadable, or `step` is not the one it holds.
  """
  try:
    runtime = rt.load(path)
    vocab = vocabulary_lib.Vocabulary.from_json(runtime.vocabulary)
  except (rt.PortableError, ValueError) as e:
    raise GeneratorDirError(str(e)) from None
  if step is not None and step != runtime.step:
    raise GeneratorDirError(f'{path} holds step {runtime.step}, not {step} (a portable artifact '
                            'holds one step).')
  return PortableLayoutGenerator(runtime, vocab)
