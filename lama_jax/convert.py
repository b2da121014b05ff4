r"""Convert an official LAMA checkpoint (PyTorch) into a generator directory or a training workdir.

  python -m lama_jax.convert --torch_checkpoint G_coco128.pth --image_size 128 \
      --out runs/official_coco128 [--dataset coco|vg]

The official checkpoints (COCO-Stuff and Visual Genome at 64, 128 and 256) are linked from the
README of github.com/ZejianLi/LAMA ("Pretrained Models": Google Drive and Weiyun). The output loads
with `LayoutGenerator.load(DIR)` and `python -m lama_jax.sample --workdir DIR`. PyTorch is needed
for this command only: `pip install -r requirements-convert.txt`.

To fine-tune, convert a discriminator of the same run too: a `CombineDiscriminator{64,128,256}`
state dict (the official release ships generators only, and train.py saves only G: save
`netD.state_dict()` alongside it):

  python -m lama_jax.convert --torch_checkpoint G_200.pth --torch_discriminator D_200.pth \
      --image_size 128 --out runs/finetune_coco128
  python -m lama_jax.main --config configs/coco128.py --workdir runs/finetune_coco128

The output is then a training workdir at step 0 (G, D and fresh Adam states: the official
checkpoints hold none) that `main` resumes from, given a config whose model matches the checkpoint;
it is a generator directory as well.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence

from absl import flags

from lama_jax import cli
from lama_jax import files
from lama_jax.conversion import converter
from lama_jax.inference import layouts

FLAGS = cli.flag_values()
flags.DEFINE_string('torch_checkpoint', None, 'Official generator state dict (.pth), with or '
                    'without DDP\'s "module." prefix.', flag_values=FLAGS, required=True)
flags.DEFINE_string('torch_discriminator', None, 'Official discriminator state dict (.pth) of the '
                    'same model, for fine-tuning: --out becomes a training workdir at step 0.',
                    flag_values=FLAGS)
flags.DEFINE_enum('image_size', None, ['64', '128', '256'], 'Resolution of the official generator '
                  '(fixes its block names).', flag_values=FLAGS, required=True)
flags.DEFINE_string('out', None, 'New generator directory (training workdir with '
                    '--torch_discriminator) to write.', flag_values=FLAGS,
                    required=True)
flags.DEFINE_enum('dataset', 'coco', sorted(converter.DATASETS), 'What the checkpoint was trained '
                  'on: coco (COCO-Stuff, 184 classes, 8 objects) or vg (Visual Genome, 179 classes, '
                  '10 objects).', flag_values=FLAGS)
flags.DEFINE_string('vocab', None, 'Vocabulary JSON to use instead of the shipped one (e.g. the '
                    'vocab.json that `prepare` wrote for Visual Genome).', flag_values=FLAGS)
flags.DEFINE_integer('max_objects', None, 'Objects per layout (default: 8 for coco, 10 for vg).',
                     lower_bound=1, upper_bound=layouts.MAX_OBJECTS, flag_values=FLAGS)


def _main(fv: flags.FlagValues) -> None:
  for flag in ('torch_checkpoint', 'torch_discriminator'):
    if fv[flag].value is not None:
      files.check_input_file(fv[flag].value, f'--{flag}', '.pth file')
  files.check_folder_target(fv.out, '--out', empty=True)
  if fv.vocab is not None:
    files.check_input_file(fv.vocab, '--vocab', 'file')
  spec = converter.convert(fv.torch_checkpoint, int(fv.image_size), fv.out, fv.dataset, fv.vocab,
                           fv.max_objects, fv.torch_discriminator)
  what = (f'training workdir at step 0 (discriminator ch={spec["d_ch"]}), '
          if fv.torch_discriminator else '')
  print(f'wrote {fv.out}: {what}{fv.image_size}×{fv.image_size} generator, ch={spec["ch"]}, '
        f'{spec["num_classes"]} classes')


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
