"""The combined image + object discriminator (the official CombineDiscriminator{64,128,256})."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from lama_jax.models.blocks import OptimizedBlock, ResBlockD
from lama_jax.models.layers import Dtype, SNDense, SNEmbed, leaky_relu
from lama_jax.models.resize import upcast
from lama_jax.models.roi_align import roi_align


@dataclasses.dataclass(frozen=True)
class ObjectPath:
  """How one ROI path reaches its features: tap an image block, run object blocks, ROI-Align."""
  tap: int  # index of the image-path block whose output is tapped
  blocks: tuple[str, ...]  # object blocks applied before ROI-Align (shared by name across paths)
  scale: float  # ROI-Align spatial scale


@dataclasses.dataclass(frozen=True)
class DiscriminatorSpec:
  """The resolution-dependent structure of the discriminator."""
  image_blocks: tuple[tuple[int, bool], ...]  # (channel multiplier, downsample) per block
  image_pool: str  # 'mean' | 'sum' over the final feature map
  object_blocks: tuple[tuple[str, int, bool], ...]  # (name, channel multiplier, downsample)
  small: ObjectPath  # boxes below `small_max` px in both sides
  large: ObjectPath | None  # None: one path for every box
  final_block: str  # object block after ROI-Align
  small_max: float = 0.0  # size threshold in pixels
  small_inclusive: bool = False  # ≤ (256) rather than < (128)


DISCRIMINATOR_SPECS = {
    64: DiscriminatorSpec(
        image_blocks=((1, False), (2, False), (4, True), (8, True), (16, True)), image_pool='mean',
        object_blocks=(('block_obj4', 8, True),),
        small=ObjectPath(tap=2, blocks=(), scale=1 / 2), large=None, final_block='block_obj4'),
    128: DiscriminatorSpec(
        image_blocks=((1, True), (2, True), (4, True), (8, True), (8, True), (16, False)),
        image_pool='mean',
        object_blocks=(('block_obj3', 4, False), ('block_obj4', 8, False), ('block_obj5', 16, True)),
        small=ObjectPath(tap=1, blocks=('block_obj3', 'block_obj4'), scale=1 / 4),
        large=ObjectPath(tap=2, blocks=('block_obj4',), scale=1 / 8), final_block='block_obj5',
        small_max=64.0),
    256: DiscriminatorSpec(
        image_blocks=((1, True), (2, True), (4, True), (4, True), (8, True), (8, True),
                      (16, False)), image_pool='sum',
        object_blocks=(('block_obj4', 4, False), ('block_obj5', 8, False), ('block_obj6', 16, True)),
        small=ObjectPath(tap=2, blocks=('block_obj4', 'block_obj5'), scale=1 / 8),
        large=ObjectPath(tap=3, blocks=('block_obj5',), scale=1 / 16), final_block='block_obj6',
        small_max=128.0, small_inclusive=True),
}


class Discriminator(nn.Module):
  """Image path (ResNet, hinge score) + object path (ROI-Align, projection score).

  Objects with label 0 are padding: they are scored like the others (static shapes) and flagged
  invalid, so the losses average over valid objects only; real objects' scores never depend on them.
  """
  image_size: int  # 64 | 128 | 256, selects the spec
  ch: int = 64
  num_classes: int = 184
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, boxes: jax.Array, labels: jax.Array, train: bool = True
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Scores images and their objects.

    Args:
      images: [B, H, W, 3] in [−1, 1].
      boxes: [B, O, 4] normalised (x, y, w, h).
      labels: [B, O] ints, 0 = padding.
      train: one spectral-norm power iteration per call (the official D always runs in train mode).

    Returns:
      image scores [B], object scores [B, O], validity [B, O] (labels > 0).
    """
    spec = DISCRIMINATOR_SPECS[self.image_size]
    x = images.astype(self.dtype)
    taps = []
    for i, (mult, down) in enumerate(spec.image_blocks):
      block = OptimizedBlock if i == 0 else ResBlockD
      x = block(mult * self.ch, downsample=down, dtype=self.dtype, name=f'block{i + 1}')(x, train)
      taps.append(x)
    x = upcast(leaky_relu(x))
    x = x.mean((1, 2)) if spec.image_pool == 'mean' else x.sum((1, 2))
    out_im = SNDense(1, use_bias=False, name='l_im')(x, train)[:, 0]

    obj_blocks = {name: ResBlockD(mult * self.ch, downsample=down, dtype=self.dtype, name=name)
                  for name, mult, down in spec.object_blocks}
    size = float(self.image_size)
    boxes = upcast(boxes)
    corners = jnp.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], -1) * size

    def path_features(path: ObjectPath) -> jax.Array:
      f = taps[path.tap]
      for name in path.blocks:
        f = obj_blocks[name](f, train)
      return roi_align(f, corners, 8, path.scale)  # [B, O, 8, 8, C]

    feats = path_features(spec.small)
    if spec.large is not None:
      w_px, h_px = corners[..., 2] - corners[..., 0], corners[..., 3] - corners[..., 1]
      if spec.small_inclusive:
        is_small = (w_px <= spec.small_max) & (h_px <= spec.small_max)
      else:
        is_small = (w_px < spec.small_max) & (h_px < spec.small_max)
      feats = jnp.where(is_small[..., None, None, None], feats, path_features(spec.large))
    b, o = labels.shape
    feats = feats.reshape((b * o,) + feats.shape[2:])
    feats = upcast(leaky_relu(obj_blocks[spec.final_block](feats, train)))
    feats = feats.sum((1, 2))  # [B·O, C]
    out_obj = SNDense(1, use_bias=False, name='l_obj')(feats, train)[:, 0]
    proj = SNEmbed(self.num_classes, feats.shape[-1], name='l_y')(labels.reshape(-1), train)
    out_obj = (out_obj + (proj * feats).sum(-1)).reshape(b, o)
    return out_im, out_obj, labels > 0
