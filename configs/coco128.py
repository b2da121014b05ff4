"""COCO-Stuff 128×128, batch 20 (the paper's one-GPU run): the default recipe."""
from configs import default


def get_config():
  return default.get_config()
