r"""A generator block's conv1 both ways: upsample ×2 then 3×3 convolution, or at the input's size.

  python benchmarks/upsampled_conv.py [--layers 8:4:1024:512,1:32:128:64] [--reps 7]

Each layer B:H:C:D (batch, square input size before the upsampling, input and output channels) is
timed as sampling runs it, forward only: the upsampled input convolved directly, against
`sampling_forms.conv3x3_of_upsampled` with the phase kernels made beforehand (as
`generator.sampling_variables` makes them once per loaded generator). The two forms alternate,
`--reps` times each; prints medians, the ratio and the largest difference relative to the output's
scale. The defaults are the official 64×64 (batch 8 and 1) and 128×128 (batch 4 and 1) generators'
blocks.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position

from lama_jax.models.resize import upsample_nearest  # pylint: disable=wrong-import-position
from lama_jax.models.sampling_forms import (  # pylint: disable=wrong-import-position
    conv3x3_of_upsampled, upsampling_phases)

from alternating import time_alternating  # pylint: disable=wrong-import-position (benchmarks/)

DEFAULT_LAYERS = ('8:4:1024:512,8:8:512:256,8:16:256:128,8:32:128:64,'
                  '1:4:1024:512,1:8:512:256,1:16:256:128,1:32:128:64,'
                  '4:4:512:512,4:8:512:256,4:16:256:256,4:32:256:128,4:64:128:64,'
                  '1:4:512:512,1:8:512:256,1:16:256:256,1:32:256:128,1:64:128:64')


@jax.jit
def _upsample_then_convolve(x, kernel):
  return jax.lax.conv_general_dilated(upsample_nearest(x), kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--layers', default=DEFAULT_LAYERS, help='B:H:C:D,... (see above)')
  parser.add_argument('--reps', type=int, default=7, help='timed calls per form and layer')
  args = parser.parse_args()
  rs = np.random.RandomState(0)
  at_input_size = jax.jit(conv3x3_of_upsampled)
  print('layer B:H:C:D | upsample+conv ms | at input size ms | ratio | max rel. difference')
  for spec in args.layers.split(','):
    b, h, c, d = (int(v) for v in spec.split(':'))
    x = jnp.asarray(rs.randn(b, h, h, c).astype(np.float32))
    kernel = jnp.asarray((rs.randn(3, 3, c, d) / np.sqrt(9 * c)).astype(np.float32))
    phases = jax.block_until_ready(jax.jit(upsampling_phases)(kernel))
    outputs, ms = time_alternating({'upsampled': (_upsample_then_convolve, (x, kernel)),
                                    'phases': (at_input_size, (x, phases))}, args.reps)
    want = outputs['upsampled']
    difference = float(jnp.abs(outputs['phases'] - want).max() / jnp.abs(want).max())
    plain, phased = ms['upsampled'], ms['phases']
    print(f'{spec} | {plain:.2f} | {phased:.2f} | {plain / phased:.2f}x | {difference:.1e}',
          flush=True)


if __name__ == '__main__':
  main()
