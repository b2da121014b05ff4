"""One rule for numbers in user values, shared by layouts, detection files and the studio's API."""
import math

import numpy as np
import pytest

from lama_jax import layouts
from lama_jax.number_checks import is_int, is_number, number_in


@pytest.mark.parametrize('x', [0, -3, 1.5, math.nan, math.inf, np.int32(2), np.float32(0.5)])
def test_numbers(x):
  assert is_number(x)


@pytest.mark.parametrize('x', [True, False, np.bool_(True), '1', None, [1], 1j, np.complex64(1)])
def test_not_numbers(x):
  assert not is_number(x)


def test_is_int():
  assert is_int(3) and is_int(np.int64(-2)) and is_int(2**70)
  assert not any(is_int(x) for x in (True, np.bool_(False), 3.0, np.float32(1), '3', None))


def test_number_in():
  assert number_in(3, 0, 10, whole=True) and number_in(np.int64(3), 0, 10, whole=True)
  assert not number_in(1.5, 0, 10, whole=True) and number_in(1.5, 0, 10)
  assert not number_in(math.nan, -math.inf, math.inf)
  assert not number_in(11, 0, 10) and not number_in(True, 0, 10)


def test_layout_boxes_follow_the_rule():
  np.testing.assert_allclose(layouts.check_box([np.float32(0.25), 0, np.float64(0.5), np.int64(1)]),
                             [0.25, 0, 0.5, 1])
  for bad in ([0, 0, True, 1], [0, 0, np.complex64(1), 1]):  # complex was a TypeError traceback
    with pytest.raises(layouts.LayoutError, match='bbox must be four numbers'):
      layouts.check_box(bad)
