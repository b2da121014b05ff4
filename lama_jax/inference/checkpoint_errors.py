"""Why an Orbax checkpoint could not be read, in one line: damaged files, or another model's shapes.

TensorStore reports a truncated or corrupt file as a long chain of exceptions ending in a spec dump;
`describe` finds the variable and the cause in it ("cannot read params.fc.kernel: requested byte
range [0, 2196) is not valid for value of size 1000"). `is_damage` tells damaged files (worth
falling back to an earlier step) from a checkpoint that holds another model (`shape_mismatch` names
the first variable that differs), where an earlier step of the same run would fail the same way.
"""
import inspect
import json
import os
import re
import sys
from typing import Any, Iterator

import jax
import orbax.checkpoint as ocp

# What TensorStore and Orbax say about files that are missing, cut short or corrupt.
_DAMAGE = ('Error reading', 'Error decoding', 'DATA_LOSS', 'OUT_OF_RANGE', 'FAILED_PRECONDITION',
           'NOT_FOUND', 'corrupt', 'Truncated', 'does not exist', 'Unterminated', 'Expecting',
           'JSONDecodeError', 'No such file')


def _is_abandoned_read(unraisable: Any) -> bool:
  """An Orbax read that outlived its failed restore: its coroutine collected unfinished, or its
  TensorStore result posted to the closed loop (asyncio's 'Event loop is closed')."""
  obj, e = unraisable.object, unraisable.exc_value
  if inspect.iscoroutine(obj) and f'{os.sep}orbax{os.sep}' in obj.cr_code.co_filename:
    return True
  if not isinstance(e, RuntimeError) or str(e) != 'Event loop is closed':
    return False
  tb = e.__traceback__
  while tb is not None and tb.tb_next is not None:
    tb = tb.tb_next
  return tb is not None and tb.tb_frame.f_code.co_filename.endswith(
      os.path.join('asyncio', 'base_events.py'))


def quiet_abandoned_reads() -> None:
  """Drops the tracebacks of reads that a failed restore abandoned (call before restoring).

  Orbax runs a restore's reads on an event loop that it closes as soon as one read fails (a damaged
  file). The reads still pending are left behind: their coroutines, collected unfinished, and
  TensorStore's results, posted to the closed loop, each make Python print an unraisable
  exception, hundreds of tracebacks (14,000 lines for one cut file of a tiny model) after the
  one-line message. They are harmless; this hook drops exactly them and hands every other
  unraisable exception to the hook it replaces. Idempotent.
  """
  previous = sys.unraisablehook
  if getattr(previous, 'drops_abandoned_reads', False):
    return

  def hook(unraisable):
    if not _is_abandoned_read(unraisable):
      previous(unraisable)

  hook.drops_abandoned_reads = True
  sys.unraisablehook = hook


def _chain(e: BaseException) -> Iterator[BaseException]:
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def _text(e: BaseException) -> str:
  text = ' '.join(str(e).split())
  return re.sub(r'\s*\[tensorstore_spec=.*$', '', text)  # the spec dump says nothing to a user


def is_damage(e: BaseException) -> bool:
  """Whether `e` (from a restore or a metadata read) means missing, truncated or corrupt files."""
  return any(isinstance(x, _MetadataError) or isinstance(x, (ValueError, OSError)) and (
      any(marker in f'{type(x).__name__}: {x}' for marker in _DAMAGE)) for x in _chain(e))


def describe(e: BaseException) -> str:
  """One line: the variable (when TensorStore names it), the file and the cause."""
  for x in _chain(e):
    text = _text(x)
    if isinstance(x, _MetadataError):
      return text
    match = re.search(r'Error reading "([^"/]+)[^"]*" in OCDBT database at local file "([^"]+)"',
                      text)
    if not match:
      continue
    item = match[2].rstrip('/').rsplit('/', 1)[-1]
    cause = text.rsplit('": ', 1)[-1]
    bad_file = re.search(r'Error decoding local file "([^"]+)"', text)
    where = f' (file {bad_file[1]})' if bad_file else ''
    return f'cannot read {item} {match[1]}{where}: {cause}'
  return f'{type(e).__name__}: {_text(e)}'


class _MetadataError(ValueError):
  """An item's _METADATA that cannot be read (the message names the file)."""


def read_metadata(item_dir) -> Any:
  """Orbax's metadata tree of one checkpoint item (shapes, dtypes), naming the item on failure.

  Raises:
    FileNotFoundError: the item or its _METADATA is missing.
    ValueError: _METADATA is not valid JSON (cut short, overwritten), or a data file it reads
      (the arrays' metadata live there too) is damaged; `is_damage` says True for both.
  """
  try:
    return ocp.StandardCheckpointHandler().metadata(item_dir)
  except json.JSONDecodeError as e:  # not other ValueErrors: TensorStore's name the damaged file
    raise _MetadataError(f'{item_dir}/_METADATA is not valid JSON: {e}') from e


def _name(path) -> str:
  parts = []
  for key in path:
    for attr in ('key', 'idx', 'name'):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return '.'.join(parts)


def leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """{'params.fc.kernel': shape} of a tree of arrays, ShapeDtypeStructs or Orbax metadata."""
  leaves = jax.tree_util.tree_leaves_with_path(tree)
  return {_name(path): tuple(getattr(leaf, 'shape', ())) for path, leaf in leaves}


def shape_mismatch(saved: Any, target: Any) -> str | None:
  """The first difference between a checkpoint item's metadata and the tree it is restored into."""
  have, want = leaf_shapes(saved), leaf_shapes(target)
  for name, shape in want.items():
    if name not in have:
      return f'{name} is not in the checkpoint'
    if have[name] != shape:
      return f'{name} has shape {list(have[name])} in the checkpoint but {list(shape)} here'
  extra = [name for name in have if name not in want]
  return f'the checkpoint has {extra[0]}, which this model lacks' if extra else None
