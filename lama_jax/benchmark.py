r"""Times the compiled train step and generator sampling on synthetic batches.

  python -m lama_jax.benchmark --config configs/coco128.py [--batch_size 4 --steps 5]

Prints one JSON line: compile time (apart), median step time, images/s, XLA's FLOP count per step and
the achieved FLOP/s (with the share of the device's peak where known), peak memory, and the
generator's eval-mode sampling time per image.
"""
from collections.abc import Sequence
import json
import sys

from absl import flags
import jax
from ml_collections import config_flags

from lama_jax import cli
from lama_jax.inference import sampling
from lama_jax.training import benchmark
from lama_jax.training import config_checks

FLAGS = cli.flag_values()
config_flags.DEFINE_config_file('config', None, 'Training configuration (a configs/*.py file).',
                                flag_values=FLAGS, lock_config=False)
flags.DEFINE_integer('batch_size', None, "Global batch size (default: the config's).",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('steps', 5, 'Timed steps (after the compile and one warm-up step).',
                     lower_bound=1, upper_bound=1000, flag_values=FLAGS)
flags.DEFINE_integer('sample_batch', 8, 'Batch of the generator-sampling timing.', lower_bound=1,
                     upper_bound=sampling.MAX_BATCH, flag_values=FLAGS)
flags.mark_flag_as_required('config', flag_values=FLAGS)


def _main(fv: flags.FlagValues) -> None:
  config = fv.config
  if fv.batch_size:
    config.batch_size = fv.batch_size
  config_checks.check(config, jax.device_count())  # --batch_size too: per device, divisible
  print(json.dumps(benchmark.run(config, fv.steps, fv.sample_batch)), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  sys.exit(main())
