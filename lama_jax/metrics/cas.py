"""Classification Accuracy Score (CAS): train on generated object crops, test on real ones.

A classifier that learns the categories from generated crops alone, and then
recognises real crops, says the generator put recognisable objects in their
boxes. The paper's recipe: 32×32 crops of every box with label > 0 (see
`fid.object_crops(..., size=32)`), a ResNet, accuracy on the real val crops.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import struct
from tqdm import tqdm


class ResidualBlock(nn.Module):
  """Basic residual block: conv-BN-ReLU-conv-BN plus a (projected) shortcut, then ReLU."""
  features: int  # output channels
  strides: int = 1  # spatial stride of the first conv

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
    y = nn.Conv(self.features, (3, 3), self.strides, use_bias=False, name='conv1')(x)
    y = nn.relu(norm(name='bn1')(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False, name='conv2')(y)
    y = norm(name='bn2', scale_init=nn.initializers.zeros)(y)  # blocks start as identity
    if x.shape[-1] != self.features or self.strides != 1:
      x = nn.Conv(self.features, (1, 1), self.strides, use_bias=False, name='proj')(x)
      x = norm(name='proj_bn')(x)
    return nn.relu(x + y)


class ResNet(nn.Module):
  """A small CIFAR-style ResNet for 32×32 crops; depth and width are data."""
  num_classes: int  # number of logits (the dataset's label space, 0 included)
  stage_sizes: Sequence[int] = (1, 1, 1)  # residual blocks per stage; stages 2+ halve H, W
  width: int = 32  # channels of the first stage; doubled at each later stage

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = nn.Conv(self.width, (3, 3), use_bias=False, name='stem')(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, name='stem_bn')(x))
    for i, n in enumerate(self.stage_sizes):
      for j in range(n):
        x = ResidualBlock(self.width * 2 ** i, strides=2 if i > 0 and j == 0 else 1,
                          name=f'stage{i}_block{j}')(x, train)
    return nn.Dense(self.num_classes, name='head')(jnp.mean(x, axis=(1, 2)))


@struct.dataclass
class TrainState:
  params: Any
  batch_stats: Any
  opt_state: Any


def _to_input(images: np.ndarray) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 127.5 - 1.0
  return images.astype(np.float32)


def _compile(model: nn.Module, tx: optax.GradientTransformation):
  """The jitted training step and prediction of `model`."""

  @jax.jit
  def train_step(state: TrainState, x: jax.Array,
                 y: jax.Array) -> tuple[TrainState, jax.Array]:
    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': state.batch_stats}, x,
                                    train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, updates['batch_stats']

    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return TrainState(optax.apply_updates(state.params, updates), batch_stats, opt_state), loss

  @jax.jit
  def predict(state: TrainState, x: jax.Array) -> jax.Array:
    logits = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, x)
    return jnp.argmax(logits, axis=-1)

  return train_step, predict


def _accuracy(predict, state: TrainState, x_test: np.ndarray, y_test: np.ndarray,
              batch_size: int) -> float:
  """Top-1 accuracy, in batches padded to one compiled shape (padded rows are not counted)."""
  correct = 0
  for start in range(0, len(x_test), batch_size):
    batch = x_test[start:start + batch_size]
    valid = len(batch)
    batch = np.concatenate([batch, np.zeros((batch_size - valid, *batch.shape[1:]), np.float32)])
    pred = np.asarray(predict(state, batch))[:valid]
    correct += int(np.sum(pred == y_test[start:start + valid]))
  return correct / max(len(x_test), 1)


def train_and_score(train_crops: np.ndarray, train_labels: np.ndarray, test_crops: np.ndarray,
                    test_labels: np.ndarray, num_classes: int, epochs: int = 20,
                    batch_size: int = 128, seed: int = 0, learning_rate: float = 1e-3,
                    stage_sizes: Sequence[int] = (1, 1, 1), width: int = 32,
                    progress: bool = True) -> float:
  """Trains a ResNet on (generated) crops and returns its accuracy on (real) crops.

  Args:
    train_crops: [N, 32, 32, 3] uint8 (or floats in [-1, 1]) generated crops.
    train_labels: [N] int labels in [0, num_classes).
    test_crops: [M, 32, 32, 3] real crops, same format.
    test_labels: [M] int labels.
    num_classes: logits of the classifier.
    epochs: passes over the training crops.
    batch_size: crops per step; each epoch drops the last partial batch (all
      crops form one batch when there are fewer than batch_size).
    seed: initialisation, shuffling and flip augmentation.
    learning_rate: Adam step size.
    stage_sizes: residual blocks per stage.
    width: first-stage channels.
    progress: show a tqdm bar over steps.

  Returns:
    Top-1 accuracy on the test crops.
  """
  x_train, y_train = _to_input(train_crops), np.asarray(train_labels, np.int32)
  x_test, y_test = _to_input(test_crops), np.asarray(test_labels, np.int32)
  if len(x_train) != len(y_train) or len(x_test) != len(y_test):
    raise ValueError('Crops and labels differ in number.')
  model = ResNet(num_classes, tuple(stage_sizes), width)
  tx = optax.adam(learning_rate)
  # 'rbg' keys: XLA:CPU takes ~7-10 s to compile each threefry program, rbg ~0.5 s;
  # the classifier's initial weights need no cross-backend reproducibility.
  key = jax.random.key(seed, impl='rbg')
  variables = jax.jit(model.init)(key, jnp.zeros((1, *x_train.shape[1:]), jnp.float32))
  state = TrainState(variables['params'], variables['batch_stats'], tx.init(variables['params']))

  train_step, predict = _compile(model, tx)
  n = len(x_train)
  bs = min(batch_size, n)
  steps_per_epoch = n // bs
  rng = np.random.default_rng(seed)
  loss = jnp.nan
  with tqdm(total=epochs * steps_per_epoch, desc='CAS train', disable=not progress) as bar:
    for epoch in range(epochs):
      order = rng.permutation(n)
      for i in range(steps_per_epoch):
        idx = order[i * bs:(i + 1) * bs]
        x = x_train[idx]
        # Random horizontal flips (on the host, seeded): objects keep their category mirrored.
        flip = rng.random(len(idx)) < 0.5
        x[flip] = x[flip, :, ::-1]
        state, loss = train_step(state, x, y_train[idx])
        bar.update(1)
      logging.info('CAS epoch %d: loss %.4f', epoch, float(loss))
  if not np.isfinite(float(loss)):
    raise FloatingPointError(f'CAS training loss is {float(loss)} after {epochs} epochs.')

  return _accuracy(predict, state, x_test, y_test, bs)

