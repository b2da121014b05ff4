r"""Trains LAMA: `python -m lama_jax.main --config configs/coco128.py --workdir runs/coco128`.

Override any config field on the command line (`--config.batch_size=8`,
`--config.model.dtype=bfloat16`, `--config.optim.g_lr=2e-4`). Several processes (one per host) join
with --coordinator_address/--num_processes/--process_id, or through the environment variables
`jax.distributed.initialize()` reads (JAX_COORDINATOR_ADDRESS, SLURM, TPU pods, ...).

The config is checked (every field known, typed and in range; the batch divisible by the devices)
before the workdir is created. A killed run resumes from its latest checkpoint (from the newest
intact one if the latest is damaged, which is moved to WORKDIR/damaged_checkpoints/); SIGTERM or
Ctrl-C during training saves a checkpoint and stops with exit code 0 (a second Ctrl-C aborts at
once; during the set-up, before the first step, there is nothing to save and both abort at once;
a Ctrl-C while the modules import takes effect when they have, seconds later).
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence  # pylint: disable=g-import-not-at-top,wrong-import-position
import os  # pylint: disable=g-import-not-at-top,wrong-import-position

from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import tensorflow as tf

from lama_jax import cli
from lama_jax import files
from lama_jax.training import config_checks
from lama_jax.training import loop

# Environment variables that mean a multi-process launch `jax.distributed.initialize()` understands.
_CLUSTER_ENV = ('JAX_COORDINATOR_ADDRESS', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE')

FLAGS = cli.flag_values()
config_flags.DEFINE_config_file('config', None, 'Training configuration (a configs/*.py file).',
                                flag_values=FLAGS, lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and samples.',
                    flag_values=FLAGS)
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-process runs).',
                    flag_values=FLAGS)
flags.DEFINE_string('coordinator_bind_address', None, 'Address the coordinator binds to.',
                    flag_values=FLAGS)
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).',
                     flag_values=FLAGS)
flags.DEFINE_integer('process_id', None, 'Index of this process (multi-process runs).',
                     flag_values=FLAGS)
flags.DEFINE_enum('log_level', 'warning', ['debug', 'info', 'warning', 'error'],
                  'What absl logging shows on the console (progress lines always show).',
                  flag_values=FLAGS)
flags.mark_flags_as_required(['config', 'workdir'], flag_values=FLAGS)


def _init_distributed(fv: flags.FlagValues) -> None:
  if fv.coordinator_address or fv.num_processes:
    jax.distributed.initialize(coordinator_address=fv.coordinator_address,
                               num_processes=fv.num_processes, process_id=fv.process_id,
                               coordinator_bind_address=fv.coordinator_bind_address)
  elif any(v in os.environ for v in _CLUSTER_ENV):
    jax.distributed.initialize()


def _main(fv: flags.FlagValues) -> None:
  logging.set_verbosity(fv.log_level)
  tf.config.set_visible_devices([], 'GPU')  # TensorFlow must not take the accelerators
  _init_distributed(fv)
  logging.info('JAX process %d / %d, %d local / %d devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  # Everything is checked before the workdir is created: a bad field stops here, in one line.
  config_checks.check(fv.config, jax.device_count())
  files.check_folder_target(fv.workdir, '--workdir')
  loop.train_and_evaluate(fv.config, fv.workdir)


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
