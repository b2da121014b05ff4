"""Evaluation metrics: FID/SceneFID, LPIPS diversity, YOLO score, CAS, mask entropy, shapes alignment.

The light, NumPy-only metrics are exported here; the network-based ones live in
their modules (`inception`, `lpips`, `cas`) so that importing this package does
not build any Flax model.
"""
from lama_jax.metrics.frechet import activation_statistics, frechet_distance
from lama_jax.metrics.mask_entropy import mask_entropy, normalize_mask
from lama_jax.metrics.shapes_alignment import shapes_alignment

__all__ = ['activation_statistics', 'frechet_distance', 'mask_entropy', 'normalize_mask',
           'shapes_alignment']
