"""COCO-Stuff 64×64, batch 32 (the paper)."""
from configs import default


def get_config():
  config = default.get_config()
  config.model.image_size = 64
  config.batch_size = 32
  return config
