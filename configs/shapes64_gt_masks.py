"""The Sec. 3 mask-clarity experiment on the shapes set: shapes64 trained on ground-truth masks.

The mask-to-image part is trained on the prepared ground-truth object masks (the layout-to-mask stage
is skipped); then `python -m lama_jax.mask_clarity --workdir RUN --data_dir D` tests it with tainted
masks (metric: alignment).
"""
from configs import shapes64


def get_config():
  config = shapes64.get_config()
  config.gt_masks = True
  return config
