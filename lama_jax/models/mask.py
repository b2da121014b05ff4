"""Layout-to-mask: MaskRegressNet, masks_to_layout and LAMA (Locality-Aware Mask Adaption, Eq. 1–4)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from lama_jax.models.layers import (EPS_DEFAULT, BatchNorm, Dtype, GroupNorm, SNConv, SNDense,
                                    leaky_relu)
from lama_jax.models.numerics import pairwise_broadcast
from lama_jax.models.resize import resize_bilinear, tent, upcast

_HIGHEST = jax.lax.Precision.HIGHEST


def masks_to_layout(boxes: jax.Array, masks: jax.Array, height: int, width: int | None = None
                    ) -> jax.Array:
  """Places each object's mask into its box (the official bilinear `grid_sample`, align_corners=True).

  For output column j the mask is sampled at u·(M − 1) with u = (j/(W − 1) − x0)/w, zero outside the
  mask. Sampling is separable, so the placement is two small matrix products per object.

  Args:
    boxes: [B, O, 4] normalised (x, y, w, h).
    masks: [B, O, M, M] object masks.
    height: output height; width defaults to it.

  Returns:
    [B, O, height, width].
  """
  width = width or height
  m = masks.shape[-1]
  boxes = upcast(boxes)
  rx = tent(_offsets_to_grid(boxes[..., 0], boxes[..., 2], width, m))  # [B, O, W, M]
  ry = tent(_offsets_to_grid(boxes[..., 1], boxes[..., 3], height, m))  # [B, O, H, M]
  return jnp.einsum('boim,bomn,bojn->boij', ry, upcast(masks), rx, precision=_HIGHEST)


def _split(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """x = hi + lo exactly, hi on a 2⁻¹⁰ grid: its products with integers below 2¹³ are exact."""
  hi = jnp.round(x * 1024.0) / 1024.0
  return hi, x - hi


def _offsets_to_grid(start: jax.Array, size: jax.Array, n: int, m: int) -> jax.Array:
  """[..., n, m]: u_j·(m − 1) − k, with u_j = (j/(n − 1) − start)/size, the bilinear tent's argument.

  Computed as N / ((n − 1)·size) with N = (m − 1)·j − (m − 1)(n − 1)·start − k(n − 1)·size formed
  (almost) exactly, not from a rounded j/(n − 1): that rounding, times (m − 1)/size, was most of the
  placed masks' float32 error (2x the official code's at 64×64).
  """
  start, size = start[..., None, None], size[..., None, None]
  j = jnp.arange(n, dtype=start.dtype)[:, None]
  k = jnp.arange(m, dtype=start.dtype)[None, :]
  if n == 1:
    return -start / size * (m - 1) - k
  rows, cols = (m - 1) * (n - 1), k * (n - 1)
  start_hi, start_lo = _split(start)
  size_hi, size_lo = _split(size)
  numerator = ((m - 1) * j - rows * start_hi) - cols * size_hi - (rows * start_lo + cols * size_lo)
  return numerator / ((n - 1) * size)


class MaskRegressBlock(nn.Module):
  """x + α·conv3×3(LeakyReLU(BN(x))), α from 0, conv without bias."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    h = leaky_relu(BatchNorm(name='bn')(x, train))
    h = SNConv(x.shape[-1], 3, use_bias=False, dtype=self.dtype, name='conv')(h, train)
    return x + self.param('alpha', nn.initializers.zeros, ()).astype(h.dtype) * h


