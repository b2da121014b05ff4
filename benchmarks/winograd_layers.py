r"""The direct and the Winograd 3×3 convolution, layer by layer, in the train step's pattern.

  python benchmarks/winograd_layers.py [--layers 8:32:512:512,8:64:256:256] [--reps 5]

Each layer B:H:C:D (batch, square map size, input and output channels) is timed as the train step
uses a discriminator convolution: the D step's forward, input gradient and weight gradient for a real
and a fake batch, and the G step's forward and input gradient, in one jitted function per form. The
two forms alternate, `--reps` times each; prints medians and the ratio, which is what
`models/winograd.py`'s thresholds were read from (the defaults are the official 64×64 discriminator's
3×3 layers, batch 8, and its object path's 64 crops).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position

from lama_jax.models.winograd import conv3x3_winograd, winograd_pays  # pylint: disable=wrong-import-position

from alternating import time_alternating  # pylint: disable=wrong-import-position (benchmarks/)

DEFAULT_LAYERS = ('8:64:64:64,8:64:64:128,8:64:128:128,8:64:128:256,8:64:256:256,8:32:256:512,'
                  '8:32:512:512,8:16:512:1024,8:16:1024:1024,64:8:256:512,64:8:512:512')


def _direct(x, kernel):
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def _step_pattern(conv):
  """D step (real and fake: forward, input and weight gradients) and G step (forward, input)."""
  def d_loss(kernel, real, fake, probe):
    return jnp.sum(conv(real, kernel) * probe) + jnp.sum(conv(fake, kernel) * probe)

  def g_loss(fake, kernel, probe):
    return jnp.sum(conv(fake, kernel) * probe)

  def step(kernel, real, fake, probe):
    d_grads = jax.grad(d_loss, argnums=(0, 1, 2))(kernel, real, fake, probe)
    return d_grads, jax.grad(g_loss)(fake, kernel, probe)

  return jax.jit(step)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--layers', default=DEFAULT_LAYERS, help='B:H:C:D,... (see above)')
  parser.add_argument('--reps', type=int, default=5, help='timed calls per form and layer')
  args = parser.parse_args()
  rs = np.random.RandomState(0)
  print('layer B:H:C:D | direct ms | winograd ms | direct/winograd | max rel. difference | '
        'chosen in training')
  for spec in args.layers.split(','):
    b, h, c, d = (int(v) for v in spec.split(':'))
    real, fake = (jnp.asarray(rs.randn(b, h, h, c).astype(np.float32)) for _ in range(2))
    probe = jnp.asarray(rs.randn(b, h, h, d).astype(np.float32))
    kernel = jnp.asarray((rs.randn(3, 3, c, d) / np.sqrt(9 * c)).astype(np.float32))
    step_args = (kernel, real, fake, probe)
    outputs, ms = time_alternating({'direct': (_step_pattern(_direct), step_args),
                                    'winograd': (_step_pattern(conv3x3_winograd), step_args)},
                                   args.reps)
    difference = max(float(jnp.abs(a - w).max() / jnp.abs(a).max()) for a, w in
                     zip(jax.tree.leaves(outputs['direct']), jax.tree.leaves(outputs['winograd'])))
    direct, wino = ms['direct'], ms['winograd']
    print(f'{spec} | {direct:.0f} | {wino:.0f} | {direct / wino:.2f}x | {difference:.1e} | '
          f'{winograd_pays((b, h, h, c), 3, jnp.float32)}', flush=True)


if __name__ == '__main__':
  main()
