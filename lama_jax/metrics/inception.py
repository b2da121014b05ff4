"""The FID Inception-v3 (TTUR graph, as ported by pytorch-fid) in Flax, NHWC.

The network is torchvision's Inception-v3 with the blocks that pytorch-fid
patches to match TensorFlow's graph: average pools that ignore padding
(`count_include_pad=False`) in the A, C and E blocks, and a max pool in the
last E block (Mixed_7c). Its output is the 2048-d pool_3 feature.

Weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`; we never
download them. `load_inception_params` maps that state dict onto our variables.

Note: the official LAMA scores feed PNGs to the TensorFlow graph, which resizes
with TF's own bilinear op; pytorch-fid (and we) resize with PyTorch's bilinear,
align_corners=False. FIDs differ slightly between the two (pytorch-fid's README).
"""
from __future__ import annotations

import functools
import os
from typing import Any, Mapping, Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from lama_jax.conversion.torch_io import StateDict, as_numpy_state_dict
from lama_jax.models.resize import resize_bilinear

FEATURE_DIM = 2048
INPUT_SIZE = 299

Padding = tuple[tuple[int, int], tuple[int, int]]


def _pad(padding: int | tuple[int, int]) -> Padding:
  ph, pw = (padding, padding) if isinstance(padding, int) else padding
  return ((ph, ph), (pw, pw))


class BasicConv(nn.Module):
  """Conv (no bias) → BatchNorm (eps 1e-3, running statistics) → ReLU."""
  features: int  # output channels
  kernel: int | tuple[int, int] = 1  # kernel size (square or (kh, kw))
  stride: int = 1  # spatial stride
  padding: int | tuple[int, int] = 0  # symmetric zero padding (p or (ph, pw))
  dtype: Any = jnp.float32  # computation dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = (self.kernel, self.kernel) if isinstance(self.kernel, int) else self.kernel
    x = nn.Conv(self.features, kernel, strides=self.stride, padding=_pad(self.padding),
                use_bias=False, dtype=self.dtype, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, dtype=self.dtype, name='bn')(x)
    return nn.relu(x)


def _avg_pool3(x: jax.Array) -> jax.Array:
  # TensorFlow's average pool leaves the zero padding out of the mean.
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


