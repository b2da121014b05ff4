"""Layers of the official model: spectral-norm Dense/Conv/Embed, BatchNorm, GroupNorm, noise, ISLA-Norm.

Variable collections:
  params       trainable parameters (float32).
  spectral     spectral-norm state per layer: `u`, `v` (power-iteration vectors) and `sigma`.
  batch_stats  BatchNorm running `mean` and `var`.
  prescaled    inference only, optional: each spectral-norm layer's eval-mode weight W/sigma, divided
               once (`prescale_spectral`) instead of in every call of a sampling program, and for
               convolutions of an upsampled input their `phases` (`upsampled_conv.upsampling_phases`).

Spectral norm follows `torch.nn.utils.spectral_norm`: one power iteration per training forward (u and v
updated without gradient, sigma = uᵀWv with gradient through W), none in eval, where sigma is recomputed
from the stored u, v and the current W. The weight matrix is `[out, fan_in]` with fan_in ordered as our
kernel's leading axes (kh, kw, in); the converter reorders PyTorch's (in, kh, kw) `v` accordingly.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lama_jax.models import init
from lama_jax.models.channels import broadcast_channels
from lama_jax.models.init import orthogonal
from lama_jax.models.numerics import pairwise_broadcast, pairwise_mean
from lama_jax.models.resize import resize_bilinear, upcast, upsample_nearest
from lama_jax.models.sampling_forms import conv3x3_few_outputs, materialize, tap_form_pays
from lama_jax.models.upsampled_conv import (conv3x3_of_upsampled, train_form_pays,
                                            upsampling_phases)
from lama_jax.models.winograd import conv3x3_winograd, winograd_pays

Dtype = Any

LEAKY_SLOPE = 0.01
EPS_CONV = 1e-4  # the official `conv2d` helper: spectral_norm(conv, eps=1e-4)
EPS_DEFAULT = 1e-12  # torch's default: Linear, Embedding, the mask 1×1 conv, LAMA convs
GROUP_NORM_GROUPS = 4  # ISLA-Norm's group norm ('bgn', 'gn'): the channels split into 4 groups

def leaky_relu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, LEAKY_SLOPE)


def _l2_normalize(x: jax.Array, eps: float) -> jax.Array:
  # torch.nn.functional.normalize: x / max(‖x‖, eps).
  return x / jnp.maximum(jnp.linalg.norm(x), eps)


PRESCALED = 'prescaled'
PHASES = 'phases'  # prescaled[layer]: `upsampling_phases` of its weight


def sigma_of(w_t: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
  """sigma = uᵀ·W·v for W = w_tᵀ (`spectral_sigma`'s estimate from given u, v)."""
  return jnp.dot(jnp.dot(v, w_t), u)


def spectral_sigma(module: nn.Module, weight: jax.Array, train: bool, eps: float) -> jax.Array:
  """The power-iteration estimate sigma of the largest singular value of `weight` (with gradient).

  Args:
    module: the calling module; the state lives in its `spectral` collection.
    weight: parameter whose last axis is the output axis (kernel layout `[..., out]`).
    train: run one power iteration and store u, v, sigma.
    eps: normalisation epsilon of the power iteration.
  """
  # PyTorch's matrix is W = [out, fan_in]; we keep its transpose w_t = [fan_in, out], the kernel's own
  # layout, and contract on the right axis (W·v = v·w_t, Wᵀ·u = w_t·u): no transposed copy of W.
  w_t = weight.reshape(-1, weight.shape[-1])
  in_dim, out_dim = w_t.shape

  def init_vector(n):
    return lambda: _l2_normalize(init.normal(module.make_rng('params'), (n,)), eps)

  u_var = module.variable('spectral', 'u', init_vector(out_dim))
  v_var = module.variable('spectral', 'v', init_vector(in_dim))
  sigma_var = module.variable('spectral', 'sigma', lambda: jnp.ones((), jnp.float32))
  u, v = u_var.value, v_var.value
  if train:
    w_sg = jax.lax.stop_gradient(w_t)
    v = _l2_normalize(jnp.dot(w_sg, u), eps)
    u = _l2_normalize(jnp.dot(v, w_sg), eps)
    u_var.value, v_var.value = u, v
  sigma = sigma_of(w_t, u, v)
  if train:
    sigma_var.value = jax.lax.stop_gradient(sigma)
  return sigma


def spectral_normalize(module: nn.Module, weight: jax.Array, train: bool, eps: float) -> jax.Array:
  """Returns `weight / sigma` (see `spectral_sigma`)."""
  return weight / spectral_sigma(module, weight, train, eps)


def prescale_spectral(variables: dict[str, Any]) -> dict[str, Any]:
  """`variables` plus a `prescaled` collection: every spectral-norm layer's eval-mode weight.

  In eval mode a layer divides its weight by sigma (from the stored u, v) in every call; a sampling
  program that is called many times with the same variables can read the divided weight instead
  (the layers look for it). The values are those eval mode computes: the same sigma and division.
  Leaves `variables` unchanged; jit it (sigma of every layer in one program).
  """
  prescaled: dict[str, Any] = {}

  def walk(spectral: dict[str, Any], params: dict[str, Any], out: dict[str, Any]) -> None:
    if 'u' in spectral and 'v' in spectral:
      if 'kernel' in params:  # Dense, Conv: the kernel's own [fan_in, out] layout
        kernel = params['kernel']
        sigma = sigma_of(kernel.reshape(-1, kernel.shape[-1]), spectral['u'], spectral['v'])
        out['weight'] = kernel / sigma
      else:  # SNEmbed: normalised over its class axis, i.e. as the matrix tableᵀ
        table = params['embedding']
        out['weight'] = (table.T / sigma_of(table.T, spectral['u'], spectral['v'])).T
      return
    for name, child in spectral.items():
      if isinstance(child, dict):
        walk(child, params[name], out.setdefault(name, {}))

  walk(variables.get('spectral', {}), variables['params'], prescaled)
  return {**variables, PRESCALED: prescaled}


def _prescaled(module: nn.Module, train: bool, name: str = 'weight') -> jax.Array | None:
  """A weight prepared ahead of time for sampling (eval mode only; see `prescaled`), or None."""
  if not train and module.has_variable(PRESCALED, name):
    return module.get_variable(PRESCALED, name)
  return None


def _scale_output(output_elements: int, weight: jax.Array, train: bool) -> bool:
  """Whether to divide a linear layer's output by sigma rather than its weight.

  Both are the same function (the layer is linear in its weight); in the train step the smaller
  tensor is cheaper to scale, and an unscaled weight is shared by every call of the step (one layout
  copy, not one per call): late discriminator convolutions hold 10-20x more weights than outputs.
  In eval mode (sampling) the weight is scaled once per program and the output is not rounded
  twice: scaling the outputs there took the adapted mask from 0.13x to 2.1x the official float32
  error (tests/test_fidelity_mask_precision.py).
  """
  return train and output_elements < weight.size


def _finish(module: nn.Module, y: jax.Array, sigma: jax.Array | None, features: int, dtype: Dtype
            ) -> jax.Array:
  """Divides by sigma (when the weight was not) and adds the bias, in one float32 pass."""
  use_bias = getattr(module, 'use_bias')
  if sigma is None and not use_bias:
    return y
  if sigma is not None:
    y = upcast(y) / sigma
  if use_bias:
    bias = module.param('bias', nn.initializers.zeros, (features,)).astype(y.dtype)
    y = y + broadcast_channels(bias, y.shape)
  return y.astype(dtype)


class SNDense(nn.Module):
  """Spectral-norm Linear; kernel `[in, out]` (PyTorch's weight transposed)."""
  features: int  # output width
  use_bias: bool = True
  eps: float = EPS_DEFAULT  # power-iteration epsilon
  dtype: Dtype = jnp.float32  # computation dtype

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    kernel = self.param('kernel', orthogonal, (x.shape[-1], self.features))
    prescaled = _prescaled(self, train)
    if prescaled is not None:
      y = jnp.dot(x.astype(self.dtype), prescaled.astype(self.dtype))
      return _finish(self, y, None, self.features, self.dtype)
    sigma = spectral_sigma(self, kernel, train, self.eps)
    on_output = _scale_output(x.size // x.shape[-1] * self.features, kernel, train)
    y = jnp.dot(x.astype(self.dtype), (kernel if on_output else kernel / sigma).astype(self.dtype))
    return _finish(self, y, sigma if on_output else None, self.features, self.dtype)


class SNConv(nn.Module):
  """Spectral-norm 2-D convolution, stride 1, 'same' padding; kernel HWIO."""
  features: int  # output channels
  kernel_size: int = 3
  use_bias: bool = True
  eps: float = EPS_CONV  # power-iteration epsilon
  dtype: Dtype = jnp.float32  # computation dtype

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, upsampled: bool = False) -> jax.Array:
    """x [B, H, W, C]; `upsampled`: convolve `upsample_nearest(x, 2)` instead (the output is 2H × 2W)."""
    k = self.kernel_size
    kernel = self.param('kernel', orthogonal, (k, k, x.shape[-1], self.features))
    prescaled = _prescaled(self, train)
    if prescaled is not None:
      sigma, on_output, kernel = None, False, prescaled
    else:
      sigma = spectral_sigma(self, kernel, train, self.eps)
      on_output = _scale_output(x.size // x.shape[-1] * self.features, kernel, train)
      kernel = kernel if on_output else kernel / sigma
    phases = _prescaled(self, train, PHASES) if upsampled else None
    if phases is not None:
      # A generator block's conv1 at the input's resolution, where `generator.sampling_variables`
      # prepared its phase kernels (CPU; models/upsampled_conv.py).
      y = conv3x3_of_upsampled(x.astype(self.dtype), phases.astype(self.dtype))
      return _finish(self, y, sigma if on_output else None, self.features, self.dtype)
    if upsampled and train and train_form_pays(x.shape, self.dtype):
      # The CPU train step: the same form, its phase kernels made from this step's weight.
      y = conv3x3_of_upsampled(x.astype(self.dtype), upsampling_phases(kernel).astype(self.dtype))
      return _finish(self, y, sigma if on_output else None, self.features, self.dtype)
    if upsampled:  # stored once, not recomputed for each of the 4 copies (sampling_forms.materialize)
      x = upsample_nearest(x if train else materialize(x))
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if not train and tap_form_pays(self.features, k):
      y = conv3x3_few_outputs(x, kernel)  # the generator's last layer (models/sampling_forms.py)
    elif train and winograd_pays(x.shape, k, self.dtype):
      y = conv3x3_winograd(x, kernel)  # wide layers on CPU (models/winograd.py)
    else:
      y = jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1),
                                       padding=[(k // 2, k // 2)] * 2,
                                       dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    return _finish(self, y, sigma if on_output else None, self.features, self.dtype)


class SNEmbed(nn.Module):
  """Spectral-norm embedding; table `[num_classes, features]`, normalised over its class axis."""
  num_embeddings: int
  features: int
  eps: float = EPS_DEFAULT

  @nn.compact
  def __call__(self, ids: jax.Array, train: bool) -> jax.Array:
    table = self.param('embedding', orthogonal, (self.num_embeddings, self.features))
    # PyTorch normalises the [num_classes, features] matrix itself (dim 0 is its "output" axis), so the
    # output axis handed to spectral_normalize is the class axis: transpose in, transpose back.
    prescaled = _prescaled(self, train)
    table = (prescaled if prescaled is not None
             else spectral_normalize(self, table.T, train, self.eps).T)
    return jnp.take(table, ids, axis=0)


class BatchNorm(nn.Module):
  """PyTorch BatchNorm2d semantics over all axes but the last (NHWC).

  Batch statistics are biased for normalising and unbiased for the running variance, momentum 0.1.
  Under `jit` with the batch sharded over a mesh, the means are global: SyncBatchNorm for free.
  """
  use_affine: bool = True  # learn weight (scale) and bias
  momentum: float = 0.1
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c = x.shape[-1]
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    xf = upcast(x)
    shape = xf.shape
    if train:
      # Pairwise sums on CPU (models/numerics.py): float32 precision of the statistics and gradients.
      axes = tuple(range(x.ndim - 1))
      mean = pairwise_mean(xf, axes)
      var = pairwise_mean(jnp.square(xf - pairwise_broadcast(mean, shape)), axes)
      n = xf.size // c
      if not self.is_initializing():
        ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
        ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * var * n / max(n - 1, 1)
    else:
      mean, var = ra_mean.value, ra_var.value
    # Broadcasts whose gradients sum pairwise on CPU: their transposes add up every pixel of the batch.
    y = ((xf - pairwise_broadcast(mean, shape)) *
         pairwise_broadcast(jax.lax.rsqrt(var + self.eps), shape))
    if self.use_affine:
      y = y * broadcast_channels(self.param('scale', nn.initializers.ones, (c,)), shape)
      y = y + broadcast_channels(self.param('bias', nn.initializers.zeros, (c,)), shape)
    return y.astype(x.dtype)


def group_norm(x: jax.Array, groups: int = GROUP_NORM_GROUPS, eps: float = 1e-5,
               everywhere: bool = True) -> jax.Array:
  """GroupNorm without affine over an NHWC tensor: channels split into contiguous groups.

  `everywhere`: its statistics summed by halving on every backend (models/numerics.py), as the
  sampling program needs for the official float32 precision; else on CPU only (training).
  """
  b, h, w, c = x.shape
  xf = upcast(x).reshape(b, h, w, groups, c // groups)
  mean = pairwise_mean(xf, (1, 2, 4), keepdims=True, everywhere=everywhere)
  mean = pairwise_broadcast(mean, xf.shape, everywhere=everywhere)
  var = pairwise_mean(jnp.square(xf - mean), (1, 2, 4), keepdims=True, everywhere=everywhere)
  inv = pairwise_broadcast(jax.lax.rsqrt(var + eps), xf.shape, everywhere=everywhere)
  return ((xf - mean) * inv).reshape(b, h, w, c).astype(x.dtype)


class GroupNorm(nn.Module):
  """GroupNorm with a per-channel affine (PyTorch `nn.GroupNorm(groups, C)`)."""
  groups: int = 4

  @nn.compact
  def __call__(self, x: jax.Array, everywhere: bool = True) -> jax.Array:
    """x [B, H, W, C]; `everywhere` as in `group_norm`."""
    c = x.shape[-1]
    y = upcast(group_norm(x, self.groups, everywhere=everywhere))
    y = y * broadcast_channels(self.param('scale', nn.initializers.ones, (c,)), y.shape)
    return (y + broadcast_channels(self.param('bias', nn.initializers.zeros, (c,)), y.shape)
            ).astype(x.dtype)


class NoiseInjection(nn.Module):
  """Adds `softplus(seed_c) · n`, one N(0, 1) noise map per image shared by all channels.

  The noise map is drawn by the caller (the generator draws every block's maps in one call).
  """
  enabled: bool = True  # the Table 5 ablation "no noise" turns it off

  @nn.compact
  def __call__(self, x: jax.Array, noise: jax.Array) -> jax.Array:
    """x [B, H, W, C]; noise [B, H, W, 1]."""
    if not self.enabled:
      return x
    seed = self.param('noise_weight_seed', init.unit_row, (x.shape[-1],))
    return x + (noise * broadcast_channels(jax.nn.softplus(seed), x.shape)).astype(x.dtype)


class ISLANorm(nn.Module):
  """ISLA-Norm with Batch-Group Normalisation (the official SpatialAdaptiveSynBatchGroupNorm2d).

  out = bn + clamp(ρ, 0, 1)·(gn − bn); per-object weight and bias (SN Linear on the style vectors) are
  spread over the image by the mask normalised over objects; result out + clamp(α, −1, 1)·(W·out + B).
  """
  norm: str = 'bgn'  # 'bgn' | 'bn' | 'gn' (Table 5 ablations)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    """x [B,H,W,C]; w [B,O,num_w] style vectors; mask [B,O,Hm,Wm] (unnormalised)."""
    b, h, wd, c = x.shape
    if self.norm == 'gn':
      out = group_norm(x, everywhere=not train)
    else:
      out = BatchNorm(use_affine=False, name='batch_norm2d')(x, train)
      if self.norm == 'bgn':
        rho = jnp.clip(self.param('rho', nn.initializers.constant(0.1), ()), 0.0, 1.0)
        out = out + rho.astype(out.dtype) * (group_norm(x, everywhere=not train) - out)
      elif self.norm != 'bn':
        raise ValueError(f'unknown norm {self.norm!r}: expected bgn, bn or gn')
    mask = upcast(mask)
    mask = mask.transpose(0, 2, 3, 1)  # [B, Hm, Wm, O]
    mask = resize_bilinear(mask, h, wd, stencil=not train)
    mask = mask / (mask.sum(-1, keepdims=True) + 1e-4)
    weight = SNDense(c, dtype=self.dtype, name='weight_proj')(w, train)  # [B, O, C]
    bias = SNDense(c, dtype=self.dtype, name='bias_proj')(w, train)
    mask = mask.astype(self.dtype)
    weight_map = jnp.einsum('bhwo,boc->bhwc', mask, weight)
    bias_map = jnp.einsum('bhwo,boc->bhwc', mask, bias)
    alpha = jnp.clip(self.param('alpha', nn.initializers.zeros, ()), -1.0, 1.0)
    return out + alpha.astype(self.dtype) * (weight_map * out + bias_map)
