"""Exporting a run's generator: only what inference needs, as a generator directory."""
from lama_jax.inference import generator_dir


def export(workdir: str, out: str, step: int | None = None) -> int:
  """Writes the generator of `workdir` (its latest checkpoint, or `step`) to `out`; returns the step.

  Raises:
    GeneratorDirError: `workdir` is not a usable run, or `out` exists and is not empty.
  """
  loaded = generator_dir.load_generator_dir(workdir, step)
  generator_dir.save_generator_dir(out, loaded.generator, loaded.variables,
                                   loaded.config['max_objects'],
                                   loaded.config.get('dataset', loaded.vocabulary.dataset),
                                   loaded.vocabulary, step=loaded.step)
  return loaded.step
