"""Official generator checkpoints (.pth) to generator directories."""
import os
from typing import Any

from lama_jax.conversion import torch_io
from lama_jax.conversion import torch_mapping
from lama_jax.conversion.torch_io import ConversionError
from lama_jax.datasets import vocabulary as vocabulary_lib
from lama_jax.inference import generator_dir
from lama_jax.models import generator_from_spec

# What an official checkpoint was trained on: its vocabulary and the most objects per layout.
DATASETS = {'coco': ('coco_stuff', 8), 'vg': ('visual_genome', 10)}


def load_dataset_vocabulary(dataset: str, num_classes: int, vocab_path: str | None
                            ) -> vocabulary_lib.Vocabulary:
  """The vocabulary for the converted generator; it must have `num_classes` classes."""
  try:
    vocab = vocabulary_lib.load_vocabulary(vocab_path or DATASETS[dataset][0])
  except (FileNotFoundError, ValueError) as e:
    raise ConversionError(f'{e} (pass --vocab FILE)') from None
  if vocab.num_classes != num_classes:
    raise ConversionError(f'the checkpoint has {num_classes} classes but the {vocab.dataset} '
                          f'vocabulary {vocab.num_classes}: wrong --dataset or --vocab?')
  return vocab


def convert(torch_checkpoint: str, image_size: int, out: str, dataset: str = 'coco',
            vocab_path: str | None = None, max_objects: int | None = None) -> dict[str, Any]:
  """Converts an official generator checkpoint and writes the generator directory `out`.

  Returns:
    The generator's spec (width, classes, ...).

  Raises:
    ConversionError: unreadable file, unmapped or missing keys, wrong vocabulary.
    GeneratorDirError: `out` exists and is not empty.
  """
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ConversionError(f'{out} already exists and is not empty; choose a new --out')
  state_dict = torch_io.read_torch_state_dict(torch_checkpoint)
  try:
    spec, variables = torch_mapping.convert_state_dict(state_dict, image_size)
  except ConversionError as e:
    raise ConversionError(f'{torch_checkpoint}: {e}') from None
  vocab = load_dataset_vocabulary(dataset, spec['num_classes'], vocab_path)
  generator_dir.save_generator_dir(out, generator_from_spec(spec), variables,
                                   max_objects or DATASETS[dataset][1], vocab.dataset, vocab, step=0)
  return spec
