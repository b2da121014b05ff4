r"""Turns dataset files into TFRecords through the TFDS builders in `lama_jax/datasets/`.

Usage:
  python -m lama_jax.prepare --dataset coco_stuff --manual_dir /path/to/coco --data_dir data/tfds
  python -m lama_jax.prepare --dataset visual_genome --manual_dir /path/to/datasets/vg --data_dir ...
  python -m lama_jax.prepare --dataset shapes --manual_dir data/shapes --data_dir data/tfds
  python -m lama_jax.prepare --dataset coco_stuff --image_sizes 128 ...   # one resolution only

The images are stored already resized, one copy per size in --image_sizes (DATA_DIR/DATASET/{S}px/),
so that training only reads and scales them. Per image that is S·S·3 bytes (64: 12 KB, 128: 48 KB,
256: 192 KB; for COCO-Stuff's 77,874 images 0.96, 3.8 and 15.3 GB), plus the boxes and masks.

Nothing is downloaded. Each finished split prints one JSON line to stdout:
  {"split": "train", "images": N, "objects": M, "skipped_degenerate_boxes": K, ...}
with what the filters counted; for COCO-Stuff and shapes also clipped_boxes (boxes reaching more
than a pixel outside their image, clipped to it), skipped_boxes_outside (nothing inside),
masks_wrong_size (RLE masks of another size than their image) and masks_outside_image (polygons
reaching more than an image size outside it), both stored as full boxes; for Visual Genome
skipped_images_without_objects (every object's box empty).
TFDS writes into a temporary folder and renames it when every split is done, so an interrupted run
leaves no half-written dataset; a finished one is reused, not rebuilt.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence
import json

from absl import flags
import tensorflow as tf

from lama_jax import cli
from lama_jax.datasets import builders
from lama_jax.datasets import common
from lama_jax.datasets import preparation
from lama_jax.errors import LamaError

tf.config.set_visible_devices([], 'GPU')  # TensorFlow must not take the accelerators

FLAGS = cli.flag_values()
flags.DEFINE_enum('dataset', None, sorted(builders.BUILDERS), 'Which dataset to prepare.',
                  flag_values=FLAGS, required=True)
flags.DEFINE_string('manual_dir', None, 'Folder with the dataset files (COCO-Stuff 2017 layout '
                    'for coco_stuff and shapes; train.h5, val.h5, vocab.json, images/ for '
                    'visual_genome).', flag_values=FLAGS, required=True)
flags.DEFINE_string('data_dir', 'data/tfds', 'Where the TFRecords go (a TFDS data dir).',
                    flag_values=FLAGS)
flags.DEFINE_list('image_sizes', [str(s) for s in common.STANDARD_SIZES],
                  'Image sizes to store the images at (comma-separated; the resolutions you train '
                  'or evaluate at). Sizes already prepared are kept.', flag_values=FLAGS)


def _sizes(values: list[str]) -> list[int]:
  try:
    sizes = [int(v) for v in values]
  except ValueError:
    raise LamaError(f'--image_sizes must be whole numbers, got {",".join(values)}') from None
  if not sizes or min(sizes) < 1:
    raise LamaError(f'--image_sizes must be positive, got {",".join(values)}')
  if max(sizes) > common.MAX_SIZE:
    raise LamaError(f'--image_sizes must be at most {common.MAX_SIZE} (the models draw 64, 128 or '
                    f'256), got {",".join(values)}')
  return sizes


def _main(fv: flags.FlagValues) -> None:
  summaries = preparation.prepare(fv.dataset, fv.manual_dir, fv.data_dir, _sizes(fv.image_sizes))
  for summary in summaries.values():
    print(json.dumps(summary), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
