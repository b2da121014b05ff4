"""Writing outputs so that nothing half-written is ever left behind.

`atomic_open` writes a file beside its destination and renames it into place when complete;
`atomic_dir` does the same for a directory; `output_dir` creates a command's output folder and removes
it again if the command fails before finishing. `write_png` is the one PNG writer.
"""
import contextlib
import json
import os
from pathlib import Path
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np
from PIL import Image


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = 'w') -> Iterator[Any]:
  """Opens a temporary file in `path`'s folder; on success it replaces `path`, on error it goes."""
  path = os.fspath(path)
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=folder)
  try:
    with os.fdopen(fd, mode) as f:
      yield f
    os.chmod(tmp, 0o644)  # mkstemp makes it private; outputs are ordinary files
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.remove(tmp)
    raise


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
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
  """Yields a temporary sibling directory that is renamed to `path` when the block succeeds.

  `path` must not exist, or be an empty directory (which is replaced). On any error, or Ctrl-C, the
  temporary directory is removed and `path` is left as it was.
  """
  out = Path(path).absolute()
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f'.{out.name}.', suffix='.tmp', dir=out.parent))
  os.chmod(tmp, 0o755)  # mkdtemp makes it private
  try:
    yield tmp
    if out.exists():
      out.rmdir()  # only an empty directory may be replaced
    os.replace(tmp, out)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise


@contextlib.contextmanager
def output_dir(path: str | os.PathLike) -> Iterator[Path]:
  """Creates a command's output folder (parents too) and removes it again if the block fails.

  A folder that existed before is kept (with whatever it held); only folders this call created are
  removed, so a failed or interrupted run never leaves an empty or partial new output folder.
  """
  out = Path(path)
  created = []
  for folder in reversed([out, *out.parents]):
    if not folder.exists():
      created.append(folder)
  out.mkdir(parents=True, exist_ok=True)
  try:
    yield out
  except BaseException:
    for folder in reversed(created):
      shutil.rmtree(folder, ignore_errors=True)
    raise
