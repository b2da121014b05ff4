"""The LAMA generator: layout (boxes, labels) + noise → image, adapted mask, raw mask."""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lama_jax.models.blocks import ResBlockG
from lama_jax.models.init import orthogonal
from lama_jax.models.layers import (PHASES, PRESCALED, BatchNorm, Dtype, SNConv, SNDense, leaky_relu,
                                    prescale_spectral)
from lama_jax.models.mask import LAMA, MaskRegressNet
from lama_jax.models.resize import upcast
from lama_jax.models.sampling_forms import materialize, upsampled_form_pays
from lama_jax.models.upsampled_conv import upsampling_phases

BLOCK = 'res'  # the blocks are res0, res1, ...; each upsamples ×2 into its conv1


class StyleMapping(nn.Module):
  """z → style: SN Linear → LeakyReLU → SN Linear → LeakyReLU → SN Linear, all z_dim wide."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    d = z.shape[-1]
    h = leaky_relu(SNDense(d, dtype=self.dtype, name='fc0')(z, train))
    h = leaky_relu(SNDense(d, dtype=self.dtype, name='fc1')(h, train))
    return SNDense(d, dtype=self.dtype, name='fc2')(h, train)


class Generator(nn.Module):
  """One generator for every resolution; sizes come from `channels` and `embed_dim`.

  Object feature o_i = [label_emb, z_i, w_i, h_i] drives the masks; style w_i = [label_emb,
  mapping(z_i)] drives the ISLA-Norms. Blocks upsample ×2 from 4×4, so the image side is
  4·2^(len(channels) − 1).
  """
  channels: Sequence[int]  # channel multipliers of ch, from the 4×4 input to the last block
  ch: int = 64  # base width
  num_classes: int = 184  # including 0 = padding (__image__)
  embed_dim: int = 128  # label embedding width
  z_dim: int = 128
  mask_hidden: int = 128  # width of MaskRegressNet
  mask_adaption: bool = True  # LAMA on/off (Table 5)
  lama_local_blocks: int = 2  # 0 = pixel query only (Table 5)
  norm: str = 'bgn'  # 'bgn' | 'bn' | 'gn' inside ISLA-Norm (Table 5)
  noise: bool = True  # noise injection (Table 5)
  dtype: Dtype = jnp.float32  # computation dtype; parameters stay float32

  @property
  def image_size(self) -> int:
    return 4 * 2 ** (len(self.channels) - 1)

  def _noise_maps(self, batch: int, train: bool) -> list[jax.Array]:
    """Two N(0, 1) maps [B, r, r, 1] per block (r its output side), drawn in one call.

    One draw instead of one per layer: each random call site is a kernel XLA must compile.
    """
    sides = [8 * 2 ** i for i in range(len(self.channels) - 1) for _ in range(2)]
    flat = jax.random.normal(self.make_rng('noise'), (batch, sum(r * r for r in sides)))
    if not train:  # sampling: drawn once, not once per channel it is added to
      flat = materialize(flat)
    maps, start = [], 0
    for r in sides:
      maps.append(flat[:, start:start + r * r].reshape(batch, r, r, 1))
      start += r * r
    return maps

  @nn.compact
  def __call__(self, z_obj: jax.Array, boxes: jax.Array, labels: jax.Array, z_im: jax.Array,
               train: bool = False, apply_tanh: bool = True, masks: jax.Array | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Generates images.

    Args:
      z_obj: [B, O, z_dim] per-object noise.
      boxes: [B, O, 4] normalised (x, y, w, h); padding objects lie outside the image.
      labels: [B, O] int category ids, 0 = padding.
      z_im: [B, z_dim] image noise.
      train: BatchNorm batch statistics and one spectral-norm power iteration (mutable state).
      apply_tanh: False returns the pre-tanh output (for numerical comparisons).
      masks: [B, O, H, W] semantic masks that replace the layout-to-mask stage, for the mask-to-image
        experiment of Sec. 3 (trained on ground-truth masks); the mask network is then not used.

    Returns:
      image [B, H, W, 3] in [−1, 1], adapted mask [B, O, H, W] (unnormalised, as the official
      generator returns it) and raw mask [B, O, H, W].
    """
    b, o, _ = z_obj.shape
    size = self.image_size
    z_obj = upcast(z_obj)
    emb = nn.Embed(self.num_classes, self.embed_dim, embedding_init=orthogonal,
                   name='label_embedding')(labels)
    obj_feat = jnp.concatenate([emb, z_obj, upcast(boxes[..., 2:])], axis=-1)
    if masks is not None:
      raw_mask = mask = upcast(masks)
    else:
      raw_mask = MaskRegressNet(size, self.mask_hidden, dtype=self.dtype, name='mask_regress')(
          obj_feat, boxes, train)
      mask = raw_mask
      if self.mask_adaption:
        lama = LAMA(obj_feat.shape[-1] // 4, self.lama_local_blocks, dtype=self.dtype, name='lama')
        mask, _ = lama(obj_feat, raw_mask, train)
    style = StyleMapping(self.dtype, name='style_mapping')(z_obj.reshape(b * o, -1), train)
    w = jnp.concatenate([emb, upcast(style.reshape(b, o, -1))], axis=-1)

    c0 = self.channels[0] * self.ch
    x = SNDense(4 * 4 * c0, dtype=self.dtype, name='fc')(upcast(z_im), train)
    x = x.reshape(b, c0, 4, 4).transpose(0, 2, 3, 1)  # PyTorch's (C, 4, 4) view, to NHWC
    noise = self._noise_maps(b, train) if self.noise else None
    for i, mult in enumerate(self.channels[1:]):
      x = ResBlockG(mult * self.ch, upsample=True, norm=self.norm, noise=self.noise,
                    dtype=self.dtype, name=f'{BLOCK}{i}')(
                        x, w, mask, noise[2 * i:2 * i + 2] if noise else (None, None), train)
    x = leaky_relu(BatchNorm(name='final_bn')(x, train))
    x = upcast(SNConv(3, 3, dtype=self.dtype, name='final_conv')(x, train))
    image = jnp.tanh(x) if apply_tanh else x
    return image, mask, raw_mask


def sampling_variables(variables: dict[str, Any]) -> dict[str, Any]:
  """A generator's variables made ready for repeated sampling (eval mode); the same outputs.

  `prescale_spectral`'s divided weights, and on CPU each block's conv1 phase kernels
  (`upsampled_conv.upsampling_phases`), with which the blocks run conv1 at the input's resolution
  (without them, as upsample → convolution). Jit it.
  """
  variables = prescale_spectral(variables)
  if not upsampled_form_pays():
    return variables
  prescaled = dict(variables[PRESCALED])
  for name, layers in prescaled.items():
    if name.startswith(BLOCK) and 'conv1' in layers:
      conv1 = layers['conv1']
      prescaled[name] = {**layers, 'conv1': {**conv1, PHASES: upsampling_phases(conv1['weight'])}}
  return {**variables, PRESCALED: prescaled}
