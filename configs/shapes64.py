"""The CPU demo: the shapes set at 64×64, small widths and a demo-tuned recipe (≤ 10 min on 2 cores)."""
from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'shapes'
  config.image_size = 64
  config.max_objects = 8
  config.num_classes = 14
  config.shapes_num_train = 3000
  config.shapes_num_val = 200
  config.ch = 16
  config.d_ch = 8
  config.mask_hidden = 32
  config.batch_size = 4
  config.num_train_steps = 3000
  config.time_budget_minutes = 8.5  # the demo stops (saving, sampling, scoring) by then
  config.d_only_iters = 0
  config.log_every_steps = 10
  config.g_lr = 4e-4  # demo: faster ReZero α growth
  config.d_lr = 4e-4
  config.checkpoint_every_steps = 200
  config.sample_every_steps = 200
  config.num_sample_images = 16
  config.alignment_layouts = 200
  return config
