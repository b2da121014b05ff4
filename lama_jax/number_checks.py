"""What counts as a number in values users hand us (layout JSON, detection files, API arguments).

An int or a float, NumPy's included, and never a bool: JSON's `true` and Python's `True` are ints to
`isinstance`, and a box `[0, 0, true, 1]` or a seed `True` must be refused, not read as 1.
"""
from typing import Any

import numpy as np

_NUMBER_TYPES = (int, float, np.integer, np.floating)


def is_number(x: Any) -> bool:
  """x is an int or a float (NumPy's too), not a bool; NaN and infinities count."""
  return isinstance(x, _NUMBER_TYPES) and not isinstance(x, (bool, np.bool_))


def is_int(x: Any) -> bool:
  """x is an int (NumPy's too), not a bool."""
  return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def number_in(x: Any, low: float, high: float, whole: bool = False) -> bool:
  """x is a number in [low, high] (so not NaN), and a whole one if `whole`."""
  return is_number(x) and low <= x <= high and (not whole or float(x).is_integer())
