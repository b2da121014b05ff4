"""COCO-Stuff 256×256, batch 24 over four GPUs (the paper); bf16 compute."""
from configs import default


def get_config():
  config = default.get_config()
  config.model.image_size = 256
  config.batch_size = 24
  config.model.dtype = 'bfloat16'
  return config
