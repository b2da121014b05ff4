"""Exporting a run's generator: only what inference needs, as a generator directory or as a portable
`jax.export` artifact (see `lama_jax.inference.portable`)."""
from collections.abc import Sequence

from lama_jax.inference import generator_dir
from lama_jax.inference.generator_dir import GeneratorDirError
from lama_jax.inference import portable
from lama_jax.inference import portable_runtime

FORMATS = ('dir', 'stablehlo')


def export(workdir: str, out: str, step: int | None = None, fmt: str = 'dir',
           platforms: Sequence[str] = portable.DEFAULT_PLATFORMS) -> int:
  """Writes the generator of `workdir` (its latest checkpoint, or `step`) to `out`; returns the step.

  Args:
    workdir: a training workdir or generator directory.
    out: the new folder (must not exist, or be empty).
    step: the checkpoint step (default: the latest).
    fmt: 'dir' (a generator directory: Orbax checkpoint, needs lama_jax) or 'stablehlo' (the
      portable artifact: jax.export programs and weights, needs only JAX).
    platforms: for 'stablehlo', the platforms the programs are lowered for.

  Raises:
    GeneratorDirError: `workdir` is not a usable run (a portable artifact included: it holds no
      Flax generator to export again), or `out` exists and is not empty.
  """
  if portable_runtime.is_portable(workdir):
    raise GeneratorDirError(f'{workdir} is a portable artifact (export --format stablehlo), which '
                            'cannot be exported again; export from the training workdir or '
                            'generator directory it was made from, or copy the folder')
  if fmt == 'stablehlo':
    return portable.export_portable(workdir, out, step, platforms)
  loaded = generator_dir.load_generator_dir(workdir, step)
  generator_dir.save_generator_dir(out, loaded.generator, loaded.variables,
                                   loaded.config['max_objects'],
                                   loaded.config.get('dataset', loaded.vocabulary.dataset),
                                   loaded.vocabulary, step=loaded.step)
  return loaded.step
