r"""Times the compiled train step and generator sampling on synthetic batches.

  python -m lama_jax.benchmark --config configs/coco128.py [--batch_size 4 --steps 5]

Prints one JSON line: compile time (apart), median step time, images/s, XLA's FLOP count per step and
the achieved FLOP/s (with the share of the device's peak where known), peak memory, and the
generator's eval-mode sampling time per image.
"""
import json
import resource
import time

from absl import app
from absl import flags
import jax
from ml_collections import config_flags
import numpy as np

from lama_jax.training import loop as train

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training configuration.', lock_config=False)
flags.DEFINE_integer('batch_size', None, 'Global batch size (default: the config\'s).')
flags.DEFINE_integer('steps', 5, 'Timed steps (after the compile and one warm-up step).')
flags.DEFINE_integer('sample_batch', 8, 'Batch of the generator-sampling timing.')

PEAK_FLOPS = {'H100': 989e12, 'H200': 989e12, 'A100': 312e12, 'TPU v4': 275e12, 'TPU v5': 197e12}


def _peak(device) -> float | None:
  kind = getattr(device, 'device_kind', '')
  for name, flops in PEAK_FLOPS.items():
    if name in kind:
      return flops
  return None


def _peak_memory_bytes(device) -> int | None:
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use'])
  return None


def run(config, steps: int = 5, sample_batch: int = 8) -> dict:
  """Benchmarks `config` (dataset forced to synthetic); returns the figures as a dict."""
  config.dataset = 'synthetic'
  trainer = train.Trainer(config, steps_per_epoch=1000)
  state = trainer.init_state()
  batches = train.synthetic_batches(config, config.batch_size // jax.process_count(), seed=0)
  batch = trainer.global_batch(next(batches))
  t0 = time.perf_counter()
  compiled = trainer.step_fn.lower(state, batch, trainer.key).compile()
  compile_s = time.perf_counter() - t0
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  state, metrics = compiled(state, batch, trainer.key)  # warm-up
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    batch = trainer.global_batch(next(batches))
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, trainer.key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  step_s = float(np.median(times))

  layouts = next(train.synthetic_batches(config, sample_batch, seed=1))
  t0 = time.perf_counter()
  jax.block_until_ready(trainer.sample(state, layouts['boxes'], layouts['labels']))
  sample_compile_s = time.perf_counter() - t0
  sample_times = []
  for i in range(max(3, steps)):
    t0 = time.perf_counter()
    jax.block_until_ready(trainer.sample(state, layouts['boxes'], layouts['labels'], seed=i))
    sample_times.append(time.perf_counter() - t0)
  sample_s = float(np.median(sample_times))

  device = jax.devices()[0]
  peak = _peak(device)
  out = {
      'device': f'{device.platform}:{getattr(device, "device_kind", "")} x{jax.device_count()}',
      'image_size': config.image_size, 'batch_size': config.batch_size, 'dtype': config.dtype,
      'ch': config.ch, 'compile_s': round(compile_s, 2), 'step_median_s': round(step_s, 4),
      'images_per_s': round(config.batch_size / step_s, 2),
      'flops_per_step': flops, 'achieved_tflops': round(flops / step_s / 1e12, 4),
      'peak_share': round(flops / step_s / peak, 4) if peak else None,
      'peak_device_memory_bytes': _peak_memory_bytes(device),
      'peak_host_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      'sample_batch': sample_batch, 'sample_compile_s': round(sample_compile_s, 2),
      'sample_ms_per_image': round(sample_s / sample_batch * 1000, 2),
  }
  return out


def main(argv):
  del argv
  config = FLAGS.config
  if FLAGS.batch_size:
    config.batch_size = FLAGS.batch_size
  print(json.dumps(run(config, FLAGS.steps, FLAGS.sample_batch)), flush=True)


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
