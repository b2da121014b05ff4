"""Generator directories: the on-disk form of a generator for inference.

A generator directory (a training workdir is one too, with more items in its checkpoints) holds:

  generator.json     `generator_spec(G)` plus "max_objects", "image_size" and "dataset".
  vocabulary.json    `Vocabulary.to_json()` of the dataset the generator was trained on.
  checkpoints/STEP/  an Orbax `CheckpointManager` step whose Composite has the item 'generator':
                     {'params', 'batch_stats', 'spectral'}; training workdirs have further items
                     (discriminator, optimiser states), which are never read here.
"""
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from lama_jax import files
from lama_jax.datasets import vocabulary as vocabulary_lib
from lama_jax.errors import LamaError
from lama_jax.inference import checkpoint_errors
from lama_jax.inference import portable_runtime
from lama_jax.models import generator_from_spec, generator_spec

GENERATOR_JSON = 'generator.json'
VOCABULARY_JSON = 'vocabulary.json'
CHECKPOINTS = 'checkpoints'
ITEM = 'generator'
COLLECTIONS = ('params', 'batch_stats', 'spectral')


class GeneratorDirError(LamaError, ValueError):
  """A path that is not a usable generator directory or training workdir."""


class CheckpointDamagedError(GeneratorDirError):
  """A checkpoint step whose files are missing, cut short or corrupt; the message names the step,
  the variable, and the steps that still load."""


@dataclasses.dataclass
class LoadedGenerator:
  """Everything read from a generator directory.

  Attributes:
    generator: the Flax module, rebuilt from generator.json.
    variables: {'params', 'batch_stats', 'spectral'} as NumPy/JAX arrays.
    config: the contents of generator.json (spec, max_objects, image_size, dataset).
    vocabulary: the category vocabulary.
    step: the checkpoint step that was restored.
  """
  generator: nn.Module
  variables: dict[str, Any]
  config: dict[str, Any]
  vocabulary: vocabulary_lib.Vocabulary
  step: int


def abstract_variables(generator: nn.Module, num_objects: int = 8, with_mask_net: bool = True
                       ) -> dict[str, Any]:
  """The {'params', 'batch_stats', 'spectral'} tree of `generator` as ShapeDtypeStructs.

  `with_mask_net=False` gives the tree of a generator trained on given masks (Sec. 3), which has no
  layout-to-mask network (MaskRegressNet, LAMA).
  """
  z, size = generator.z_dim, generator.image_size
  args = (jnp.zeros((1, num_objects, z)), jnp.full((1, num_objects, 4), 0.5),
          jnp.ones((1, num_objects), jnp.int32), jnp.zeros((1, z)))
  masks = None if with_mask_net else jnp.zeros((1, num_objects, size, size))
  rngs = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  tree = jax.eval_shape(lambda: generator.init(rngs, *args, masks=masks))
  return {k: tree.get(k, {}) for k in COLLECTIONS}


def read_json(path: Path, what: str) -> dict:
  """The JSON object in `path`, a file of the directory (`what` names it when it is missing).

  Raises:
    GeneratorDirError: the file is missing, not JSON or not a JSON object.
  """
  if not path.exists():
    raise GeneratorDirError(f'{path.parent} has no {path.name}: not a generator directory or '
                            f'training workdir ({what} missing).')
  try:
    with open(path) as f:
      data = json.load(f)
  except ValueError as e:  # JSONDecodeError; UnicodeDecodeError for bytes that are not text
    raise GeneratorDirError(f'{path} is not valid JSON: {e}') from e
  if not isinstance(data, dict):
    raise GeneratorDirError(f'{path} does not hold a JSON object.')
  return data


def check_foreign_manifest(root: Path) -> None:
  """Names a manifest.json that is not a portable artifact's in a folder without generator.json
  (the folder was called "not a generator directory", the file that made it look like one unnamed).

  Raises:
    GeneratorDirError: `root` has no generator.json but a manifest.json.
  """
  manifest = root / portable_runtime.MANIFEST
  if not (root / GENERATOR_JSON).exists() and manifest.is_file():
    raise GeneratorDirError(f'{root} has no {GENERATOR_JSON}, and its {manifest.name} is not one '
                            'that export --format stablehlo writes (it has no "format": '
                            f'"{portable_runtime.FORMAT}"): not a generator directory, training '
                            'workdir or portable artifact.')


