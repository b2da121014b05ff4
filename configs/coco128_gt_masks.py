"""The Sec. 3 mask-clarity experiment (Fig. 2): COCO-Stuff 128×128 trained on ground-truth masks.

The mask-to-image part is trained on the prepared ground-truth object masks (the layout-to-mask stage
is skipped); then `python -m lama_jax.mask_clarity --workdir RUN --data_dir D --metrics fid,scene_fid
--inception_weights F` tests it with tainted masks.
"""
from configs import coco128


def get_config():
  config = coco128.get_config()
  config.gt_masks = True
  return config
