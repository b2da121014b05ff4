"""The train step kept as StableHLO (`jax.export`) in the compilation cache folder, so restarts skip
tracing and lowering it.

JAX's persistent compilation cache stores compiled programs, but finding one needs the program's
key, which costs tracing and lowering the step: 4-5 CPU-seconds of Python for the 64×64 demo, more
for bigger models, at every start. This module saves the lowered step once, as

  FOLDER/lama_jax_steps/KEY.step   pickle of {'exported': serialized jax.export.Exported,
                                             'in_tree', 'out_tree': the pytree structures}

and later starts load it (a fraction of a second), wrap it in `jax.jit` (cheap: nothing to trace)
and take the compiled code from JAX's cache. The input structure also gives the abstract train
state, so the models' `init` is not traced either when a checkpoint is restored.

KEY is a digest of everything the program depends on: the config (less the fields only the loop
reads), the steps per epoch, the devices and processes, the versions of JAX, jaxlib, Flax, Optax
and NumPy, the source of the `lama_jax` package, XLA_FLAGS and JAX's configuration; a change to any
of them gives a new key, and the step is traced and saved again. An unreadable entry is replaced;
if export itself fails, the plain jitted step is used. The exported step computes the same numbers
as the plain one (tests/test_restarts.py).
"""
import hashlib
import importlib.metadata
import json
import os
import pickle
from typing import Any, Callable

from absl import logging
import jax
from jax import export

from lama_jax import files

FORMAT = 1  # bump when the entry format changes
SUBDIR = 'lama_jax_steps'
# Config fields read by the loop only (changing them on a restart must not invalidate the step).
LOOP_ONLY = ('num_train_steps', 'num_epochs', 'time_budget_minutes', 'compilation_cache_dir', 'log',
             'evals')
_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'numpy', 'jax-cuda12-plugin', 'jax-cuda13-plugin',
             'libtpu')
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _source_digest() -> str:
  """A digest of every .py file of the lama_jax package (the step's code and what it imports)."""
  h = hashlib.sha256()
  for root, dirs, names in os.walk(_PACKAGE_DIR):
    dirs.sort()
    for name in sorted(n for n in names if n.endswith('.py')):
      path = os.path.join(root, name)
      h.update(os.path.relpath(path, _PACKAGE_DIR).encode())
      with open(path, 'rb') as f:
        h.update(f.read())
  return h.hexdigest()


def _versions() -> dict[str, str]:
  """The installed versions of the packages the compiled step depends on."""
  out = {}
  for name in _PACKAGES:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return out


def fingerprint(config: Any, steps_per_epoch: int, mesh: jax.sharding.Mesh) -> str:
  """The key of a config's train step on `mesh` (see the module docstring)."""
  cfg = {k: v for k, v in config.to_dict().items() if k not in LOOP_ONLY}
  devices = [(d.platform, d.device_kind, d.id, d.process_index) for d in mesh.devices.flat]
  parts = {
      'format': FORMAT, 'config': cfg, 'steps_per_epoch': steps_per_epoch,
      'mesh': dict(mesh.shape), 'devices': devices, 'process_count': jax.process_count(),
      'platform_version': mesh.devices.flat[0].client.platform_version,
      'versions': _versions(), 'source': _source_digest(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'jax_config': {k: str(v) for k, v in jax.config.values.items() if 'cache' not in k},
  }
  return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _export(step_fn: Callable, args: tuple) -> dict:
  """Exports `step_fn` at the abstract `args`, flat in and out (no pytree registry needed)."""
  leaves, in_tree = jax.tree.flatten(args)
  out_trees = []

  def flat_step(*flat):
    out = step_fn(*jax.tree.unflatten(in_tree, flat))
    out_leaves, out_tree = jax.tree.flatten(out)
    out_trees.append(out_tree)
    return out_leaves

  exported = export.export(jax.jit(flat_step, in_shardings=tuple(x.sharding for x in leaves)))(
      *leaves)
  return {'exported': exported.serialize(), 'in_tree': in_tree, 'out_tree': out_trees[0]}


def _wrap(entry: dict, in_shardings, out_shardings) -> tuple[Callable, tuple]:
  """The jitted step around an exported entry, and the abstract arguments it was exported for."""
  exported = export.deserialize(bytearray(entry['exported']))
  in_tree, out_tree = entry['in_tree'], entry['out_tree']

  def step(state, batch, key):
    return jax.tree.unflatten(out_tree, exported.call(*in_tree.flatten_up_to((state, batch, key))))

  abstract = jax.tree.unflatten(
      in_tree, [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in exported.in_avals])
  return jax.jit(step, in_shardings=in_shardings, out_shardings=out_shardings,
                 donate_argnums=0), abstract


def _read(path: str) -> dict | None:
  """The entry saved at `path`, or None when there is none or it is damaged."""
  if not os.path.isfile(path):
    return None
  try:
    with open(path, 'rb') as f:
      entry = pickle.load(f)
    if not {'exported', 'in_tree', 'out_tree'} <= set(entry):
      raise ValueError('missing fields')
    return entry
  except Exception as e:  # pylint: disable=broad-except  (any damage: re-export)
    logging.warning('Ignoring the unreadable cached train step %s (%r); exporting it again.',
                    path, e)
    return None


def load_or_export(folder: str, key: str, step_fn: Callable,
                   abstract_args: Callable[[], tuple], in_shardings, out_shardings
                   ) -> tuple[Callable, Any | None]:
  """The train step from `folder` when it holds `key`, else exported from `step_fn` and saved.

  Args:
    folder: the compilation cache folder (local).
    key: `fingerprint(...)` of the step.
    step_fn: the plain jitted step (state, batch, key) -> (state, metrics).
    abstract_args: returns (abstract state, abstract batch, abstract key) with their shardings;
      called only when the step must be exported.
    in_shardings, out_shardings: the step's shardings, for the jitted wrapper.

  Returns:
    (step, abstract state without shardings, or None when export failed and `step_fn` is used).
  """
  path = os.path.join(folder, SUBDIR, f'{key}.step')
  entry = _read(path)
  if entry is not None:
    try:
      step, (abstract_state, _, _) = _wrap(entry, in_shardings, out_shardings)
      return step, abstract_state
    except Exception as e:  # pylint: disable=broad-except  (a damaged entry: export again)
      logging.warning('Ignoring the cached train step %s (%r); exporting it again.', path, e)
  try:
    entry = _export(step_fn, abstract_args())
  except Exception as e:  # pylint: disable=broad-except  (export is an optimisation only)
    logging.warning('Could not export the train step (%r); restarts will trace it again.', e)
    return step_fn, None
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with files.atomic_open(path, 'wb') as f:
    pickle.dump(entry, f)
  step, (abstract_state, _, _) = _wrap(entry, in_shardings, out_shardings)
  return step, abstract_state