def read_generator_config(root: Path) -> tuple[dict, nn.Module]:
  """The generator.json of the directory `root`, checked, and the generator it describes.

  Raises:
    GeneratorDirError: it is missing, not JSON, or not a generator config.
  """
  check_foreign_manifest(root)
  config = read_json(root / GENERATOR_JSON, 'the generator config')
  try:
    generator = generator_from_spec(config)
  except (KeyError, TypeError, ValueError) as e:
    raise GeneratorDirError(f'{root / GENERATOR_JSON} is not a generator config: {e!r}') from e
  max_objects = config.get('max_objects')
  if not isinstance(max_objects, int) or isinstance(max_objects, bool) or max_objects < 1:
    raise GeneratorDirError(f'{root / GENERATOR_JSON}: "max_objects" must be a positive integer, '
                            f'not {json.dumps(max_objects)}.')
  return config, generator


def load_generator_dir(path: str, step: int | None = None) -> LoadedGenerator:
  """Reads a generator directory or training workdir (its latest checkpoint unless `step` is given).

  Raises:
    GeneratorDirError: a file is missing or malformed, or there is no checkpoint.
  """
  root = Path(path)
  if not root.is_dir():
    raise GeneratorDirError(f'{path} is not a directory.')
  config, generator = read_generator_config(root)
  max_objects = config['max_objects']
  vocab_json = read_json(root / VOCABULARY_JSON, 'the vocabulary')  # names the file itself
  try:
    vocab = vocabulary_lib.Vocabulary.from_json(vocab_json)
  except ValueError as e:
    raise GeneratorDirError(f'{root / VOCABULARY_JSON}: {e}') from e
  if vocab.num_classes != generator.num_classes:
    raise GeneratorDirError(f'{root}: the vocabulary has {vocab.num_classes} classes but the '
                            f'generator {generator.num_classes}.')
  ckpt_dir = root / CHECKPOINTS
  if not ckpt_dir.is_dir():
    raise GeneratorDirError(f'{root} has no {CHECKPOINTS}/ directory.')
  mngr = ocp.CheckpointManager(ckpt_dir.absolute(), item_names=(ITEM,))
  try:
    steps = mngr.all_steps()
    if step is None:
      step = mngr.latest_step()
      if step is None:
        raise GeneratorDirError(f'{ckpt_dir} holds no checkpoint.')
    elif step not in steps:
      raise GeneratorDirError(f'{ckpt_dir} has no step {step} (steps: {steps}).')
    try:
      restored = _restore(mngr, ckpt_dir, step, generator, max_objects)
    except LamaError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      if not checkpoint_errors.is_damage(e):
        raise GeneratorDirError(f'cannot read checkpoint {ckpt_dir / str(step)}: '
                                f'{checkpoint_errors.describe(e)}') from e
      raise CheckpointDamagedError(_damage_message(
          mngr, ckpt_dir, step, e, generator, max_objects)) from e
  finally:
    mngr.close()
  variables = {k: restored.get(k, {}) for k in COLLECTIONS}
  return LoadedGenerator(generator, variables, config, vocab, int(step))


