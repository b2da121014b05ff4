"""Times the compiled train step and generator sampling of a config on synthetic batches.

FLOPs are the model's: 2·MACs of every convolution and matrix product in the step's jaxpr, traced
with direct convolutions (`winograd.direct_form`, so the CPU's Winograd form, which does 2.25x fewer
multiplies for the same function, counts as faster, not as less work). That count is the same on every
backend and in every dtype. XLA's own counts are reported beside it: the lowered module's
(`xla_flops_per_step`, the program as it runs on this backend, before optimisation; jax 0.11.2 on an
H200 gave none: NaN, reported as null) and the compiled module's (`compiled_flops_per_step`; on a GPU
the convolutions become cuDNN custom calls that it counts as nothing: 48.3 GFLOP for a bfloat16
128/20 step of 5,642 on an H200). On CPU, where the forms coincide, the model count is within 5% of
both on the tests' tiny config (XLA also counts elementwise work, one FLOP per element; a test
checks it) and within 1% of the lowered count at the official widths in bfloat16 (0.2% at 128/20).

The model FLOP utilisation (`mfu`) is the achieved rate over the bfloat16 dense peak of every device,
for float32 and bfloat16 runs alike (one yardstick): H100/H200 989 TFLOP/s, A100 312, TPU v4 275, v5e
197, v5p 459, v6e 918. Unknown devices (CPUs) get none.
"""
import resource
import sys
import time
from typing import Any

import jax
from jax.extend import core as jax_core
import ml_collections
import numpy as np

from lama_jax.datasets import synthetic
from lama_jax.datasets.vocabulary import Vocabulary
from lama_jax.models import winograd
from lama_jax.training import profiling
from lama_jax.training.trainer import Trainer

# (substring of jax's device_kind, bf16 dense peak FLOP/s); the first match wins.
PEAK_BF16_FLOPS = (
    ('H100 PCIe', 756e12), ('H100', 989e12), ('H200', 989e12), ('GH200', 989e12),
    ('A100', 312e12), ('TPU v4', 275e12), ('TPU v5 lite', 197e12), ('TPU v5e', 197e12),
    ('TPU v5p', 459e12), ('TPU v5', 459e12), ('TPU v6 lite', 918e12), ('TPU v6e', 918e12),
)


def peak_bf16_flops(device) -> float | None:
  """The bf16 dense peak of one device, or None where unknown."""
  kind = getattr(device, 'device_kind', '')
  return next((flops for name, flops in PEAK_BF16_FLOPS if name in kind), None)


def _peak_memory_bytes(device) -> int | None:
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use'])
  return None


def _flops(cost: Any) -> float | None:
  """The 'flops' of an XLA cost analysis, None where it has none (or NaN)."""
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', float('nan'))) if cost else float('nan')
  return flops if np.isfinite(flops) else None


