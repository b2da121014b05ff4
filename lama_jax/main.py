r"""Trains LAMA: `python -m lama_jax.main --config configs/coco128.py --workdir runs/coco128`.

Override any config field on the command line (`--config.batch_size=8`). Several processes (one per
host) join with --coordinator_address/--num_processes/--process_id, or through the environment
variables `jax.distributed.initialize()` reads (JAX_COORDINATOR_ADDRESS, SLURM, TPU pods, ...).
"""
import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
import tensorflow as tf

from lama_jax.training import loop as train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and samples.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-process runs).')
flags.DEFINE_string('coordinator_bind_address', None, 'Address the coordinator binds to.')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-process runs).')
flags.DEFINE_integer('process_id', None, 'Index of this process (multi-process runs).')
flags.mark_flags_as_required(['config', 'workdir'])


def _init_distributed() -> None:
  if FLAGS.coordinator_address or FLAGS.num_processes:
    jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address,
                               num_processes=FLAGS.num_processes, process_id=FLAGS.process_id,
                               coordinator_bind_address=FLAGS.coordinator_bind_address)
  elif any(v in os.environ for v in ('JAX_COORDINATOR_ADDRESS', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE')):
    jax.distributed.initialize()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError('Too many command-line arguments.')
  tf.config.set_visible_devices([], 'GPU')  # TensorFlow must not take the accelerators
  _init_distributed()
  logging.info('JAX process %d / %d, %d local / %d devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
