"""Writing outputs so that nothing half-written is ever left behind.

`atomic_open` writes a file beside its destination and renames it into place when complete;
`atomic_files` does it for a set of files together, `atomic_dir` for a directory; `output_dir`
creates a command's output folder and removes it again if the command fails before finishing.
`write_png` is the one PNG writer.
"""
import contextlib
import json
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from lama_jax.errors import LamaError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = 'w') -> Iterator[Any]:
  """Opens a temporary file in `path`'s folder; on success it replaces `path`, on error it goes."""
  with atomic_files([path]) as (tmp,), open(tmp, mode) as f:
    yield f


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes `text` to `path` atomically."""
  with atomic_open(path) as f:
    f.write(text)


def write_json(path: str | os.PathLike, data: Any) -> None:
  """Writes `data` as indented JSON to `path` atomically."""
  write_text(path, json.dumps(data, indent=1) + '\n')


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
  """Writes a uint8 [H, W, 3] (or [H, W]) image as PNG, atomically."""
  with atomic_open(path, 'wb') as f:
    Image.fromarray(np.asarray(image, np.uint8)).save(f, format='PNG')


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike]) -> Iterator[list[str]]:
  """Yields a temporary path beside each of `paths`; when the block succeeds they all replace their
  destinations at once (renames only), so a set of outputs is never half old, half new.

  On any error, or Ctrl-C, the temporary files go and the destinations are left as they were.
  """
  tmps = []
  try:
    for path in map(os.fspath, paths):
      fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp',
                                 dir=os.path.dirname(os.path.abspath(path)))
      os.close(fd)
      tmps.append(tmp)
    yield list(tmps)
    for tmp in tmps:
      os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
    for tmp, path in zip(tmps, map(os.fspath, paths)):
      try:
        os.replace(tmp, path)
      except OSError as e:  # e.g. a folder in the way: name the file asked for, not our temporary
        raise OSError(e.errno, e.strerror, path) from None
  except BaseException:
    for tmp in tmps:
      with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
  """Yields a temporary sibling directory that is renamed to `path` when the block succeeds.

  `path` must not exist, or be an empty directory (which is replaced). On any error, or Ctrl-C, the
  temporary directory is removed and `path` is left as it was.
  """
  out = Path(path).absolute()
  out.parent.mkdir(parents=True, exist_ok=True)
  try:
    tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent))
  except OSError as e:  # name the folder the user asked for, not our temporary sibling
    raise OSError(e.errno, f'cannot create a folder here ({e.strerror})', str(path)) from None
  os.chmod(tmp, 0o755)  # mkdtemp makes it private
  try:
    yield tmp
    if out.exists():
      out.rmdir()  # only an empty directory may be replaced
    os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


def check_folder_target(path: str | os.PathLike, flag: str, empty: bool = False) -> None:
  """Raises LamaError unless `path` is a folder (an empty one if `empty`), or one can be created
  there, writable by us.

  Called before a command loads or computes anything, so that `--out` naming a file, a folder
  below a file or a folder we may not write into is one line at once, not a traceback at the end.
  """
  if not os.fspath(path):
    raise LamaError(f'{flag} is empty; give a folder')
  out = Path(path).absolute()
  if out.exists() and not out.is_dir():
    raise LamaError(f'{flag} {path}: exists and is not a folder')
  if empty and out.is_dir() and any(out.iterdir()):
    raise LamaError(f'{flag} {path}: exists and is not empty; choose a new folder')
  ancestor = next(p for p in (out, *out.parents) if p.exists())
  if not ancestor.is_dir():
    raise LamaError(f'{flag} {path}: {ancestor} is a file, not a folder')
  if not os.access(ancestor, os.W_OK | os.X_OK):
    raise LamaError(f'{flag} {path}: no permission to write in {ancestor}')


def check_input_file(path: str | os.PathLike, flag: str, what: str) -> None:
  """Raises LamaError unless `path` is an existing file (`what` names its kind: 'layout file')."""
  if os.path.isdir(path):
    raise LamaError(f'{flag} {path}: a folder, not a {what}')
  if not os.path.isfile(path):
    raise LamaError(f'{flag} {path}: no such {what}')


@contextlib.contextmanager
def output_dir(path: str | os.PathLike, keep: Callable[[], bool] | None = None) -> Iterator[Path]:
  """Creates a command's output folder (parents too) and removes it again if the block fails.

  A folder that existed before is kept (with whatever it held); only folders this call created are
  removed, so a failed or interrupted run never leaves an empty or partial new output folder.
  `keep`, when given, is asked on failure: True keeps the new folder (e.g. a training run that has
  saved a checkpoint before it failed).
  """
  out = Path(path)
  created = []
  for folder in reversed([out, *out.parents]):
    if not folder.exists():
      created.append(folder)
  try:  # the mkdir inside: a Ctrl-C right after it still removes the folder
    out.mkdir(parents=True, exist_ok=True)
    yield out
  except BaseException:
    if keep is None or not keep():
      for folder in reversed(created):
        shutil.rmtree(folder, ignore_errors=True)
    raise
