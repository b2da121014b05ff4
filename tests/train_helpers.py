"""A tiny config shared by the training tests (ch=4, batch 2, synthetic data)."""
from configs import default


def tiny_config(**overrides):
  config = default.get_config()
  config.dataset = 'synthetic'
  config.image_size = 64
  config.max_objects = 3
  config.num_classes = 5
  config.ch = 4
  config.d_ch = 4
  config.mask_hidden = 8
  config.batch_size = 2
  config.num_train_steps = 2
  config.d_only_iters = 1
  config.log_every_steps = 1
  config.checkpoint_every_steps = 1
  config.sample_every_steps = 2
  config.num_sample_images = 2
  config.keep_checkpoints = 2
  for k, v in overrides.items():
    config[k] = v
  return config
