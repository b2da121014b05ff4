"""A tiny config shared by the training tests (ch=4, batch 2, synthetic data)."""
import pathlib

import ml_collections

from configs import default


def set_field(config: ml_collections.ConfigDict, name: str, value) -> None:
  """Sets a field by its leaf name ('d_only_iters') or its dotted path ('schedule.d_only_iters')."""
  if '.' in name:
    head, rest = name.split('.', 1)
    return set_field(config[head], rest, value)
  if name in config:
    config[name] = value
    return
  holders = [sub for sub in config.values() if isinstance(sub, ml_collections.ConfigDict)
             and name in sub]
  if len(holders) != 1:
    raise KeyError(f'{name}: {len(holders)} config sections hold it')
  holders[0][name] = value


def tiny_config(**overrides):
  config = default.get_config()
  config.data.dataset = 'synthetic'
  config.data.max_objects = 3
  config.model.image_size = 64
  config.model.num_classes = 5
  config.model.ch = 4
  config.model.d_ch = 4
  config.model.mask_hidden = 8
  config.batch_size = 2
  config.num_train_steps = 2
  config.schedule.d_only_iters = 1
  config.log.every_steps = 1
  config.log.checkpoint_every_steps = 1
  config.log.sample_every_steps = 2
  config.log.num_sample_images = 2
  config.log.keep_checkpoints = 2
  for k, v in overrides.items():
    set_field(config, k, v)
  return config


def tiny_config_file(folder) -> str:
  """A config file (for the commands' --config) whose get_config() is `tiny_config()`."""
  path = pathlib.Path(folder) / 'tiny_config.py'
  path.write_text('from tests.train_helpers import tiny_config\n\n\n'
                  'def get_config():\n  return tiny_config()\n')
  return str(path)
