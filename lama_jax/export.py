r"""Export a training run's generator for inference.

  python -m lama_jax.export --workdir runs/coco128 --out exported/coco128 [--step N]

Writes a generator directory (generator.json, vocabulary.json, checkpoints/STEP/ with only the
generator's parameters, BatchNorm statistics and spectral-norm state) that `LayoutGenerator.load`
and `python -m lama_jax.sample` read. The step is the run's latest unless --step is given.
"""
import argparse
import sys
from typing import Sequence


def export(workdir: str, out: str, step: int | None = None) -> int:
  """Writes the generator of `workdir` to `out`; returns the exported step."""
  from lama_jax import generator_io  # pylint: disable=g-import-not-at-top
  loaded = generator_io.load_generator_dir(workdir, step)
  generator_io.save_generator_dir(out, loaded.generator, loaded.variables,
                                  loaded.config['max_objects'],
                                  loaded.config.get('dataset', loaded.vocabulary.dataset),
                                  loaded.vocabulary, step=loaded.step)
  return loaded.step


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m lama_jax.export',
                              description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True, help='training workdir (or any generator directory)')
  p.add_argument('--out', required=True, help='new generator directory to write')
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: the latest)')
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  from lama_jax.generator_io import GeneratorDirError  # pylint: disable=g-import-not-at-top
  try:
    step = export(args.workdir, args.out, args.step)
  except GeneratorDirError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'exported step {step} of {args.workdir} to {args.out}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