def _restore(mngr: ocp.CheckpointManager, ckpt_dir: Path, step: int, generator: nn.Module,
             max_objects: int) -> dict[str, Any]:
  """The generator item of `step`, on this process's first device.

  Raises:
    GeneratorDirError: the checkpoint holds another model than generator.json describes.
  """
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  # A generator trained on given masks (Sec. 3) may have been saved without the mask network.
  item_dir = epath.Path(ckpt_dir.absolute()) / str(step) / ITEM
  saved = checkpoint_errors.read_metadata(item_dir)
  with_mask_net = 'mask_regress' in saved.get('params', {})
  abstract = abstract_variables(generator, max_objects, with_mask_net)
  target = jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), abstract)
  checkpoint_errors.quiet_abandoned_reads()
  try:
    return mngr.restore(step, args=ocp.args.Composite(
        **{ITEM: ocp.args.StandardRestore(target)}))[ITEM]
  except Exception as e:  # pylint: disable=broad-except
    mismatch = None if checkpoint_errors.is_damage(e) else checkpoint_errors.shape_mismatch(
        {k: v for k, v in saved.items() if k in COLLECTIONS}, abstract)
    if mismatch:
      raise GeneratorDirError(f'{ckpt_dir / str(step)} does not fit the generator that '
                              f'{GENERATOR_JSON} describes: {mismatch}.') from e
    raise


def _damage_message(mngr: ocp.CheckpointManager, ckpt_dir: Path, step: int, error: Exception,
                    generator: nn.Module, max_objects: int) -> str:
  """Names the damaged step and variable, and the other steps that still load (tried in turn)."""
  intact = []
  for other in sorted(mngr.all_steps(), reverse=True):
    if other != step:
      try:
        _restore(mngr, ckpt_dir, other, generator, max_objects)
        intact.append(other)
      except Exception:  # pylint: disable=broad-except
        pass
  if intact:
    advice = (f'intact: step{"s" if len(intact) > 1 else ""} {", ".join(map(str, intact))}; '
              f'load one with --step {intact[0]}')
  else:
    advice = 'no other step loads' if len(mngr.all_steps()) > 1 else 'there is no other step'
  return (f'checkpoint {ckpt_dir / str(step)} is damaged ({checkpoint_errors.describe(error)}); '
          f'{advice}.')


def generator_config(generator: nn.Module, max_objects: int, dataset: str) -> dict[str, Any]:
  """The contents of generator.json."""
  config = generator_spec(generator)
  config.update(max_objects=int(max_objects), image_size=int(generator.image_size),
                dataset=str(dataset))
  return config


def write_metadata(folder: str | os.PathLike, generator: nn.Module, max_objects: int,
                   dataset: str, vocab: vocabulary_lib.Vocabulary | None) -> None:
  """Writes generator.json and (when known) vocabulary.json: what inference needs besides weights."""
  files.write_json(Path(folder) / GENERATOR_JSON, generator_config(generator, max_objects, dataset))
  if vocab is not None:
    vocabulary_lib.save_vocabulary(vocab, str(Path(folder) / VOCABULARY_JSON))


def save_generator_dir(out: str, generator: nn.Module, variables: dict[str, Any], max_objects: int,
                       dataset: str, vocab: vocabulary_lib.Vocabulary, step: int = 0) -> None:
  """Writes a generator directory at `out`, which must not exist or be empty.

  Everything is written into a temporary sibling directory that is renamed into place at the end,
  so a failure leaves no half-written directory behind.
  """
  out_path = Path(out).absolute()
  if out_path.exists() and (not out_path.is_dir() or any(out_path.iterdir())):
    raise GeneratorDirError(f'{out} already exists and is not empty; choose a new --out.')
  if vocab.num_classes != generator.num_classes:
    raise GeneratorDirError(f'the vocabulary has {vocab.num_classes} classes but the generator '
                            f'{generator.num_classes}.')
  with files.atomic_dir(out_path) as tmp:
    write_metadata(tmp, generator, max_objects, dataset, vocab)
    tree = {k: jax.tree_util.tree_map(np.asarray, dict(variables.get(k, {}))) for k in COLLECTIONS}
    # Closed on the way out, which waits for Orbax's writer threads also after a Ctrl-C in the
    # save or the wait: removing `tmp` under them left it behind (they recreate its subfolders).
    with ocp.CheckpointManager(tmp / CHECKPOINTS, item_names=(ITEM,)) as mngr:
      mngr.save(int(step), args=ocp.args.Composite(**{ITEM: ocp.args.StandardSave(tree)}))
      mngr.wait_until_finished()
