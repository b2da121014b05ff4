"""LPIPS v0.1 with the AlexNet backbone (the paper's Diversity Score), in Flax, NHWC.

d(x0, x1) = Σ_l mean_hw( w_l · (f̂_l(x0) - f̂_l(x1))² ), where f̂_l are the
channel-normalised relu1..relu5 features of torchvision's AlexNet applied to
ScalingLayer-shifted inputs, and w_l the learnt 1×1 weights lin0..lin4.

Weights: torchvision's `alexnet` state dict (`features.{0,3,6,8,10}.*`) and the
lpips v0.1 `alex.pth` (`lin{0..4}.model.1.weight`). Neither ships with us.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lama_jax.conversion.torch_io import StateDict, as_numpy_state_dict

# ScalingLayer constants of LPIPS v0.1: inputs in [-1, 1] are shifted and scaled
# to roughly ImageNet normalisation.
LPIPS_SHIFT = np.array([-.030, -.088, -.188], np.float32)
LPIPS_SCALE = np.array([.458, .448, .450], np.float32)

# torchvision alexnet.features conv layers: (index, out channels, kernel, stride, padding).
ALEX_CONVS = ((0, 64, 11, 4, 2), (3, 192, 5, 1, 2), (6, 384, 3, 1, 1), (8, 256, 3, 1, 1),
              (10, 256, 3, 1, 1))
ALEX_CHANNELS = tuple(c[1] for c in ALEX_CONVS)  # relu1..relu5 widths


class AlexNetFeatures(nn.Module):
  """torchvision AlexNet `features`, returning the five ReLU outputs."""

  @nn.compact
  def __call__(self, x: jax.Array) -> list[jax.Array]:
    outs = []
    for i, (idx, ch, k, s, p) in enumerate(ALEX_CONVS):
      if i in (1, 2):  # max pools (features.2 and .5) precede conv2 and conv3
        x = nn.max_pool(x, (3, 3), strides=(2, 2))
      x = nn.relu(nn.Conv(ch, (k, k), strides=s, padding=((p, p), (p, p)),
                          name=f'features_{idx}')(x))
      outs.append(x)
    return outs


def _normalize_channels(x: jax.Array, eps: float = 1e-10) -> jax.Array:
  # As lpips' normalize_tensor: eps on the norm, not under the square root.
  return x / (jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)) + eps)


class LPIPS(nn.Module):
  """LPIPS v0.1 (AlexNet). Inputs [N, H, W, 3] in [-1, 1]; returns [N] distances."""

  @nn.compact
  def __call__(self, x0: jax.Array, x1: jax.Array) -> jax.Array:
    net = AlexNetFeatures(name='net')
    shift, scale = jnp.asarray(LPIPS_SHIFT), jnp.asarray(LPIPS_SCALE)
    feats0 = net((x0 - shift) / scale)
    feats1 = net((x1 - shift) / scale)
    total = 0.0
    for l, (f0, f1) in enumerate(zip(feats0, feats1)):
      diff = (_normalize_channels(f0) - _normalize_channels(f1)) ** 2  # [N, h, w, C_l]
      # 1×1 conv without bias to one channel, then the spatial mean.
      lin = nn.Conv(1, (1, 1), use_bias=False, name=f'lin{l}')(diff)
      total = total + jnp.mean(lin, axis=(1, 2, 3))
    return total


def _require(state: Mapping[str, np.ndarray], keys: list[str], what: str) -> None:
  missing = [k for k in keys if k not in state]
  if missing:
    raise KeyError(f'{what} state dict lacks {missing}; present keys: {sorted(state)[:20]}...')


def load_alexnet_params(path_or_state_dict: str | os.PathLike | StateDict) -> dict:
  """Maps torchvision's alexnet state dict onto `AlexNetFeatures` params.

  Args:
    path_or_state_dict: a .pth path (read with torch) or a dict of arrays with
      keys `features.{0,3,6,8,10}.{weight,bias}`; `classifier.*` is ignored.

  Returns:
    {'features_0': {'kernel': HWIO, 'bias': ...}, ...}.

  Raises:
    KeyError: naming missing keys, or `features.*` keys that map to nothing.
    ValueError: on a tensor of the wrong shape.
  """
  state = as_numpy_state_dict(path_or_state_dict)
  wanted = [f'features.{c[0]}.{leaf}' for c in ALEX_CONVS for leaf in ('weight', 'bias')]
  _require(state, wanted, 'AlexNet')
  unmapped = [k for k in state if k.startswith('features.') and k not in wanted]
  if unmapped:
    raise KeyError(f'AlexNet state dict has unmapped keys {unmapped}')
  params, cin = {}, 3
  for idx, ch, k, _, _ in ALEX_CONVS:
    w, b = np.asarray(state[f'features.{idx}.weight']), np.asarray(state[f'features.{idx}.bias'])
    if w.shape != (ch, cin, k, k) or b.shape != (ch,):
      raise ValueError(f'features.{idx}: got {w.shape}/{b.shape}, want {(ch, cin, k, k)}/({ch},)')
    params[f'features_{idx}'] = {'kernel': w.transpose(2, 3, 1, 0).astype(np.float32),
                                 'bias': b.astype(np.float32)}
    cin = ch
  return params


def load_lpips_linear_params(path_or_state_dict: str | os.PathLike | StateDict) -> dict:
  """Maps the lpips v0.1 `alex.pth` (lin0..lin4.model.1.weight, [1, C, 1, 1]) onto params.

  Raises:
    KeyError: naming missing or unmapped keys.
    ValueError: on a tensor of the wrong shape.
  """
  state = as_numpy_state_dict(path_or_state_dict)
  wanted = [f'lin{l}.model.1.weight' for l in range(len(ALEX_CHANNELS))]
  _require(state, wanted, 'LPIPS linear')
  unmapped = [k for k in state if k not in wanted]
  if unmapped:
    raise KeyError(f'LPIPS linear state dict has unmapped keys {unmapped}')
  params = {}
  for l, ch in enumerate(ALEX_CHANNELS):
    w = np.asarray(state[f'lin{l}.model.1.weight'])
    if w.shape != (1, ch, 1, 1):
      raise ValueError(f'lin{l}.model.1.weight: got {w.shape}, want {(1, ch, 1, 1)}')
    params[f'lin{l}'] = {'kernel': w.transpose(2, 3, 1, 0).astype(np.float32)}
  return params


def load_lpips_params(alexnet: str | os.PathLike | StateDict, linear: str | os.PathLike | StateDict) -> dict:
  """Full LPIPS params from the two checkpoints, for `LPIPS().apply({'params': ...})`."""
  return {'net': load_alexnet_params(alexnet), **load_lpips_linear_params(linear)}


def make_lpips_fn(params: Mapping[str, Any]) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """A jitted `lpips(x0, x1) -> [N]` for [N, H, W, 3] images in [-1, 1]."""
  model = LPIPS()
  return jax.jit(lambda x0, x1: model.apply({'params': params}, x0, x1))


def diversity_score(pairs_a: np.ndarray, pairs_b: np.ndarray,
                    lpips_fn: Callable[[jax.Array, jax.Array], jax.Array],
                    batch_size: int = 32) -> tuple[float, float]:
  """LPIPS between two samples of each layout: mean and standard deviation.

  Args:
    pairs_a: [N, H, W, 3] first samples, in [-1, 1] as the generator outputs
      them (uint8 is mapped to [-1, 1]).
    pairs_b: [N, H, W, 3] second samples of the same layouts.
    lpips_fn: e.g. `make_lpips_fn(load_lpips_params(...))`.
    batch_size: pairs per call.

  Returns:
    (mean, std) over the N pairs; std is unbiased, as torch's `.std()` in the
    official DSscore.
  """
  def to_pm1(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    return x.astype(np.float32) / 127.5 - 1.0 if x.dtype == np.uint8 else x.astype(np.float32)

  a, b = to_pm1(pairs_a), to_pm1(pairs_b)
  if a.shape != b.shape:
    raise ValueError(f'Pairs differ in shape: {a.shape} vs {b.shape}.')
  dists = []
  for i in range(0, a.shape[0], batch_size):
    xa, xb = a[i:i + batch_size], b[i:i + batch_size]
    valid = xa.shape[0]
    if valid < batch_size:  # pad the last batch: one compiled shape for every call
      pad = ((0, batch_size - valid),) + ((0, 0),) * (a.ndim - 1)
      xa, xb = np.pad(xa, pad), np.pad(xb, pad)
    dists.append(np.asarray(lpips_fn(xa, xb))[:valid])
  dists = np.concatenate(dists)
  std = float(dists.std(ddof=1)) if dists.size > 1 else 0.0
  return float(dists.mean()), std
