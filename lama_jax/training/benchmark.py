"""Times the compiled train step and generator sampling of a config on synthetic batches."""
import resource
import time

import jax
import ml_collections
import numpy as np

from lama_jax.datasets import synthetic
from lama_jax.datasets.vocabulary import Vocabulary
from lama_jax.training.trainer import Trainer

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


def _time_steps(trainer: Trainer, state, batches, steps: int):
  """Compiles the step, runs one warm-up step, times `steps` more; returns figures and the state."""
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
  return {'compile_s': compile_s, 'step_s': float(np.median(times)), 'flops': flops}, state


def _time_sampling(trainer: Trainer, state, config, sample_batch: int, repeats: int):
  gen = trainer.layout_generator(state, Vocabulary.numbered('synthetic', config.model.num_classes))
  layouts = next(synthetic.synthetic_batches(config.model.image_size, config.data.max_objects,
                                             config.model.num_classes, sample_batch, seed=1))
  t0 = time.perf_counter()
  gen.generate(layouts['boxes'], layouts['labels'], strict=False)
  compile_s = time.perf_counter() - t0
  times = []
  for i in range(repeats):
    t0 = time.perf_counter()
    gen.generate(layouts['boxes'], layouts['labels'], seed=i, strict=False)
    times.append(time.perf_counter() - t0)
  return compile_s, float(np.median(times))


def run(config: ml_collections.ConfigDict, steps: int = 5, sample_batch: int = 8) -> dict:
  """Benchmarks `config` (dataset forced to synthetic); returns the figures as a dict."""
  config.data.dataset = 'synthetic'
  trainer = Trainer(config, steps_per_epoch=synthetic.STEPS_PER_EPOCH)
  batches = synthetic.synthetic_batches(config.model.image_size, config.data.max_objects,
                                        config.model.num_classes,
                                        config.batch_size // jax.process_count(), seed=0)
  step, state = _time_steps(trainer, trainer.init_state(), batches, steps)
  sample_compile_s, sample_s = _time_sampling(trainer, state, config, sample_batch, max(3, steps))
  device = jax.devices()[0]
  peak = _peak(device)
  flops, step_s = step['flops'], step['step_s']
  return {
      'device': f'{device.platform}:{getattr(device, "device_kind", "")} x{jax.device_count()}',
      'image_size': config.model.image_size, 'batch_size': config.batch_size,
      'dtype': config.model.dtype, 'ch': config.model.ch, 'compile_s': round(step['compile_s'], 2),
      'step_median_s': round(step_s, 4), 'images_per_s': round(config.batch_size / step_s, 2),
      'flops_per_step': flops, 'achieved_tflops': round(flops / step_s / 1e12, 4),
      'peak_share': round(flops / step_s / peak, 4) if peak else None,
      'peak_device_memory_bytes': _peak_memory_bytes(device),
      'peak_host_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      'sample_batch': sample_batch, 'sample_compile_s': round(sample_compile_s, 2),
      'sample_ms_per_image': round(sample_s / sample_batch * 1000, 2),
  }
