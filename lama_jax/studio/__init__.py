"""The layout studio: draw boxes in the browser and watch LAMA build the image.

  python -m lama_jax.studio --model runs/demo

`session.py` holds a page's layout and its objects' noise draws, `engine.py` the loaded generator
(z draws, generation, pictures), `canvas.py` the canvas's boxes, `app.py` the page's handlers,
`page.py` its layout and serving, `downloads.py` what Save writes.

Importing this package picks XLA:CPU's YNNPACK convolutions for the process (unless the user chose
the flag): they make batch-1 sampling faster than XLA's Eigen convolutions on this project's 2-core
CPU (official sizes, alternating runs under a load of ~10: 64×64 285 vs 339 ms, 128×128 537 vs
744 ms), while `lama_jax` turns them off for training, whose kernel gradients they slow down. It only
takes effect if JAX has not created its backends yet.
"""
import os
import re

import lama_jax

_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
_YNN_INFERENCE = 'individual_convolution'


def _prefer_ynn_convolutions() -> None:
  if getattr(lama_jax, 'YNN_FLAG_FROM_USER', True):
    return
  flags = os.environ.get('XLA_FLAGS', '')
  os.environ['XLA_FLAGS'] = re.sub(rf'(^|\s){_YNN_FLAG}=(?=\s|$)',
                                   rf'\g<1>{_YNN_FLAG}={_YNN_INFERENCE}', flags)


_prefer_ynn_convolutions()