class InceptionA(nn.Module):
  """Mixed_5b/5c/5d (FIDInceptionA)."""
  pool_features: int  # channels of the pooled branch
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = lambda f, k, p, name: BasicConv(f, k, padding=p, dtype=self.dtype, name=name)
    b1 = conv(64, 1, 0, 'branch1x1')(x)
    b5 = conv(48, 1, 0, 'branch5x5_1')(x)
    b5 = conv(64, 5, 2, 'branch5x5_2')(b5)
    b3 = conv(64, 1, 0, 'branch3x3dbl_1')(x)
    b3 = conv(96, 3, 1, 'branch3x3dbl_2')(b3)
    b3 = conv(96, 3, 1, 'branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, 1, 0, 'branch_pool')(_avg_pool3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: grid reduction 35 → 17."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b3 = BasicConv(384, 3, stride=2, dtype=self.dtype, name='branch3x3')(x)
    bd = BasicConv(64, 1, dtype=self.dtype, name='branch3x3dbl_1')(x)
    bd = BasicConv(96, 3, padding=1, dtype=self.dtype, name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, 3, stride=2, dtype=self.dtype, name='branch3x3dbl_3')(bd)
    bp = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b..6e (FIDInceptionC): factorised 7×7 convolutions."""
  channels_7x7: int  # width of the 7×7 branches
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c7 = self.channels_7x7
    conv = lambda f, k, p, name: BasicConv(f, k, padding=p, dtype=self.dtype, name=name)
    b1 = conv(192, 1, 0, 'branch1x1')(x)
    b7 = conv(c7, 1, 0, 'branch7x7_1')(x)
    b7 = conv(c7, (1, 7), (0, 3), 'branch7x7_2')(b7)
    b7 = conv(192, (7, 1), (3, 0), 'branch7x7_3')(b7)
    bd = conv(c7, 1, 0, 'branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), (3, 0), 'branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), (0, 3), 'branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), (3, 0), 'branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), (0, 3), 'branch7x7dbl_5')(bd)
    bp = conv(192, 1, 0, 'branch_pool')(_avg_pool3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: grid reduction 17 → 8."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = lambda f, k, p, s, name: BasicConv(f, k, stride=s, padding=p, dtype=self.dtype,
                                              name=name)
    b3 = conv(192, 1, 0, 1, 'branch3x3_1')(x)
    b3 = conv(320, 3, 0, 2, 'branch3x3_2')(b3)
    b7 = conv(192, 1, 0, 1, 'branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), (0, 3), 1, 'branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), (3, 0), 1, 'branch7x7x3_3')(b7)
    b7 = conv(192, 3, 0, 2, 'branch7x7x3_4')(b7)
    bp = nn.max_pool(x, (3, 3), strides=(2, 2))
    return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (FIDInceptionE_1, avg pool) and Mixed_7c (FIDInceptionE_2, max pool)."""
  use_max_pool: bool = False  # the TF graph's Mixed_7c pools with max, not average
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = lambda f, k, p, name: BasicConv(f, k, padding=p, dtype=self.dtype, name=name)
    b1 = conv(320, 1, 0, 'branch1x1')(x)
    b3 = conv(384, 1, 0, 'branch3x3_1')(x)
    b3 = jnp.concatenate([conv(384, (1, 3), (0, 1), 'branch3x3_2a')(b3),
                          conv(384, (3, 1), (1, 0), 'branch3x3_2b')(b3)], axis=-1)
    bd = conv(448, 1, 0, 'branch3x3dbl_1')(x)
    bd = conv(384, 3, 1, 'branch3x3dbl_2')(bd)
    bd = jnp.concatenate([conv(384, (1, 3), (0, 1), 'branch3x3dbl_3a')(bd),
                          conv(384, (3, 1), (1, 0), 'branch3x3dbl_3b')(bd)], axis=-1)
    if self.use_max_pool:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    else:
      pooled = _avg_pool3(x)
    bp = conv(192, 1, 0, 'branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """Inception-v3 up to pool_3, returning [N, 2048] features.

  Input: [N, H, W, 3] RGB, floats in [0, 1] (or uint8, divided by 255).
  """
  resize_input: bool = True  # bilinear resize to 299×299 first, as pytorch-fid
  normalize_input: bool = True  # map [0, 1] to the [-1, 1] the weights expect
  dtype: Any = jnp.float32  # computation dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    x = x.astype(jnp.float32)
    if self.resize_input:
      x = resize_bilinear(x, INPUT_SIZE, INPUT_SIZE)
    if self.normalize_input:
      x = 2.0 * x - 1.0
    x = x.astype(self.dtype)
    kw = dict(dtype=self.dtype)
    x = BasicConv(32, 3, stride=2, name='Conv2d_1a_3x3', **kw)(x)  # [N, 149, 149, 32]
    x = BasicConv(32, 3, name='Conv2d_2a_3x3', **kw)(x)  # [N, 147, 147, 32]
    x = BasicConv(64, 3, padding=1, name='Conv2d_2b_3x3', **kw)(x)  # [N, 147, 147, 64]
    x = nn.max_pool(x, (3, 3), strides=(2, 2))  # [N, 73, 73, 64]
    x = BasicConv(80, 1, name='Conv2d_3b_1x1', **kw)(x)
    x = BasicConv(192, 3, name='Conv2d_4a_3x3', **kw)(x)  # [N, 71, 71, 192]
    x = nn.max_pool(x, (3, 3), strides=(2, 2))  # [N, 35, 35, 192]
    x = InceptionA(32, name='Mixed_5b', **kw)(x)  # [N, 35, 35, 256]
    x = InceptionA(64, name='Mixed_5c', **kw)(x)  # [N, 35, 35, 288]
    x = InceptionA(64, name='Mixed_5d', **kw)(x)
    x = InceptionB(name='Mixed_6a', **kw)(x)  # [N, 17, 17, 768]
    x = InceptionC(128, name='Mixed_6b', **kw)(x)
    x = InceptionC(160, name='Mixed_6c', **kw)(x)
    x = InceptionC(160, name='Mixed_6d', **kw)(x)
    x = InceptionC(192, name='Mixed_6e', **kw)(x)
    x = InceptionD(name='Mixed_7a', **kw)(x)  # [N, 8, 8, 1280]
    x = InceptionE(name='Mixed_7b', **kw)(x)  # [N, 8, 8, 2048]
    x = InceptionE(use_max_pool=True, name='Mixed_7c', **kw)(x)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))  # [N, 2048] pool_3


# Suffix of a PyTorch key → (Flax collection, leaf name, transform).
_LEAF_MAP = {
    'conv.weight': ('params', ('conv', 'kernel'), lambda w: np.transpose(w, (2, 3, 1, 0))),
    'bn.weight': ('params', ('bn', 'scale'), None),
    'bn.bias': ('params', ('bn', 'bias'), None),
    'bn.running_mean': ('batch_stats', ('bn', 'mean'), None),
    'bn.running_var': ('batch_stats', ('bn', 'var'), None),
}
# Tensors of the checkpoint that pool_3 features never use.
_IGNORED_SUFFIXES = ('num_batches_tracked',)
_IGNORED_PREFIXES = ('fc.', 'AuxLogits.')
# The TF graph's classifier: 1008 classes. torchvision's ImageNet Inception-v3 has the same tensor
# names but 1000 classes (and other features): FIDs with it are not comparable.
FID_CLASSES = 1008


@functools.lru_cache(maxsize=1)
def _variable_shapes() -> dict[tuple[str, ...], Any]:
  return traverse_util.flatten_dict(jax.eval_shape(
      FIDInceptionV3(resize_input=False).init, jax.random.key(0),
      jnp.zeros((1, 75, 75, 3), jnp.float32)))


def _first(names: list[str], count: int = 5) -> str:
  """The first `count` of `names` and how many more, for a message of one line."""
  more = f' and {len(names) - count} more' if len(names) > count else ''
  return f'{len(names)} ({", ".join(names[:count])}{more})' if names else 'none'


def load_inception_params(path_or_state_dict: str | os.PathLike | StateDict) -> dict:
  """Maps pytorch-fid's Inception state dict onto `FIDInceptionV3` variables.

  Args:
    path_or_state_dict: a path to `pt_inception-2015-12-05-6726825d.pth` (read
      with torch, imported lazily) or a dict of arrays with the same keys.

  Returns:
    {'params': ..., 'batch_stats': ...} for `FIDInceptionV3.apply`.

  Raises:
    KeyError: naming every key of the state dict that maps to nothing, and every
      variable of the model that no key fills.
    ValueError: naming any tensor whose shape does not match, or torchvision's ImageNet
      Inception-v3 (its 1000-class fc), whose features are not the FID ones.
  """
  state = as_numpy_state_dict(path_or_state_dict)
  fc = state.get('fc.weight')
  if fc is not None and np.shape(fc)[0] != FID_CLASSES:
    raise ValueError(f'an Inception-v3 with {np.shape(fc)[0]} classes (fc.weight), not the FID '
                     f"Inception's {FID_CLASSES} (torchvision's ImageNet weights?); FID needs "
                     "pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
  template = _variable_shapes()
  flat: dict[tuple[str, ...], np.ndarray] = {}
  unmapped, bad_shape = [], []
  for key, value in state.items():
    if key.endswith(_IGNORED_SUFFIXES) or key.startswith(_IGNORED_PREFIXES):
      continue
    parts = key.split('.')
    suffix = '.'.join(parts[-2:])
    if suffix not in _LEAF_MAP:
      unmapped.append(key)
      continue
    collection, leaf, transform = _LEAF_MAP[suffix]
    path = (collection, *parts[:-2], *leaf)
    if path not in template:
      unmapped.append(key)
      continue
    value = np.asarray(value, np.float32)
    value = transform(value) if transform is not None else value
    if value.shape != template[path].shape:
      bad_shape.append(f'{key}: {value.shape} vs {template[path].shape}')
    flat[path] = value
  missing = ['/'.join(p) for p in template if p not in flat]
  if unmapped or missing:  # another network's weights: hundreds of names, so the first few
    raise KeyError(f'Inception state dict does not match the model. Unmapped keys: '
                   f'{_first(unmapped)}; variables with no key: {_first(missing)}')
  if bad_shape:
    raise ValueError(f'Inception tensors with wrong shapes: {bad_shape}')
  return traverse_util.unflatten_dict(flat)


class InceptionFeatureExtractor:
  """Jitted, batched pool_3 features of uint8 images.

  Example:
    extractor = InceptionFeatureExtractor(load_inception_params(path))
    acts = extractor(images)  # [N, H, W, 3] uint8 → [N, 2048] float64
  """

  def __init__(self, variables: Mapping[str, Any], batch_size: int = 50,
               dtype: Any = jnp.float32, resize_input: bool = True):
    """Builds the extractor.

    Args:
      variables: {'params', 'batch_stats'} from `load_inception_params`.
      batch_size: images per forward pass; the last batch is zero-padded so one
        compiled shape serves every batch.
      dtype: computation dtype (float32 keeps FIDs comparable).
      resize_input: resize to 299×299 first (leave on for FID).
    """
    # On the device once, not copied in with every batch.
    self.variables = jax.device_put(variables)
    self.batch_size = batch_size
    model = FIDInceptionV3(resize_input=resize_input, dtype=dtype)
    self._forward = jax.jit(lambda v, x: model.apply(v, x))

  def __call__(self, images: np.ndarray | Sequence[np.ndarray], progress: bool = True) -> np.ndarray:
    """Pool_3 features of [N, H, W, 3] images (uint8, or floats in [0, 1])."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f'Expected [N, H, W, 3] images, got {images.shape}.')
    n = images.shape[0]
    out = np.empty((n, FEATURE_DIM), np.float64)
    for start in tqdm(range(0, n, self.batch_size), desc='Inception', disable=not progress,
                      unit='batch'):
      batch = images[start:start + self.batch_size]
      pad = self.batch_size - batch.shape[0]
      if pad:
        batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
      if batch.dtype == np.uint8:
        # Converting on the host keeps one compiled program for uint8 and float inputs.
        batch = batch.astype(np.float32) / 255.0
      feats = self._forward(self.variables, jnp.asarray(batch, jnp.float32))
      out[start:start + self.batch_size] = np.asarray(feats)[:self.batch_size - pad]
    return out

  extract = __call__
