"""Orbax checkpoints of the train state: `workdir/checkpoints/<step>/{generator,discriminator,optimizer}`.

The 'generator' item alone restores into G.apply-ready variables {'params', 'batch_stats', 'spectral'}
(what `sample`/`export` load); 'discriminator' holds D's {'params', 'spectral'}; 'optimizer' holds both
Adam states and the step. Orbax writes each step to a temporary folder and renames it when complete, so
a run killed mid-save leaves the earlier steps intact and the partial one is ignored.
"""
import os

import jax
import orbax.checkpoint as ocp

from lama_jax.training.state import TrainState

ITEMS = ('generator', 'discriminator', 'optimizer')


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


def restore_latest(manager: ocp.CheckpointManager, abstract_state: TrainState
                   ) -> TrainState | None:
  """The latest checkpoint restored into `abstract_state`'s structure and shardings, or None."""
  step = manager.latest_step()
  if step is None:
    return None
  restored = manager.restore(step, args=restore_args(abstract_state))
  g, d, opt = restored['generator'], restored['discriminator'], restored['optimizer']
  return TrainState(
      step=opt['step'], g_params=g['params'], g_state={k: v for k, v in g.items() if k != 'params'},
      g_opt_state=opt['generator'], d_params=d['params'],
      d_state={k: v for k, v in d.items() if k != 'params'}, d_opt_state=opt['discriminator'])
