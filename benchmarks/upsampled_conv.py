r"""A generator block's conv1 both ways: upsample ×2 then 3×3 convolution, or at the input's size.

  python benchmarks/upsampled_conv.py [--layers 8:4:1024:512,1:32:128:64] [--reps 7] [--train]

Each layer B:H:C:D (batch, square input size before the upsampling, input and output channels) is
timed as sampling runs it, forward only: the upsampled input convolved directly, against
`upsampled_conv.conv3x3_of_upsampled` with the phase kernels made beforehand (as
`generator.sampling_variables` makes them once per loaded generator). With --train, as the CPU
train step runs it: the forward and the input and kernel gradients, the upsampled input convolved
directly or in Winograd form (where `winograd_pays`), against the phase form with its phase kernels
made from the kernel in the call. The two forms alternate, `--reps` times each; prints medians, the
ratio and the largest difference relative to the output's (or, with --train, each gradient's)
scale. The defaults are the official 64×64 (batch 8 and 1) and 128×128 (batch 4 and 1) generators'
blocks; with --train, those at the training batches (8 and 4).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position

from lama_jax.models.resize import upsample_nearest  # pylint: disable=wrong-import-position
from lama_jax.models.upsampled_conv import (  # pylint: disable=wrong-import-position
    conv3x3_of_upsampled, upsampling_phases)
from lama_jax.models.winograd import conv3x3_winograd, winograd_pays  # pylint: disable=wrong-import-position

from alternating import time_alternating  # pylint: disable=wrong-import-position (benchmarks/)

DEFAULT_LAYERS = ('8:4:1024:512,8:8:512:256,8:16:256:128,8:32:128:64,'
                  '1:4:1024:512,1:8:512:256,1:16:256:128,1:32:128:64,'
                  '4:4:512:512,4:8:512:256,4:16:256:256,4:32:256:128,4:64:128:64,'
                  '1:4:512:512,1:8:512:256,1:16:256:256,1:32:256:128,1:64:128:64')
TRAIN_LAYERS = ('8:4:1024:512,8:8:512:256,8:16:256:128,8:32:128:64,'
                '4:4:512:512,4:8:512:256,4:16:256:256,4:32:256:128,4:64:128:64')


def _upsample_then_convolve(x, kernel):
  up = upsample_nearest(x)
  return jax.lax.conv_general_dilated(up, kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _as_the_step_runs_it(x, kernel):
  up = upsample_nearest(x)
  if winograd_pays(up.shape, 3, up.dtype):
    return conv3x3_winograd(up, kernel)
  return _upsample_then_convolve(x, kernel)


def _phase_form(x, kernel):
  return conv3x3_of_upsampled(x, upsampling_phases(kernel))


def _gradients(form):
  """The forward and both gradients for output gradient `dy`, as one jitted call."""
  def call(x, kernel, dy):
    _, pullback = jax.vjp(form, x, kernel)
    return pullback(dy)
  return jax.jit(call)


def _difference(got, want) -> float:
  return float(jnp.abs(got - want).max() / jnp.abs(want).max())


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--layers', default=None, help='B:H:C:D,... (see above)')
  parser.add_argument('--reps', type=int, default=7, help='timed calls per form and layer')
  parser.add_argument('--train', action='store_true', help='time forward and gradients')
  args = parser.parse_args()
  rs = np.random.RandomState(0)
  layers = args.layers or (TRAIN_LAYERS if args.train else DEFAULT_LAYERS)
  if args.train:
    print('layer B:H:C:D | upsampled ms | at input size ms | ratio | max rel. difference dx, dk')
  else:
    print('layer B:H:C:D | upsample+conv ms | at input size ms | ratio | max rel. difference')
  for spec in layers.split(','):
    b, h, c, d = (int(v) for v in spec.split(':'))
    x = jnp.asarray(rs.randn(b, h, h, c).astype(np.float32))
    kernel = jnp.asarray((rs.randn(3, 3, c, d) / np.sqrt(9 * c)).astype(np.float32))
    if args.train:
      dy = jnp.asarray(rs.randn(b, 2 * h, 2 * h, d).astype(np.float32))
      forms = {'upsampled': (_gradients(_as_the_step_runs_it), (x, kernel, dy)),
               'phases': (_gradients(_phase_form), (x, kernel, dy))}
    else:
      phases = jax.block_until_ready(jax.jit(upsampling_phases)(kernel))
      forms = {'upsampled': (jax.jit(_upsample_then_convolve), (x, kernel)),
               'phases': (jax.jit(conv3x3_of_upsampled), (x, phases))}
    outputs, ms = time_alternating(forms, args.reps)
    want, got = outputs['upsampled'], outputs['phases']
    if args.train:
      difference = ', '.join(f'{_difference(g, w):.1e}' for g, w in zip(got, want))
    else:
      difference = f'{_difference(got, want):.1e}'
    plain, phased = ms['upsampled'], ms['phases']
    print(f'{spec} | {plain:.2f} | {phased:.2f} | {plain / phased:.2f}x | {difference}',
          flush=True)


if __name__ == '__main__':
  main()
