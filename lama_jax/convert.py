r"""Convert an official LAMA generator checkpoint (PyTorch) into a generator directory.

  python -m lama_jax.convert --torch_checkpoint G_coco128.pth --image_size 128 \
      --out runs/official_coco128 [--dataset coco|vg]

The official checkpoints (COCO-Stuff and Visual Genome at 64, 128 and 256) are linked from the
README of github.com/ZejianLi/LAMA ("Pretrained Models": Google Drive and Weiyun). The output loads
with `LayoutGenerator.load(DIR)` and `python -m lama_jax.sample --workdir DIR`. PyTorch is needed
for this command only: `pip install -r requirements-convert.txt`.
"""
import argparse
import os
import sys
from typing import Any, Sequence

import numpy as np

DATASETS = {'coco': ('coco_stuff', 8), 'vg': ('visual_genome', 10)}  # vocabulary, max objects
_WRAPPER_KEYS = ('state_dict', 'netG', 'generator', 'model')


class ConvertError(ValueError):
  """A problem to report in one line."""


def read_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch state dict as NumPy arrays (tensors only; on CPU)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConvertError('PyTorch is needed to read official checkpoints: '
                       'pip install -r requirements-convert.txt') from None
  if not os.path.isfile(path):
    raise ConvertError(f'{path}: no such checkpoint file')
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # torch raises many kinds
    raise ConvertError(f'{path}: not a readable PyTorch checkpoint ({type(e).__name__}: '
                       f'{str(e).splitlines()[0] if str(e) else ""})') from None
  for key in _WRAPPER_KEYS:
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
      obj = obj[key]
      break
  if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
    raise ConvertError(f'{path}: not a state dict of tensors (a generator saved with '
                       'torch.save(netG.state_dict(), ...))')
  return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def load_dataset_vocabulary(dataset: str, num_classes: int, vocab_path: str | None):
  """The vocabulary for the converted generator; must have `num_classes` classes."""
  from lama_jax import vocabulary as vocabulary_lib  # pylint: disable=g-import-not-at-top
  name = DATASETS[dataset][0]
  try:
    vocab = vocabulary_lib.load_vocabulary(vocab_path or name)
  except (FileNotFoundError, ValueError) as e:
    raise ConvertError(f'{e} (pass --vocab FILE)') from None
  if vocab.num_classes != num_classes:
    raise ConvertError(f'the checkpoint has {num_classes} classes but the {vocab.dataset} '
                       f'vocabulary {vocab.num_classes}: wrong --dataset or --vocab?')
  return vocab


def convert(torch_checkpoint: str, image_size: int, out: str, dataset: str = 'coco',
            vocab_path: str | None = None, max_objects: int | None = None) -> dict[str, Any]:
  """Converts a checkpoint file and writes the generator directory; returns its spec."""
  from lama_jax import generator_io  # pylint: disable=g-import-not-at-top
  from lama_jax import torch_mapping  # pylint: disable=g-import-not-at-top
  from lama_jax.models import generator_from_spec  # pylint: disable=g-import-not-at-top
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ConvertError(f'{out} already exists and is not empty; choose a new --out')
  state_dict = read_torch_checkpoint(torch_checkpoint)
  try:
    spec, variables = torch_mapping.convert_state_dict(state_dict, image_size)
  except torch_mapping.ConversionError as e:
    raise ConvertError(f'{torch_checkpoint}: {e}') from None
  vocab = load_dataset_vocabulary(dataset, spec['num_classes'], vocab_path)
  generator = generator_from_spec(spec)
  generator_io.save_generator_dir(out, generator, variables,
                                  max_objects or DATASETS[dataset][1], vocab.dataset, vocab, step=0)
  return spec


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m lama_jax.convert',
                              description=__doc__.split('\n\n')[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--torch_checkpoint', required=True,
                 help='official generator state dict (.pth), with or without DDP\'s "module." '
                      'prefix')
  p.add_argument('--image_size', type=int, required=True, choices=(64, 128, 256),
                 help='resolution of the official generator (fixes its block names)')
  p.add_argument('--out', required=True, help='new generator directory to write')
  p.add_argument('--dataset', choices=sorted(DATASETS), default='coco',
                 help='what the checkpoint was trained on: coco (COCO-Stuff, 184 classes, '
                      '8 objects) or vg (Visual Genome, 179 classes, 10 objects)')
  p.add_argument('--vocab', default=None,
                 help='vocabulary JSON to use instead of the shipped one (e.g. the vocab.json that '
                      '`prepare` wrote for Visual Genome)')
  p.add_argument('--max_objects', type=int, default=None,
                 help='objects per layout (default: 8 for coco, 10 for vg)')
  return p


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  from lama_jax.generator_io import GeneratorDirError  # pylint: disable=g-import-not-at-top
  try:
    if args.max_objects is not None and args.max_objects < 1:
      raise ConvertError(f'--max_objects must be at least 1, got {args.max_objects}')
    spec = convert(args.torch_checkpoint, args.image_size, args.out, args.dataset, args.vocab,
                   args.max_objects)
  except (ConvertError, GeneratorDirError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'wrote {args.out}: {args.image_size}×{args.image_size} generator, ch={spec["ch"]}, '
        f'{spec["num_classes"]} classes')
  return 0


if __name__ == '__main__':
  sys.exit(main())
