"""Reading .pth files: a round trip when torch is installed, a clear error when it is not."""
import importlib.util

import numpy as np
import pytest

from lama_jax.metrics import lpips
from lama_jax.conversion import torch_io

HAVE_TORCH = importlib.util.find_spec('torch') is not None


@pytest.mark.skipif(not HAVE_TORCH, reason='torch is an optional extra')
def test_pth_round_trip(tmp_path):
  import torch  # pylint: disable=import-outside-toplevel
  state = {f'lin{l}.model.1.weight': torch.rand(1, c, 1, 1)
           for l, c in enumerate((64, 192, 384, 256, 256))}
  path = tmp_path / 'alex.pth'
  torch.save(state, path)
  params = lpips.load_lpips_linear_params(str(path))
  np.testing.assert_array_equal(params['lin2']['kernel'][0, 0, :, 0],
                                state['lin2.model.1.weight'][0, :, 0, 0].numpy())


@pytest.mark.skipif(not HAVE_TORCH, reason='torch is an optional extra')
def test_an_empty_file_is_called_empty(tmp_path):
  path = tmp_path / 'G.pth'
  path.write_bytes(b'')  # was "not a readable PyTorch checkpoint (EOFError: )"
  with pytest.raises(torch_io.ConversionError, match=f'^{path}: an empty file, not a PyTorch '
                     'checkpoint$'):
    torch_io.read_torch_state_dict(path)


@pytest.mark.skipif(HAVE_TORCH, reason='checks the message shown without torch')
def test_missing_torch_says_how_to_install(tmp_path):
  with pytest.raises(ImportError, match='requirements-convert.txt'):
    torch_io.read_torch_state_dict(tmp_path / 'alex.pth')


def test_mapping_passes_through():
  state = torch_io.as_numpy_state_dict({'a': [1.0, 2.0]})
  assert isinstance(state['a'], np.ndarray)
