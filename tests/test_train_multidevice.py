"""The step on 8 simulated CPU devices equals the step on one device for the same global batch."""
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent('''
    import jax, numpy as np
    from lama_jax.datasets import synthetic
    from lama_jax.training import trainer as trainer_lib
    from tests.train_helpers import tiny_config
    assert jax.device_count() == 8
    config = tiny_config(batch_size=8, d_only_iters=0)
    batch = next(synthetic.synthetic_batches(64, 3, 5, 8, seed=0))
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      trainer = trainer_lib.Trainer(config, steps_per_epoch=100, devices=devices)
      state, metrics = trainer.step_fn(trainer.init_state(), trainer.global_batch(batch), trainer.key)
      results.append(trainer_lib.to_host((state.g_params, state.g_state, state.d_params, state.d_state, metrics)))
    one, eight = results
    # Losses, D outputs, BatchNorm statistics and spectral-norm state: equal to float tolerance.
    for a, b in zip(jax.tree.leaves((one[1], one[3], one[4])), jax.tree.leaves((eight[1], eight[3], eight[4]))):
      np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)
    # Parameters after one Adam step (b1 = 0): each moves by ±lr·g/|g|, so a gradient that is zero
    # up to summation order may take either sign; anything else must agree.
    lr = max(config.optim.g_lr, config.optim.d_lr)
    for a, b in zip(jax.tree.leaves((one[0], one[2])), jax.tree.leaves((eight[0], eight[2]))):
      np.testing.assert_allclose(a, b, rtol=0, atol=2 * lr + 1e-6)
    print('EQUAL')
''')


def test_eight_devices_equal_one():
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8".strip()
  env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  proc = subprocess.run([sys.executable, '-c', SCRIPT], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0 and 'EQUAL' in proc.stdout, proc.stderr[-4000:]
