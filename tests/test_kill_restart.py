"""Preemption: a run killed with SIGKILL (mid-save when we catch one) restarts from its last complete
checkpoint; a run sent SIGTERM saves and exits cleanly; the run then finishes at num_train_steps with
only complete, restorable checkpoints left."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from lama_jax.training import checkpointing
from lama_jax.training import loop as train
from lama_jax.training import step_cache
from tests.train_helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS, KEEP = 10, 3  # a save per step: the signals land near saves
OVERRIDES = dict(num_train_steps=NUM_STEPS, keep_checkpoints=KEEP, sample_every_steps=1000)

SCRIPT = f'''
import sys
from absl import logging
from lama_jax.training import loop as train
from tests.train_helpers import tiny_config
logging.set_verbosity(logging.INFO)
train.train_and_evaluate(tiny_config(**{OVERRIDES!r}), sys.argv[1])
'''


def _entries(ckpt_dir: str) -> tuple[list[int], list[str]]:
  """Complete step folders (sorted) and everything else in the checkpoint folder."""
  names = os.listdir(ckpt_dir) if os.path.isdir(ckpt_dir) else []
  return sorted(int(n) for n in names if n.isdigit()), [n for n in names if not n.isdigit()]


def _train_until(workdir: str, sig: int, after_step: int, log_path: str,
                 timeout: float = 600) -> tuple[subprocess.Popen, bool]:
  """Starts training in a subprocess and sends `sig` once a save of a step > `after_step` is in
  progress (a temporary folder) or complete. Returns the finished process and whether the signal
  landed during a save."""
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  before = set(_entries(ckpt_dir)[1])  # what a killed save left; the new run removes it
  with open(log_path, 'w') as log:
    proc = subprocess.Popen([sys.executable, '-c', SCRIPT, workdir], cwd=ROOT,
                            env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT),
                            stdout=log, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + timeout
  try:
    while time.monotonic() < deadline:
      if proc.poll() is not None:
        pytest.fail(f'training exited (rc {proc.returncode}) before the signal; log: '
                    f'{open(log_path).read()[-3000:]}')
      steps, other = _entries(ckpt_dir)
      saving = [n for n in other if n not in before and re.match(r'\d+', n)
                and int(re.match(r'\d+', n)[0]) > after_step]
      if saving or (steps and steps[-1] > after_step):
        proc.send_signal(sig)
        proc.wait(timeout=300)
        return proc, bool(saving)
      time.sleep(0.005)
    pytest.fail(f'no checkpoint after step {after_step} appeared in time')
  finally:
    if proc.poll() is None:
      proc.kill()


def test_sigkill_and_sigterm_then_finish_with_intact_checkpoints(tmp_path, monkeypatch):
  workdir = str(tmp_path / 'run')
  ckpt_dir = os.path.join(workdir, 'checkpoints')

  # 1. SIGKILL: whatever was being written, the complete steps before it survive.
  _, mid_save = _train_until(workdir, signal.SIGKILL, 1, str(tmp_path / 'killed.log'))
  killed_steps, _ = _entries(ckpt_dir)
  assert killed_steps, f'no complete checkpoint survived the kill (mid-save: {mid_save})'

  # 2. SIGTERM on the restarted run: it resumes from the last complete step, saves and exits 0.
  proc, _ = _train_until(workdir, signal.SIGTERM, killed_steps[-1], str(tmp_path / 'term.log'))
  log = open(tmp_path / 'term.log').read()
  assert proc.returncode == 0, log[-3000:]
  assert f'Resumed from step {killed_steps[-1]}.' in log, log[-3000:]
  stopped = re.search(r'Stopped at step (\d+) \(SIGTERM\)', log)
  assert stopped, log[-3000:]
  term_steps, leftovers = _entries(ckpt_dir)
  assert term_steps[-1] == int(stopped[1]) < NUM_STEPS and not leftovers

  # 3. The final restart restores (never starts afresh) and finishes; it takes the train step and
  # the abstract state from the cache (lama_jax.training.step_cache): it traces neither.
  def no_fresh_start(self):
    raise AssertionError('the restarted run initialised a new state instead of restoring')
  def no_trace(*args, **kwargs):
    raise AssertionError('the restarted run traced instead of loading the cached step')
  monkeypatch.setattr(train.Trainer, 'init_state', no_fresh_start)
  monkeypatch.setattr(train.Trainer, '_init_fn', no_trace)
  monkeypatch.setattr(step_cache, '_export', no_trace)
  config = tiny_config(**OVERRIDES)
  state = train.train_and_evaluate(config, workdir)
  assert int(train.to_host(state.step)) == NUM_STEPS
  monkeypatch.undo()

  steps, leftovers = _entries(ckpt_dir)
  assert steps == list(range(NUM_STEPS - KEEP + 1, NUM_STEPS + 1)) and not leftovers, (
      steps, leftovers, mid_save)
  trainer = train.Trainer(config, steps_per_epoch=1000)
  manager = checkpointing.make_manager(workdir, KEEP)
  try:
    for step in steps:
      restored = manager.restore(step, args=checkpointing.restore_args(trainer.abstract_state))
      assert int(train.to_host(restored['optimizer']['step'])) == step
  finally:
    manager.close()
