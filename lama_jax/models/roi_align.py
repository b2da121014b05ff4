"""ROI-Align with the legacy maskrcnn-benchmark semantics of the official discriminator.

Legacy (`aligned=False`) rules: box corners are scaled without a half-pixel offset, the box size is
clamped to ≥ 1, each of the P×P bins averages a g_h × g_w grid of bilinear samples with
g = ceil(box size / P) chosen per box (sampling_ratio 0), samples beyond [−1, size] count as 0 and
samples in [−1, 0] snap to 0.

Under `jit` the grid size per box cannot be a shape, so we sample a static upper bound and mask the
surplus points. Bilinear sampling is separable and so is the grid, so the sum over a bin's samples
factorises into one [P, H] row-weight matrix and one [P, W] column-weight matrix per box: the whole op is
`Ay · F · Axᵀ`, linear in the features (exact gradients) and free of gathers.
"""

import math

import jax
import jax.numpy as jnp

from lama_jax.models.resize import tent_weights, upcast

_HIGHEST = jax.lax.Precision.HIGHEST


def _axis_weights(start: jax.Array, end: jax.Array, size: int, pooled: int, max_grid: int
                  ) -> tuple[jax.Array, jax.Array]:
  """Summed sample weights along one axis.

  Args:
    start, end: [...] box extent in feature pixels (already scaled).
    size: feature map extent along this axis.
    pooled: output bins along this axis.
    max_grid: static bound on samples per bin.

  Returns:
    weights [..., pooled, size] (sum over the bin's samples) and the per-box grid count [...].
  """
  extent = jnp.maximum(end - start, 1.0)
  bin_size = extent / pooled
  grid = jnp.minimum(jnp.ceil(extent / pooled), max_grid)  # [...]
  k = jnp.arange(max_grid, dtype=start.dtype)
  p = jnp.arange(pooled, dtype=start.dtype)
  coords = (start[..., None, None] + p[:, None] * bin_size[..., None, None] +
            (k + 0.5) * (bin_size / grid)[..., None, None])  # [..., pooled, max_grid]
  used = (k < grid[..., None, None]) & (coords >= -1.0) & (coords <= size)
  weights = tent_weights(jnp.clip(coords, 0.0, size - 1), size)  # [..., pooled, max_grid, size]
  weights = jnp.where(used[..., None], weights, 0.0).sum(-2)
  return weights, grid


def roi_align(features: jax.Array, boxes: jax.Array, output_size: int = 8,
              spatial_scale: float = 1.0, max_grid: int | None = None) -> jax.Array:
  """Legacy ROI-Align of per-image boxes.

  Args:
    features: [B, H, W, C].
    boxes: [B, O, 4] as (x0, y0, x1, y1) in image pixels.
    output_size: P, the bins per side.
    spatial_scale: feature pixels per image pixel.
    max_grid: static bound on samples per bin and axis; defaults to what a box as large as the feature
      map needs, so boxes inside the image are exact.

  Returns:
    [B, O, P, P, C].
  """
  _, h, w, _ = features.shape
  if max_grid is None:
    max_grid = math.ceil(max(h, w) / output_size)
  boxes = upcast(boxes) * spatial_scale
  ay, gy = _axis_weights(boxes[..., 1], boxes[..., 3], h, output_size, max_grid)
  ax, gx = _axis_weights(boxes[..., 0], boxes[..., 2], w, output_size, max_grid)
  count = (gy * gx)[..., None, None, None]
  out = jnp.einsum('boph,bhwc,boqw->bopqc', ay.astype(features.dtype), features,
                   ax.astype(features.dtype), precision=_HIGHEST)
  return out / count.astype(out.dtype)
