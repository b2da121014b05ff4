"""CAS: the classifier trains one epoch on tiny crops and scores in [0, 1]."""
import numpy as np

from lama_jax.metrics import cas


def _coloured_crops(n, seed):
  """Crops whose class is their colour: learnable in a few steps."""
  rng = np.random.default_rng(seed)
  colours = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230]], np.float32)
  labels = rng.integers(1, 4, n)
  crops = colours[labels - 1][:, None, None, :] + rng.normal(0, 20, (n, 32, 32, 3))
  return np.clip(crops, 0, 255).astype(np.uint8), labels


def test_cas_trains_one_epoch_and_scores():
  x_train, y_train = _coloured_crops(64, 0)
  x_test, y_test = _coloured_crops(20, 1)
  acc = cas.train_and_score(x_train, y_train, x_test, y_test, num_classes=4, epochs=1,
                            batch_size=8, seed=0, learning_rate=1e-2, stage_sizes=(1, 1),
                            width=8, progress=False)
  # Eight Adam steps on colour-coded crops beat chance (1/3) by a wide margin.
  assert 0.6 < acc <= 1.0