def _sub_jaxprs(value):
  if isinstance(value, jax_core.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, jax_core.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def _valid_taps(in_size: int, k: int, out_size: int, stride: int, pad_lo: int, lhs_dil: int,
                rhs_dil: int) -> int:
  """Kernel taps of one spatial axis, summed over the outputs, that land on the input (not on
  padding, nor between the samples of a dilated input): the multiply-adds XLA counts too."""
  pos = (np.arange(out_size)[:, None] * stride + np.arange(k)[None, :] * rhs_dil - pad_lo)
  return int(np.sum((pos >= 0) & (pos <= (in_size - 1) * lhs_dil) & (pos % lhs_dil == 0)))


def _conv_eqn_flops(eqn) -> float:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  out = eqn.outvars[0].aval.shape
  p = eqn.params
  lhs_spec, rhs_spec, out_spec = p['dimension_numbers']  # (batch/out feature, feature, spatial...)
  macs = float(out[out_spec[0]]) * out[out_spec[1]] * rhs[rhs_spec[1]]
  for d in range(len(out_spec) - 2):
    macs *= _valid_taps(lhs[lhs_spec[2 + d]], rhs[rhs_spec[2 + d]], out[out_spec[2 + d]],
                        p['window_strides'][d], p['padding'][d][0],
                        (p['lhs_dilation'] or (1,) * len(p['padding']))[d],
                        (p['rhs_dilation'] or (1,) * len(p['padding']))[d])
  return 2.0 * macs


def _dot_eqn_flops(eqn) -> float:
  (lhs_contract, _), _ = eqn.params['dimension_numbers']
  lhs = eqn.invars[0].aval.shape
  return 2.0 * np.prod(eqn.outvars[0].aval.shape, dtype=float) * np.prod(
      [lhs[d] for d in lhs_contract], dtype=float)


def matmul_flops(jaxpr) -> float:
  """2·MACs of every matrix product (dot_general) in a (closed) jaxpr, its sub-jaxprs included."""
  return _count(jaxpr, 'dot_general', _dot_eqn_flops)


def convolution_flops(jaxpr) -> float:
  """2·MACs of every convolution in a (closed) jaxpr, its sub-jaxprs included (an analytic count,
  padding taps excluded as in XLA's cost analysis)."""
  return _count(jaxpr, 'conv_general_dilated', _conv_eqn_flops)


def _count(jaxpr, primitive: str, eqn_flops) -> float:
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == primitive:
      total += eqn_flops(eqn)
    for value in eqn.params.values():
      for sub in _sub_jaxprs(value):
        total += _count(sub, primitive, eqn_flops)
  return total


def model_flops(fn, *args) -> dict[str, float]:
  """The model's FLOPs of `fn(*args)`: its convolutions and matrix products, traced with direct
  convolutions. Traced afresh (caches cleared before and after), so neither a trace of the
  executed form is reused nor this one kept for later compiles."""
  jax.clear_caches()
  with winograd.direct_form():
    jaxpr = jax.make_jaxpr(fn)(*args)
  jax.clear_caches()
  conv, matmul = convolution_flops(jaxpr), matmul_flops(jaxpr)
  return {'flops': conv + matmul, 'conv_flops': conv, 'matmul_flops': matmul}


def _progress(message: str) -> None:
  """One line per stage on stderr: the run takes minutes, and a cut-off run's log says where."""
  print(f'benchmark: {message}', file=sys.stderr, flush=True)


def _time_steps(trainer: Trainer, state, batches, steps: int):
  """Compiles the step, runs one warm-up step, times `steps` more; returns figures and the state."""
  batch = trainer.global_batch(next(batches))
  t0 = time.perf_counter()
  lowered = trainer.step_fn.lower(state, batch, trainer.key)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  _progress(f'step compiled in {compile_s:.1f} s')
  figures = {'compile_s': compile_s, 'xla_flops': _flops(lowered.cost_analysis()),
             'compiled_flops': _flops(compiled.cost_analysis()),
             **model_flops(trainer.step_fn, state, batch, trainer.key)}
  state, metrics = compiled(state, batch, trainer.key)  # warm-up
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    batch = trainer.global_batch(next(batches))
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, trainer.key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  figures.update(step_s=float(np.median(times)), step_times_s=times, compiled=compiled)
  return figures, state


def _time_sampling(trainer: Trainer, state, config, sample_batch: int, repeats: int,
                   float32_outputs: bool = True) -> dict:
  """Sampling per image: on the device, and end to end as uint8 images (and, with
  `float32_outputs`, with the default float32 image and masks: a second sampler compile)."""
  gen = trainer.layout_generator(state, Vocabulary.numbered('synthetic', config.model.num_classes))
  layouts = next(synthetic.synthetic_batches(config.model.image_size, config.data.max_objects,
                                             config.model.num_classes, sample_batch, seed=1))
  modes = {
      # outputs left on the device (the generator's compute)
      'device': lambda seed: jax.block_until_ready(gen._dispatch(  # pylint: disable=protected-access
          layouts['boxes'], layouts['labels'], seed=seed, strict=False, image_format='uint8',
          mask_format=None, to_host=False)[0][0]),
      # what sampling and evaluation need on the host: uint8 images
      'uint8': lambda seed: gen.generate(layouts['boxes'], layouts['labels'], seed=seed,
                                         strict=False, image_format='uint8', mask_format=None),
      # the default outputs: float32 image, mask and raw mask
      'float32': lambda seed: gen.generate(layouts['boxes'], layouts['labels'], seed=seed,
                                           strict=False),
  }
  if not float32_outputs:
    del modes['float32']
  compile_s = {}
  for name, fn in modes.items():
    t0 = time.perf_counter()
    fn(0)
    compile_s[name] = time.perf_counter() - t0
    _progress(f'sampling ({name}) compiled and run once in {compile_s[name]:.1f} s')
  times = {name: [] for name in modes}
  for i in range(repeats):  # modes alternate, so load changes hit each alike
    for name, fn in modes.items():
      t0 = time.perf_counter()
      fn(i + 1)
      times[name].append(time.perf_counter() - t0)
  per_image = {name: round(float(np.median(t)) / sample_batch * 1000, 3)
               for name, t in times.items()}
  return {'sample_compile_s': round(compile_s['device'], 2),
          'sample_device_ms_per_image': per_image['device'],
          'sample_ms_per_image': per_image['uint8'],
          'sample_float32_ms_per_image': per_image.get('float32')}


def _profile_steps(trainer: Trainer, compiled, state, batches, steps: int, logdir: str):
  """`profiling.profile` of `steps` train steps (state threaded); returns the summary and state."""
  holder = {'state': state}

  def run_once():
    holder['state'], metrics = compiled(holder['state'], trainer.global_batch(next(batches)),
                                        trainer.key)
    jax.block_until_ready(metrics)
  summary = profiling.profile(run_once, compiled.as_text(), steps, logdir)
  return summary, holder['state']


def run(config: ml_collections.ConfigDict, steps: int = 5, sample_batch: int = 8,
        sample_repeats: int | None = None, profile_dir: str | None = None,
        profile_steps: int = 3, sample_float32: bool = True) -> dict:
  """Benchmarks `config` (dataset forced to synthetic); returns the figures as a dict
  (`sample_batch` 0: without the sampling figures).

  With `profile_dir`, also traces `profile_steps` more steps there and adds `profiling.aggregate`'s
  summary (op time by kind, by model code, slowest ops) as 'profile'.
  """
  config.data.dataset = 'synthetic'
  trainer = Trainer(config, steps_per_epoch=synthetic.STEPS_PER_EPOCH)
  batches = synthetic.synthetic_batches(config.model.image_size, config.data.max_objects,
                                        config.model.num_classes,
                                        config.batch_size // jax.process_count(), seed=0)
  t0 = time.perf_counter()
  state = jax.block_until_ready(trainer.init_state())
  init_s = time.perf_counter() - t0
  _progress(f'state initialised in {init_s:.1f} s')
  step, state = _time_steps(trainer, state, batches, steps)
  _progress(f"{steps} steps timed: median {step['step_s'] * 1000:.1f} ms")
  profile = None
  if profile_dir:
    profile, state = _profile_steps(trainer, step['compiled'], state, batches, profile_steps,
                                    profile_dir)
    _progress('profile traced')
  sampling = (_time_sampling(trainer, state, config, sample_batch,
                             sample_repeats or max(3, steps), sample_float32)
              if sample_batch else {})
  device = jax.devices()[0]
  peak = peak_bf16_flops(device)
  peak = peak * jax.device_count() if peak else None
  flops, step_s = step['flops'], step['step_s']
  return {
      'device': f'{device.platform}:{getattr(device, "device_kind", "")} x{jax.device_count()}',
      'image_size': config.model.image_size, 'batch_size': config.batch_size,
      'dtype': config.model.dtype, 'ch': config.model.ch, 'init_s': round(init_s, 2),
      'compile_s': round(step['compile_s'], 2),
      'step_median_s': round(step_s, 4), 'step_times_s': [round(t, 4) for t in step['step_times_s']],
      'images_per_s': round(config.batch_size / step_s, 2),
      'flops_per_step': flops, 'gflop_per_image': round(flops / config.batch_size / 1e9, 2),
      'conv_flops_per_step': step['conv_flops'], 'matmul_flops_per_step': step['matmul_flops'],
      'xla_flops_per_step': step['xla_flops'], 'compiled_flops_per_step': step['compiled_flops'],
      'achieved_tflops': round(flops / step_s / 1e12, 4),
      'peak_bf16_tflops': round(peak / 1e12, 1) if peak else None,
      'mfu': round(flops / step_s / peak, 4) if peak else None,
      'peak_device_memory_bytes': _peak_memory_bytes(device),
      'peak_host_rss_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
      'sample_batch': sample_batch, **sampling,
      **({'profile': profile} if profile else {}),
  }
