r"""Export a training run's generator for inference.

  python -m lama_jax.export --workdir runs/coco128 --out exported/coco128 [--step N]
  python -m lama_jax.export --workdir runs/demo --out exported/demo_hlo --format stablehlo

--format dir (default) writes a generator directory (generator.json, vocabulary.json,
checkpoints/STEP/ with only the generator's parameters, BatchNorm statistics and spectral-norm state)
that `LayoutGenerator.load` and `python -m lama_jax.sample` read.

--format stablehlo writes a portable artifact: the eval-mode generator as serialised `jax.export`
programs (StableHLO; any batch size, the model's maximum object count), its weights (weights.npz),
vocabulary.json, manifest.json (input and output shapes and dtypes, JAX version, file hashes) and
lama_portable.py, a loader that needs only JAX and NumPy. Serve it from a process without our code or
Flax, or keep it to pin a model version; `LayoutGenerator.load` and `sample` read it too.

The step is the run's latest unless --step is given.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence

from absl import flags

from lama_jax import cli
from lama_jax import files
from lama_jax.errors import LamaError
from lama_jax.inference import export
from lama_jax.inference import portable

FLAGS = cli.flag_values()
flags.DEFINE_string('workdir', None, 'Training workdir (or any generator directory).',
                    flag_values=FLAGS, required=True)
flags.DEFINE_string('out', None, 'New folder to write (must not exist, or be empty).',
                    flag_values=FLAGS, required=True)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).', lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_enum('format', 'dir', export.FORMATS, "'dir': a generator directory (Orbax "
                  "checkpoint); 'stablehlo': a portable jax.export artifact that runs without "
                  'lama_jax or Flax.', flag_values=FLAGS)
flags.DEFINE_list('platforms', list(portable.DEFAULT_PLATFORMS), 'With --format stablehlo: '
                  'the platforms the programs are lowered for (cpu, cuda, rocm, tpu).',
                  flag_values=FLAGS)

_PLATFORMS = ('cpu', 'cuda', 'rocm', 'tpu')


def _main(fv: flags.FlagValues) -> None:
  bad = [p for p in fv.platforms if p not in _PLATFORMS]
  if bad or not fv.platforms:
    raise LamaError(f'--platforms {",".join(fv.platforms)}: choose from {", ".join(_PLATFORMS)}')
  if fv['platforms'].present and fv.format != 'stablehlo':
    raise LamaError(f'--platforms applies to --format stablehlo only (--format is {fv.format}: a '
                    'generator directory runs wherever JAX does)')
  files.check_folder_target(fv.out, '--out', empty=True)
  platforms = list(dict.fromkeys(fv.platforms))  # 'cpu,cpu' lowers and records cpu once
  step = export.export(fv.workdir, fv.out, fv.step, fv.format, platforms)
  print(f'exported step {step} of {fv.workdir} to {fv.out} ({fv.format})')


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