class MaskRegressNet(nn.Module):
  """Object features → 32×32 object masks → raw layout mask of the image size.

  fc to hidden×4×4, three MaskRegressBlocks each followed by bilinear ×2, then BN → LeakyReLU →
  conv1×1 → sigmoid. BatchNorm statistics are over every object, padding objects included (official).
  """
  map_size: int  # output resolution (the image size)
  hidden: int = 128  # hidden channels of the mask network
  mask_size: int = 32
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, obj_feat: jax.Array, boxes: jax.Array, train: bool) -> jax.Array:
    """obj_feat [B, O, d], boxes [B, O, 4] → raw mask [B, O, map_size, map_size]."""
    b, o, d = obj_feat.shape
    x = SNDense(self.hidden * 16, dtype=self.dtype, name='fc')(obj_feat.reshape(b * o, d), train)
    # PyTorch views the fc output as (C, 4, 4); keep its ordering so the converter copies as is.
    x = x.reshape(b * o, self.hidden, 4, 4).transpose(0, 2, 3, 1)
    size = 4
    for i in range(3):
      x = MaskRegressBlock(self.dtype, name=f'conv{i + 1}')(x, train)
      size *= 2
      x = resize_bilinear(x, size, size, stencil=not train)
    assert size == self.mask_size, (size, self.mask_size)
    x = leaky_relu(BatchNorm(name='final_bn')(x, train))
    x = SNConv(1, 1, eps=EPS_DEFAULT, dtype=self.dtype, name='final_conv')(x, train)
    masks = jax.nn.sigmoid(upcast(x)).reshape(b, o, size, size)
    return masks_to_layout(boxes, masks, self.map_size)


class MaskAdjustBlock(nn.Module):
  """x + α·conv3×3(LeakyReLU(GroupNorm(4)(x))): LAMA's local aggregation (GN, not BN, on purpose)."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    h = leaky_relu(GroupNorm(4, name='gn')(x, everywhere=not train))
    h = SNConv(x.shape[-1], 3, use_bias=False, eps=EPS_DEFAULT, dtype=self.dtype, name='conv')(
        h, train)
    # α's gradient sums over the whole 64×64 grid of every image: pairwise, to keep float32 precision.
    alpha = self.param('alpha', nn.initializers.zeros, ()).astype(h.dtype)
    return x + pairwise_broadcast(alpha, h.shape) * h


class LAMA(nn.Module):
  """Locality-Aware Mask Adaption: scales each object's raw mask per pixel by tanh(α·E) + 1.

  Q_obj, K_obj = SN Linear(o_i) of width ⌊d/4⌋; pixel query Q_pix = Q_objᵀ·M̃ on a fixed 64×64 grid;
  local query = `local_blocks` MaskAdjustBlocks on it; E = K_obj·Q_loc; the factors are resized back.
  """
  match_dim: int  # ⌊d/4⌋ by default
  local_blocks: int = 2  # 0 = match the pixel query directly (Table 5 ablation)
  grid: int = 64  # resolution the matching runs at (fixed in the official code)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, obj_feat: jax.Array, raw_mask: jax.Array, train: bool
               ) -> tuple[jax.Array, jax.Array]:
    """obj_feat [B, O, d], raw_mask [B, O, S, S] → (adapted mask, scaling factors), both [B, O, S, S]."""
    b, o, s, _ = raw_mask.shape
    key = SNDense(self.match_dim, dtype=self.dtype, name='key_affine')(obj_feat, train)
    query = SNDense(self.match_dim, dtype=self.dtype, name='query_affine')(obj_feat, train)
    grid_mask = resize_bilinear(raw_mask, self.grid, self.grid, h_axis=2, w_axis=3,
                                stencil=not train)
    pixel_query = jnp.einsum('bod,boij->bijd', query, grid_mask.astype(self.dtype))
    local = pixel_query
    for i in range(self.local_blocks):
      local = MaskAdjustBlock(self.dtype, name=f'query_local_{i}')(local, train)
    energy = upcast(jnp.einsum('bod,bijd->boij', key, local))
    alpha = jnp.clip(self.param('alpha', nn.initializers.zeros, ()), -1.0, 1.0)
    alpha = pairwise_broadcast(alpha, energy.shape)  # its gradient sums over every grid pixel
    # tanh(αE) + 1 written as 2·sigmoid(2αE): the same function without the cancellation of tanh + 1
    # where tanh ≈ −1, which float32 would otherwise amplify through the mask normalisation.
    factors = resize_bilinear(2.0 * jax.nn.sigmoid(2.0 * alpha * energy), s, s, h_axis=2, w_axis=3,
                              stencil=not train)
    return raw_mask * factors, factors
