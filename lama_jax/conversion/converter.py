"""Official checkpoints (.pth) to generator directories, or with D to training workdirs."""
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lama_jax import files
from lama_jax.conversion import discriminator_mapping
from lama_jax.conversion import torch_io
from lama_jax.conversion import torch_mapping
from lama_jax.conversion.torch_io import ConversionError
from lama_jax.datasets import vocabulary as vocabulary_lib
from lama_jax.inference import generator_dir
from lama_jax.models import generator_from_spec
from lama_jax.training import checkpointing
from lama_jax.training import optimizers
from lama_jax.training.state import TrainState

# What an official checkpoint was trained on: its vocabulary and the most objects per layout.
DATASETS = {'coco': ('coco_stuff', 8), 'vg': ('visual_genome', 10)}


def _read_finite(path: str) -> dict[str, Any]:
  """The state dict of `path`; a tensor with NaN or infinite values (a diverged or damaged
  checkpoint) is refused by name: converted, it would draw black or NaN images."""
  state_dict = torch_io.read_torch_state_dict(path)
  for key, value in state_dict.items():
    value = np.asarray(value)
    if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
      raise ConversionError(f'{path}: {key} holds NaN or infinite values (a diverged or damaged '
                            'checkpoint)')
  return state_dict


def load_dataset_vocabulary(dataset: str, num_classes: int, vocab_path: str | None
                            ) -> vocabulary_lib.Vocabulary:
  """The vocabulary for the converted generator; it must have `num_classes` classes."""
  try:
    vocab = vocabulary_lib.load_vocabulary(vocab_path or DATASETS[dataset][0])
  except (FileNotFoundError, ValueError) as e:  # the hint only where --vocab was not given
    raise ConversionError(f'{e}{"" if vocab_path else " (pass --vocab FILE)"}') from None
  if vocab.num_classes != num_classes:
    raise ConversionError(f'the checkpoint has {num_classes} classes but the {vocab.dataset} '
                          f'vocabulary {vocab.num_classes}: wrong --dataset or --vocab?')
  return vocab


def convert_discriminator(torch_checkpoint: str, image_size: int, num_classes: int
                          ) -> tuple[dict[str, int], dict[str, Any]]:
  """Reads and converts an official discriminator checkpoint; its classes must be the generator's.

  Returns:
    ({'image_size', 'ch', 'num_classes'}, {'params', 'spectral'}).
  """
  state_dict = _read_finite(torch_checkpoint)
  try:
    spec, variables = discriminator_mapping.convert_discriminator_state_dict(state_dict, image_size)
  except ConversionError as e:
    raise ConversionError(f'{torch_checkpoint}: {e}') from None
  if spec['num_classes'] != num_classes:
    raise ConversionError(f'{torch_checkpoint}: the discriminator has {spec["num_classes"]} classes '
                          f'but the generator {num_classes}: not the same model?')
  return spec, variables


def save_training_workdir(out: str, generator, g_variables: dict[str, Any],
                          d_variables: dict[str, Any], max_objects: int,
                          vocab: vocabulary_lib.Vocabulary) -> None:
  """Writes a training workdir at step 0 holding G, D and fresh Adam states (the official
  checkpoints hold no optimizer state); `main --workdir out` resumes (fine-tunes) from it."""
  g_tx, d_tx = optimizers.make_optimizers(g_lr=1.0, d_lr=1.0)  # states do not depend on the rates
  g_variables, d_variables = jax.tree.map(jnp.asarray, (g_variables, d_variables))
  state = TrainState(
      step=jnp.zeros((), jnp.int32), g_params=g_variables['params'],
      g_state={k: v for k, v in g_variables.items() if k != 'params'},
      g_opt_state=g_tx.init(g_variables['params']), d_params=d_variables['params'],
      d_state={k: v for k, v in d_variables.items() if k != 'params'},
      d_opt_state=d_tx.init(d_variables['params']))
  with files.atomic_dir(out) as tmp:
    generator_dir.write_metadata(tmp, generator, max_objects, vocab.dataset, vocab)
    # Closed on the way out, which waits for Orbax's writer threads also after a Ctrl-C in the
    # save or the wait: removing `tmp` under them left it behind (they recreate its subfolders).
    with checkpointing.make_manager(str(tmp), max_to_keep=1) as manager:
      checkpointing.save(manager, state, force=True)
      manager.wait_until_finished()


def convert(torch_checkpoint: str, image_size: int, out: str, dataset: str = 'coco',
            vocab_path: str | None = None, max_objects: int | None = None,
            discriminator_checkpoint: str | None = None) -> dict[str, Any]:
  """Converts an official generator checkpoint and writes the generator directory `out`.

  With `discriminator_checkpoint`, `out` is a training workdir at step 0 instead (G, D and fresh
  optimizer states), for fine-tuning; it is a generator directory too.

  Returns:
    The generator's spec (width, classes, ...), with 'd_ch' when D was converted.

  Raises:
    ConversionError: unreadable file, missing or misshapen keys, wrong vocabulary.
    GeneratorDirError: `out` exists and is not empty.
  """
  if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
    raise ConversionError(f'{out} already exists and is not empty; choose a new --out')
  state_dict = _read_finite(torch_checkpoint)
  try:
    spec, variables = torch_mapping.convert_state_dict(state_dict, image_size)
  except ConversionError as e:
    raise ConversionError(f'{torch_checkpoint}: {e}') from None
  vocab = load_dataset_vocabulary(dataset, spec['num_classes'], vocab_path)
  max_objects = max_objects or DATASETS[dataset][1]
  if discriminator_checkpoint is None:
    generator_dir.save_generator_dir(out, generator_from_spec(spec), variables, max_objects,
                                     vocab.dataset, vocab, step=0)
    return spec
  d_spec, d_variables = convert_discriminator(discriminator_checkpoint, image_size,
                                              spec['num_classes'])
  save_training_workdir(out, generator_from_spec(spec), variables, d_variables, max_objects, vocab)
  return {**spec, 'd_ch': d_spec['ch']}
