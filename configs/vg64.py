"""Visual Genome 64×64: the COCO recipe with VG's 179 classes and 10 objects."""
from configs import coco64


def get_config():
  config = coco64.get_config()
  config.data.dataset = 'visual_genome'
  config.data.vocabulary = ''  # '' = DATA_DIR/visual_genome/vocab.json, written by prepare
  config.data.max_objects = 10
  config.model.num_classes = 179
  return config
