"""Residual blocks of the generator and the discriminator (ReZero-style α on the residual branch)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lama_jax.models.layers import Dtype, ISLANorm, NoiseInjection, SNConv, leaky_relu
from lama_jax.models.resize import avg_pool2, upsample_nearest


class ResBlockG(nn.Module):
  """Generator block: α·residual(x) + shortcut(x), α starts at 0 and is not clamped.

  residual: norm → LeakyReLU → up ×2 → conv3×3 → noise → norm → LeakyReLU → conv3×3 → noise;
  shortcut (when the shape changes): up ×2 → conv1×1, computed as conv1×1 → up ×2 (the same function).
  """
  out_ch: int  # output channels
  upsample: bool = True
  norm: str = 'bgn'  # ISLA-Norm variant
  noise: bool = True  # noise injection after each conv
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, w: jax.Array, mask: jax.Array, noise: tuple[jax.Array, jax.Array],
               train: bool) -> jax.Array:
    """x [B,H,W,C]; w [B,O,num_w]; mask [B,O,Hm,Wm]; noise: two [B,2H,2W,1] maps (or H×W)."""
    in_ch = x.shape[-1]
    h = ISLANorm(self.norm, self.dtype, name='b1')(x, w, mask, train)
    h = leaky_relu(h)
    h = SNConv(self.out_ch, 3, use_bias=False, dtype=self.dtype, name='conv1')(
        h, train, upsampled=self.upsample)
    h = NoiseInjection(self.noise, name='noise1')(h, noise[0])
    h = ISLANorm(self.norm, self.dtype, name='b2')(h, w, mask, train)
    h = leaky_relu(h)
    h = SNConv(self.out_ch, 3, use_bias=False, dtype=self.dtype, name='conv2')(h, train)
    h = NoiseInjection(self.noise, name='noise2')(h, noise[1])

    sc = x
    if in_ch != self.out_ch or self.upsample:
      # A 1×1 convolution commutes with nearest upsampling: convolved first, on a quarter of the pixels.
      sc = SNConv(self.out_ch, 1, dtype=self.dtype, name='c_sc')(sc, train)
      if self.upsample:
        sc = upsample_nearest(sc)
    alpha = self.param('alpha', nn.initializers.zeros, ())
    return alpha.astype(h.dtype) * h + sc


class ResBlockD(nn.Module):
  """Discriminator block: clamp(α, −1, 1)·residual(x) + shortcut(x).

  residual: LeakyReLU → conv3×3 → LeakyReLU → conv3×3 → avg-pool; shortcut: conv1×1 → avg-pool,
  computed as avg-pool → conv1×1: both are linear and commute (the bias too), and the convolution
  then runs on a quarter of the pixels.
  """
  out_ch: int
  downsample: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    in_ch = x.shape[-1]
    h = SNConv(self.out_ch, 3, dtype=self.dtype, name='conv1')(leaky_relu(x), train)
    h = SNConv(self.out_ch, 3, dtype=self.dtype, name='conv2')(leaky_relu(h), train)
    if self.downsample:
      h = avg_pool2(h)
    sc = avg_pool2(x) if self.downsample else x
    if in_ch != self.out_ch or self.downsample:
      sc = SNConv(self.out_ch, 1, dtype=self.dtype, name='c_sc')(sc, train)
    alpha = jnp.clip(self.param('alpha', nn.initializers.zeros, ()), -1.0, 1.0)
    return alpha.astype(h.dtype) * h + sc


class OptimizedBlock(nn.Module):
  """First discriminator block: conv3×3 → LeakyReLU → conv3×3 (→ pool), shortcut pool → conv1×1."""
  out_ch: int
  downsample: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    h = leaky_relu(SNConv(self.out_ch, 3, dtype=self.dtype, name='conv1')(x, train))
    h = SNConv(self.out_ch, 3, dtype=self.dtype, name='conv2')(h, train)
    sc = x
    if self.downsample:
      h = avg_pool2(h)
      sc = avg_pool2(sc)
    sc = SNConv(self.out_ch, 1, dtype=self.dtype, name='c_sc')(sc, train)
    alpha = jnp.clip(self.param('alpha', nn.initializers.zeros, ()), -1.0, 1.0)
    return alpha.astype(h.dtype) * h + sc
