"""Orbax checkpoints of the train state: `workdir/checkpoints/<step>/{generator,discriminator,optimizer}`.

The 'generator' item alone restores into G.apply-ready variables {'params', 'batch_stats', 'spectral'}
(what `sample`/`export` load); 'discriminator' holds D's {'params', 'spectral'}; 'optimizer' holds both
Adam states and the step. Orbax writes each step to a temporary folder and renames it when complete, so
a run killed mid-save leaves the earlier steps intact and the partial one is ignored. A step damaged
later (a file cut short or corrupt on disk) is set aside at resume, which falls back to the newest
step that loads.
"""
import os
import shutil

from absl import logging
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from lama_jax.errors import LamaError
from lama_jax.inference import checkpoint_errors
from lama_jax.training.state import TrainState

ITEMS = ('generator', 'discriminator', 'optimizer')
DAMAGED = 'damaged_checkpoints'  # beside checkpoints/: steps a resume could not read
TMP_SUFFIX = '.orbax-checkpoint-tmp'  # Orbax's name for a step still being written


def make_manager(workdir: str, max_to_keep: int, owner: bool = False) -> ocp.CheckpointManager:
  """The run's checkpoint manager. The training process is the `owner`: it alone removes what a
  killed save left half-written (a reader must not, as the trainer may be mid-save)."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           cleanup_tmp_directories=owner),
      item_names=ITEMS)


def _items(state: TrainState) -> dict:
  return {
      'generator': {'params': state.g_params, **state.g_state},
      'discriminator': {'params': state.d_params, **state.d_state},
      'optimizer': {'step': state.step, 'generator': state.g_opt_state,
                    'discriminator': state.d_opt_state},
  }


def save(manager: ocp.CheckpointManager, state: TrainState, force: bool = False) -> bool:
  """Saves `state` under its step (asynchronously; `manager.wait_until_finished()` to block)."""
  step = int(jax.device_get(state.step.addressable_data(0)))
  if step in manager.all_steps():
    return False
  items = _items(state)
  return manager.save(step, args=ocp.args.Composite(
      **{k: ocp.args.StandardSave(v) for k, v in items.items()}), force=force)


def restore_args(abstract_state: TrainState) -> ocp.args.Composite:
  """Restore arguments for every item, into `abstract_state`'s structure and shardings."""
  return ocp.args.Composite(
      **{k: ocp.args.StandardRestore(v) for k, v in _items(abstract_state).items()})


class CheckpointError(LamaError):
  """A run's checkpoints cannot be restored: all damaged, or saved by another model."""


class _Damaged(Exception):
  """One step's files are missing, cut short or corrupt (the message says which variable)."""


def has_checkpoint(workdir: str) -> bool:
  """Whether `workdir/checkpoints` holds a complete step."""
  folder = os.path.join(workdir, 'checkpoints')
  return os.path.isdir(folder) and any(name.isdigit() for name in os.listdir(folder))


def remove_partial_saves(manager: ocp.CheckpointManager) -> None:
  """Removes what interrupted saves left (`N.orbax-checkpoint-tmp-*`); call with no save in flight.

  The next run would remove them too (`cleanup_tmp_directories`); this leaves none behind now.
  """
  if jax.process_index() != 0 or not os.path.isdir(manager.directory):
    return
  for name in os.listdir(manager.directory):
    if TMP_SUFFIX in name:
      shutil.rmtree(os.path.join(os.fspath(manager.directory), name), ignore_errors=True)


def _restore(manager: ocp.CheckpointManager, step: int, abstract_state: TrainState) -> dict:
  """Restores every item of `step`; raises _Damaged, or CheckpointError for another model."""
  where = f'checkpoint {step} in {manager.directory}'
  # Shapes are compared from the metadata before restoring: Orbax restoring another model's
  # arrays fails inside its asynchronous reads, whose abandoned tasks then print pages of
  # tracebacks ("Event loop is closed") after the one-line error.
  for item, target in _items(abstract_state).items():
    try:
      saved = checkpoint_errors.read_metadata(manager.directory / str(step) / item)
    except (OSError, ValueError):
      continue  # damaged or missing: the restore below tells which
    mismatch = checkpoint_errors.shape_mismatch(saved, target)
    if mismatch:
      raise CheckpointError(
          f'{where} was saved by another model: {item} {mismatch}; resume with the run\'s own '
          'config (its config.json) or train in a new --workdir')
  checkpoint_errors.quiet_abandoned_reads()
  try:
    return manager.restore(step, args=restore_args(abstract_state))
  except Exception as e:  # pylint: disable=broad-except
    if checkpoint_errors.is_damage(e):
      raise _Damaged(checkpoint_errors.describe(e)) from e
    raise CheckpointError(f'cannot restore {where}: {checkpoint_errors.describe(e)}') from e


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> str:
  """Moves damaged steps to ../damaged_checkpoints/ (kept for inspection, out of Orbax's way)."""
  folder = os.path.join(os.path.dirname(os.fspath(manager.directory)), DAMAGED)
  if jax.process_index() == 0:
    for step in steps:
      dest = os.path.join(folder, str(step))
      while os.path.exists(dest):
        dest += '_'
      os.makedirs(folder, exist_ok=True)
      os.replace(os.path.join(os.fspath(manager.directory), str(step)), dest)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('damaged_checkpoints_set_aside')
  manager.reload()
  return folder


def restore_latest(manager: ocp.CheckpointManager, abstract_state: TrainState
                   ) -> TrainState | None:
  """The newest intact checkpoint restored into `abstract_state`'s structure and shardings, or None.

  Damaged steps (files missing, cut short or corrupt) newer than it are moved to
  `WORKDIR/damaged_checkpoints/` and the fallback is announced, so the run resumes from the newest
  step that loads and later saves are not blocked by the damaged ones.

  Raises:
    CheckpointError: every step is damaged, or the checkpoints hold another model.
  """
  damaged: list[tuple[int, str]] = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = _restore(manager, step, abstract_state)
    except _Damaged as e:
      damaged.append((step, str(e)))
      continue
    if damaged:
      folder = _set_aside(manager, [s for s, _ in damaged])
      many = len(damaged) > 1
      message = (f'Checkpoint{"s" if many else ""} {", ".join(str(s) for s, _ in damaged)} '
                 f'{"are" if many else "is"} damaged ({damaged[0][1]}); moved to {folder}; '
                 f'resuming from step {step}, the newest intact checkpoint.')
      logging.info(message)
      if jax.process_index() == 0:
        print(message, flush=True)
    return _state(restored)
  if damaged:
    raise CheckpointError(
        f'every checkpoint in {manager.directory} is damaged (' +
        '; '.join(f'step {s}: {why}' for s, why in damaged) +
        '); move the checkpoints folder away to train afresh')
  return None


def _state(restored: dict) -> TrainState:
  g, d, opt = restored['generator'], restored['discriminator'], restored['optimizer']
  return TrainState(
      step=opt['step'], g_params=g['params'], g_state={k: v for k, v in g.items() if k != 'params'},
      g_opt_state=opt['generator'], d_params=d['params'],
      d_state={k: v for k, v in d.items() if k != 'params'}, d_opt_state=opt['discriminator'])
