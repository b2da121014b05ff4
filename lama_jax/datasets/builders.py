"""Imports the TFDS builders so that `tfds.builder(NAME, data_dir=...)` finds them.

NAME is 'coco_stuff', 'visual_genome' or 'shapes'.
"""
# pylint: disable=unused-import
from lama_jax.datasets.coco_stuff import CocoStuff
from lama_jax.datasets.coco_stuff import Shapes
from lama_jax.datasets.visual_genome import VisualGenome

BUILDERS = {'coco_stuff': CocoStuff, 'visual_genome': VisualGenome, 'shapes': Shapes}
