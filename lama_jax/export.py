r"""Export a training run's generator for inference.

  python -m lama_jax.export --workdir runs/coco128 --out exported/coco128 [--step N]

Writes a generator directory (generator.json, vocabulary.json, checkpoints/STEP/ with only the
generator's parameters, BatchNorm statistics and spectral-norm state) that `LayoutGenerator.load`
and `python -m lama_jax.sample` read. The step is the run's latest unless --step is given.
"""
from collections.abc import Sequence
import sys

from absl import flags

from lama_jax import cli
from lama_jax.inference import export

FLAGS = cli.flag_values()
flags.DEFINE_string('workdir', None, 'Training workdir (or any generator directory).',
                    flag_values=FLAGS, required=True)
flags.DEFINE_string('out', None, 'New generator directory to write.', flag_values=FLAGS,
                    required=True)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).', flag_values=FLAGS)


def _main(fv: flags.FlagValues) -> None:
  step = export.export(fv.workdir, fv.out, fv.step)
  print(f'exported step {step} of {fv.workdir} to {fv.out}')


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  sys.exit(main())
