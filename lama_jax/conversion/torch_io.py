"""Reading PyTorch .pth state dicts as NumPy arrays, with torch as an optional extra.

One reader for everything that comes from PyTorch: the official LAMA checkpoints (`convert`) and the
metric networks' weights (Inception, AlexNet, LPIPS).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from lama_jax.errors import LamaError

StateDict = Mapping[str, Any]
# Containers in which training scripts commonly save a state dict.
WRAPPER_KEYS = ('state_dict', 'netG', 'generator', 'netD', 'discriminator', 'model')


class ConversionError(LamaError, ValueError):
  """A PyTorch file or state dict that cannot be read or mapped (the message names the key)."""


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a PyTorch .pth state dict (plain, or under one of `WRAPPER_KEYS`) as NumPy arrays.

  Raises:
    ImportError: torch is not installed (the message says how to install it).
    ConversionError: no such file, not a PyTorch file, or not a state dict of tensors.
  """
  path = os.fspath(path)
  try:
    import torch  # pylint: disable=import-outside-toplevel  # an optional extra
  except ImportError as e:
    raise ImportError(f'Reading {path} needs PyTorch (the CPU build is enough): '
                      'pip install -r requirements-convert.txt') from e
  if os.path.isdir(path):
    raise ConversionError(f'{path}: a folder, not a .pth file')
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such file')
  if os.path.getsize(path) == 0:  # torch says "EOFError: " and nothing more
    raise ConversionError(f'{path}: an empty file, not a PyTorch checkpoint')
  try:
    obj = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except  # torch raises many kinds
    first = str(e).splitlines()[0].split('. ')[0] if str(e) else ''
    raise ConversionError(f'{path}: not a readable PyTorch checkpoint ({type(e).__name__}: '
                          f'{first})') from None
  for key in WRAPPER_KEYS:
    if isinstance(obj, dict) and isinstance(obj.get(key), dict):
      obj = obj[key]
      break
  if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
    raise ConversionError(f'{path}: not a state dict of tensors (saved with '
                          'torch.save(model.state_dict(), ...))')
  return {k: v.detach().cpu().numpy() for k, v in obj.items()}


def as_numpy_state_dict(path_or_state_dict: str | os.PathLike | StateDict) -> dict[str, np.ndarray]:
  """A state dict of numpy arrays from a .pth path or from a mapping of arrays."""
  if isinstance(path_or_state_dict, (str, os.PathLike)):
    return read_torch_state_dict(path_or_state_dict)
  return {k: np.asarray(v) for k, v in path_or_state_dict.items()}
