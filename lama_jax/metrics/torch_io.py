"""Reading PyTorch state dicts for the metric networks, with torch as an optional extra."""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

StateDict = Mapping[str, Any]


def read_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Reads a PyTorch .pth state dict into numpy arrays.

  Args:
    path: the .pth file (a plain state dict, or one under a 'state_dict' key).

  Returns:
    {key: numpy array}.

  Raises:
    ImportError: when torch is not installed, saying how to install it.
  """
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError(f'Reading {os.fspath(path)} needs PyTorch (the CPU build is enough): '
                      'pip install -r requirements-convert.txt') from e
  state = torch.load(os.fspath(path), map_location='cpu', weights_only=True)
  if 'state_dict' in state and not hasattr(state['state_dict'], 'shape'):
    state = state['state_dict']
  return {k: v.detach().cpu().numpy() for k, v in state.items()}


def as_numpy_state_dict(path_or_state_dict: str | os.PathLike | StateDict) -> dict[str, np.ndarray]:
  """A state dict of numpy arrays from a .pth path or from a mapping of arrays."""
  if isinstance(path_or_state_dict, (str, os.PathLike)):
    return read_torch_state_dict(path_or_state_dict)
  return {k: np.asarray(v) for k, v in path_or_state_dict.items()}
