"""The CPU demo: the shapes set at 64×64, small widths and a demo-tuned recipe (≤ 10 min on 2 cores)."""
from configs import default


def get_config():
  config = default.get_config()
  config.data.dataset = 'shapes'
  config.data.max_objects = 8
  config.data.shapes.num_train = 3000
  config.data.shapes.num_val = 200
  config.model.image_size = 64
  config.model.num_classes = 14
  config.model.ch = 16
  config.model.d_ch = 8
  config.model.mask_hidden = 32
  config.batch_size = 4
  config.num_train_steps = 3000
  config.time_budget_minutes = 8.5  # the demo stops (saving, sampling, scoring) by then
  config.schedule.d_only_iters = 0
  config.optim.g_lr = 4e-4  # demo: faster ReZero α growth
  config.optim.d_lr = 4e-4
  config.log.every_steps = 10
  config.log.checkpoint_every_steps = 200
  config.log.sample_every_steps = 200
  config.log.num_sample_images = 16
  config.evals.metrics = ('alignment',)
  config.evals.num_layouts = 200
  return config
