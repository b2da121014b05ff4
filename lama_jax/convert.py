r"""Convert an official LAMA generator checkpoint (PyTorch) into a generator directory.

  python -m lama_jax.convert --torch_checkpoint G_coco128.pth --image_size 128 \
      --out runs/official_coco128 [--dataset coco|vg]

The official checkpoints (COCO-Stuff and Visual Genome at 64, 128 and 256) are linked from the
README of github.com/ZejianLi/LAMA ("Pretrained Models": Google Drive and Weiyun). The output loads
with `LayoutGenerator.load(DIR)` and `python -m lama_jax.sample --workdir DIR`. PyTorch is needed
for this command only: `pip install -r requirements-convert.txt`.
"""
from collections.abc import Sequence
import sys

from absl import flags

from lama_jax import cli
from lama_jax.conversion import converter
from lama_jax.errors import LamaError

FLAGS = cli.flag_values()
flags.DEFINE_string('torch_checkpoint', None, 'Official generator state dict (.pth), with or '
                    'without DDP\'s "module." prefix.', flag_values=FLAGS, required=True)
flags.DEFINE_enum('image_size', None, ['64', '128', '256'], 'Resolution of the official generator '
                  '(fixes its block names).', flag_values=FLAGS, required=True)
flags.DEFINE_string('out', None, 'New generator directory to write.', flag_values=FLAGS,
                    required=True)
flags.DEFINE_enum('dataset', 'coco', sorted(converter.DATASETS), 'What the checkpoint was trained '
                  'on: coco (COCO-Stuff, 184 classes, 8 objects) or vg (Visual Genome, 179 classes, '
                  '10 objects).', flag_values=FLAGS)
flags.DEFINE_string('vocab', None, 'Vocabulary JSON to use instead of the shipped one (e.g. the '
                    'vocab.json that `prepare` wrote for Visual Genome).', flag_values=FLAGS)
flags.DEFINE_integer('max_objects', None, 'Objects per layout (default: 8 for coco, 10 for vg).',
                     flag_values=FLAGS)


def _main(fv: flags.FlagValues) -> None:
  if fv.max_objects is not None and fv.max_objects < 1:
    raise LamaError(f'--max_objects must be at least 1, got {fv.max_objects}')
  spec = converter.convert(fv.torch_checkpoint, int(fv.image_size), fv.out, fv.dataset, fv.vocab,
                           fv.max_objects)
  print(f'wrote {fv.out}: {fv.image_size}×{fv.image_size} generator, ch={spec["ch"]}, '
        f'{spec["num_classes"]} classes')


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  sys.exit(main())
