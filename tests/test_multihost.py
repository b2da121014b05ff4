"""Two local processes (loopback only) train a few steps and end with identical parameters."""
import os
import socket
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = '''
import sys, numpy as np, jax
from absl import flags
jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2, process_id=int(sys.argv[2]),
                           coordinator_bind_address=sys.argv[1])
from lama_jax.training import loop as train
from tests.train_helpers import tiny_config
config = tiny_config(num_train_steps=2, d_only_iters=0, checkpoint_every_steps=100, sample_every_steps=100)
state = train.train_and_evaluate(config, sys.argv[3])
leaves = jax.tree.leaves(train.to_host((state.g_params, state.d_params)))
np.savez(sys.argv[4], *leaves)
'''


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_identical_parameters(tmp_path):
  address = f'127.0.0.1:{_free_port()}'
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  procs = [subprocess.Popen([sys.executable, '-c', SCRIPT, address, str(i), str(tmp_path / 'run'),
                             str(tmp_path / f'p{i}.npz')], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=900)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out[-4000:]
  a, b = np.load(tmp_path / 'p0.npz'), np.load(tmp_path / 'p1.npz')
  assert len(a.files) == len(b.files) > 0
  for k in a.files:
    np.testing.assert_array_equal(a[k], b[k])
