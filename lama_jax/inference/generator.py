"""Inference API: `LayoutGenerator.load(path).generate(boxes, labels)`.

    from lama_jax import LayoutGenerator
    gen = LayoutGenerator.load('runs/demo')          # training workdir, exported or converted dir
    out = gen.generate(boxes, labels, seed=0)         # boxes [B, O, 4] (x, y, w, h), labels [B, O]
    out.image, out.mask, out.raw_mask                 # NumPy [B,H,W,3], [B,O,H,W], [B,O,H,W]
    out = gen.generate({'name': 'beach', 'objects': [{'category': 'sky', 'bbox': [0, 0, 1, .5]}]})

The generator runs in eval mode (BatchNorm running statistics, no power iteration). Layouts are
padded to the model's `max_objects` with the official padding, so every call with the same batch
size reuses one compiled program. Each batch row is computed on its own (vmapped; on CPU a few rows
at a time, `sampling_forms.rows_per_chunk`), its noise (z and the noise-injection maps) derived from
(seed, row): a layout's sample does not depend on what else is in the batch.

One call is one compiled program: z is drawn, the images are made and, when asked, quantised to
uint8 on the device, so the host receives only what the caller wants (`image_format='uint8'`,
`mask_format=None`: 1/4 of the image bytes and no masks; at 256×256 the float32 masks are 5x the
image). `generate_many` overlaps the copy of one batch's outputs with the compute of the next.
"""
import functools
import os
from typing import Any, Iterable, Iterator, Mapping, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lama_jax.inference import generator_dir
from lama_jax.inference import layouts as layouts_lib
from lama_jax.inference import portable_runtime
from lama_jax.inference.layouts import Layout, LayoutError
from lama_jax.datasets.vocabulary import Vocabulary
from lama_jax.models import sampling_forms
from lama_jax.models.generator import sampling_variables
from lama_jax.models.mask import masks_to_layout


IMAGE_FORMATS = ('float32', 'uint8')
MASK_FORMATS = ('float32', 'float16', None)
MAX_ROW = 2**31 - 1  # row indices are int32 on the device


class Generated(NamedTuple):
  """What `generate` returns (NumPy; float32 unless other formats were asked for)."""
  image: np.ndarray  # [B, H, W, 3] in [-1, 1] (uint8: the official test.py's (x/2 + 1/2)·255, truncated)
  mask: np.ndarray | None  # [B, O, H, W] adapted mask, unnormalised, as the official generator
  raw_mask: np.ndarray | None  # [B, O, H, W] masks placed in their boxes, before LAMA


class _Formats(NamedTuple):
  """Static output options of one compiled program."""
  image: str  # one of IMAGE_FORMATS
  mask: str | None  # one of MASK_FORMATS; None: no masks
  truncation: float | None  # of the z drawn in the program (None when the caller gives every z)


def truncated_normal(key: jax.Array, shape: Sequence[int], truncation: float | None) -> jax.Array:
  """N(0, 1) with entries beyond ±truncation redrawn once (the official `truncted_random`)."""
  k1, k2 = jax.random.split(key)
  z = jax.random.normal(k1, shape, jnp.float32)
  if truncation is None:
    return z
  return jnp.where(jnp.abs(z) > truncation, jax.random.normal(k2, shape, jnp.float32), z)


def row_keys(seed: int, batch: int, first: int = 0) -> jax.Array:
  """Per-row keys of rows first..first+batch-1: row b's randomness depends on (seed, b) only."""
  return _row_keys(jax.random.key(seed), batch, first)


def _row_keys(base: jax.Array, batch: int, first: int | jax.Array = 0) -> jax.Array:
  return jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(batch) + first)


def draw_z(keys: jax.Array, num_objects: int, z_dim: int, truncation: float | None
           ) -> tuple[jax.Array, jax.Array]:
  """Each row's z from its key: (z_obj [B, num_objects, z_dim], z_im [B, z_dim]).

  Object slot j of a row depends on (key, j) only. Traceable (the portable export draws z inside).
  """
  def row(key):
    k_obj, k_im = jax.random.split(jax.random.fold_in(key, 1))
    obj_keys = jax.vmap(lambda j: jax.random.fold_in(k_obj, j))(jnp.arange(num_objects))
    z_obj = jax.vmap(lambda k: truncated_normal(k, (z_dim,), truncation))(obj_keys)
    return z_obj, truncated_normal(k_im, (z_dim,), truncation)
  return jax.vmap(row)(keys)


def noise_keys(keys: jax.Array) -> jax.Array:
  """Each row's key for the noise-injection maps, from its row key."""
  return jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys)


def fill_z(keys: jax.Array, num_objects: int, z_dim: int, truncation: float | None,
           z_obj: jax.Array | None, z_im: jax.Array | None) -> tuple[jax.Array, jax.Array]:
  """The given z, with what is None drawn from the row keys (as `draw_z`)."""
  if z_obj is None or z_im is None:
    drawn_obj, drawn_im = draw_z(keys, num_objects, z_dim, truncation)
    z_obj = drawn_obj if z_obj is None else z_obj
    z_im = drawn_im if z_im is None else z_im
  return z_obj, z_im


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _sample_z(batch: int, num_objects: int, z_dim: int, truncated: bool, base: jax.Array,
              first: jax.Array, truncation: jax.Array):
  # The truncation value is traced, so that a new value (the studio's slider) does not recompile.
  return draw_z(_row_keys(base, batch, first), num_objects, z_dim,
                truncation if truncated else None)


def to_uint8_truncated(image: jax.Array) -> jax.Array:
  """`visualize.to_uint8_truncated` on the device (the same float32 operations, the same bytes)."""
  return (jnp.clip(image * 0.5 + 0.5, 0.0, 1.0) * 255).astype(jnp.uint8)


def _forward_rows(generator: nn.Module, variables, z_obj, boxes, labels, z_im, keys, masks=None,
                  rows_per_chunk: int | None = None):
  """Eval-mode generator, one batch row at a time (vmapped) with its own noise key.

  `masks` [B, O, H, W], when given, replace the layout-to-mask stage (the Sec. 3 experiment).
  `rows_per_chunk`: the vmapped rows run that many at a time, one chunk after the other (the same
  function; `sampling_forms.rows_per_chunk` says why); None: all at once (a symbolic batch).
  """
  def one(z_o, bx, lb, z_i, key, mk):
    image, mask, raw = generator.apply(variables, z_o[None], bx[None], lb[None], z_i[None],
                                       train=False, rngs={'noise': key},
                                       masks=None if mk is None else mk[None])
    return image[0], mask[0], raw[0]
  rows = (z_obj, boxes, labels, z_im, keys, masks)
  if rows_per_chunk is None or rows_per_chunk >= boxes.shape[0]:
    return jax.vmap(one)(*rows)
  return jax.lax.map(lambda row: one(*row), rows, batch_size=rows_per_chunk)


# `_forward_rows` alone, jitted with the module static: the portable export's forward program.
_forward = jax.jit(_forward_rows, static_argnums=0)


def format_outputs(formats: _Formats, image: jax.Array, mask: jax.Array, raw: jax.Array
                   ) -> tuple[jax.Array | None, ...]:
  """(image, mask, raw mask) in `formats` (traceable): uint8 images, float16 or no masks."""
  if formats.image == 'uint8':
    image = to_uint8_truncated(image)
  if formats.mask is None:
    return image, None, None
  return image, mask.astype(formats.mask), raw.astype(formats.mask)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _program(generator: nn.Module, formats: _Formats, variables, base_key, first_row, boxes,
             labels, z_obj=None, z_im=None, masks=None):
  """What `generate` runs: z drawn (when None), the forward pass and the output formats, in one
  program, so only the outputs asked for leave the device.

  Jitted with the module as a static argument: generators of equal config share compiled programs.
  """
  keys = _row_keys(base_key, boxes.shape[0], first_row)
  z_obj, z_im = fill_z(keys, boxes.shape[1], generator.z_dim, formats.truncation, z_obj, z_im)
  chunk = sampling_forms.rows_per_chunk(boxes.shape[0], generator.image_size)
  outputs = _forward_rows(generator, variables, z_obj, boxes, labels, z_im, noise_keys(keys),
                          masks, rows_per_chunk=chunk)
  return format_outputs(formats, *outputs)


_prepare_for_sampling = jax.jit(sampling_variables)


def _fetch(started: tuple[tuple[jax.Array | None, ...], int]) -> Generated:
  """Host copies of `_dispatch`'s outputs; the masks keep the caller's `o` objects per row."""
  (image, mask, raw), o = started
  if mask is None:
    return Generated(np.asarray(image), None, None)
  return Generated(np.asarray(image), np.asarray(mask)[:, :o], np.asarray(raw)[:, :o])


class LayoutGenerator:
  """A LAMA generator ready for inference.

  Attributes:
    generator: the Flax module.
    variables: {'params', 'batch_stats', 'spectral'}.
    vocabulary: category names ↔ ids (`vocabulary.name_to_id['person']`).
    max_objects: the most objects per layout (layouts are padded to it).
    dataset: the dataset name the generator was trained on.
    step: the training step of the checkpoint.
  """

  def __init__(self, generator: nn.Module, variables: dict[str, Any], vocabulary: Vocabulary,
               max_objects: int, dataset: str = '', step: int = 0):
    self.generator = generator
    self.variables = jax.tree_util.tree_map(jnp.asarray, dict(variables))
    self.vocabulary = vocabulary
    self.max_objects = int(max_objects)
    self.dataset = dataset or vocabulary.dataset
    self.step = int(step)

  @classmethod
  def load(cls, path: str, step: int | None = None) -> 'LayoutGenerator':
    """Loads a training workdir (latest checkpoint), an exported or converted generator dir, or a
    portable artifact (`export --format stablehlo`, run without Flax through its programs)."""
    if step is not None:  # '7' said "has no step 7 (steps: [7])", 7.0 "checkpoint 7.0 is damaged"
      step = layouts_lib.check_int(step, 'step', 0, 2**63 - 1)
    if portable_runtime.is_portable(path):
      from lama_jax.inference import portable  # pylint: disable=g-import-not-at-top (import cycle)
      return portable.load_layout_generator(path, step)
    loaded = generator_dir.load_generator_dir(path, step)
    return cls(loaded.generator, loaded.variables, loaded.vocabulary,
               loaded.config['max_objects'], loaded.config.get('dataset', ''), loaded.step)

  @functools.cached_property
  def _sampling_variables(self) -> dict[str, Any]:
    """`variables` plus what sampling would otherwise rebuild in every call: the spectral-norm
    weights divided, the blocks' conv1 phase kernels (models/generator.py, `sampling_variables`);
    made at the first call."""
    return _prepare_for_sampling(self.variables)

  @property
  def image_size(self) -> int:
    return self.generator.image_size

  @property
  def num_classes(self) -> int:
    return self.generator.num_classes

  @property
  def z_dim(self) -> int:
    return self.generator.z_dim

  def sample_z(self, batch: int, seed: int = 0, truncation: float | None = 2.0,
               num_objects: int | None = None, first_row: int = 0
               ) -> tuple[np.ndarray, np.ndarray]:
    """The z that `generate` draws for `seed`: (z_obj [B, num_objects, z_dim], z_im [B, z_dim]).

    Row b depends on (seed, first_row + b) only; object slot j of a row on (seed, b, j) only —
    more slots add columns without changing the first ones.
    """
    truncation = layouts_lib.check_sampling(seed, truncation)
    batch = layouts_lib.check_int(batch, 'batch', 1, MAX_ROW)
    first_row = layouts_lib.check_int(first_row, 'first_row', 0, MAX_ROW + 1 - batch)
    num_objects = layouts_lib.check_int(self.max_objects if num_objects is None else num_objects,
                                        'num_objects', 1, MAX_ROW)
    z_obj, z_im = _sample_z(batch, num_objects, self.z_dim, truncation is not None,
                            jax.random.key(seed), jnp.int32(first_row),
                            jnp.float32(0.0 if truncation is None else truncation))
    return np.asarray(z_obj), np.asarray(z_im)

  def parse_layouts(self, layouts: Any, source: str = '<layouts>') -> list[Layout]:
    """Validates layouts given as decoded JSON (dict or list), a JSON string or a file path (str or
    os.PathLike)."""
    if isinstance(layouts, (list, dict)):
      return layouts_lib.parse_layouts(layouts, self.vocabulary, self.max_objects, source)
    if isinstance(layouts, str) and layouts.lstrip().startswith(('{', '[')):
      return layouts_lib.parse_layouts(layouts_lib.decode_layouts(layouts, source),
                                       self.vocabulary, self.max_objects, source)
    if isinstance(layouts, (str, os.PathLike)):
      return layouts_lib.load_layouts(os.fspath(layouts), self.vocabulary, self.max_objects)
    raise LayoutError(f'{source}: not a layout or a list of layouts '
                      f'(got {type(layouts).__name__})')

  def generate(self, boxes: Any, labels: Any = None, z_obj: Any = None, z_im: Any = None,
               seed: int = 0, truncation: float | None = 2.0, strict: bool = True,
               masks: Any = None, image_format: str = 'float32',
               mask_format: str | None = 'float32', first_row: int = 0) -> Generated:
    """Generates images from layouts.

    Args:
      boxes: [B, O, 4] normalised (x, y, w, h) — or, with `labels` None, layouts in the JSON format
        (a dict, a list of dicts, a JSON string, or a file path as str or os.PathLike),
        generated one row each.
      labels: [B, O] int category ids, 0 = padding (a padding row's box is ignored).
      z_obj: [B, O, z_dim] object noise; drawn from `seed` when None.
      z_im: [B, z_dim] image noise; drawn from `seed` when None.
      seed: seeds z (when not given) and the noise-injection maps.
      truncation: entries of the drawn z beyond ±truncation are redrawn once (official: 2.0);
        None draws plain N(0, 1).
      strict: check every real box (finite, positive size, inside [0, 1]); False checks only that
        it is finite, for prepared datasets whose boxes may overshoot the image by a hair. Labels
        are range-checked either way (`layouts.check_arrays`, the check of layout files too).
      masks: [B, O, H, W] semantic masks that replace the layout-to-mask stage (the mask-to-image
        experiment of Sec. 3; `place_masks` builds them from box-local masks). The returned mask
        and raw mask are then these masks.
      image_format: 'float32' ([-1, 1]) or 'uint8' (quantised on the device as the official test.py
        saves images: `visualize.to_uint8_truncated`, the same bytes).
      mask_format: 'float32', 'float16' or None (no masks are computed into the outputs or copied:
        `mask` and `raw_mask` are None).
      first_row: the batch holds rows first_row.. of a larger one: their noise is that of those
        rows, so a large batch can be generated in chunks with the same result.

    Returns:
      Generated(image [B, H, W, 3], mask [B, O, H, W], raw_mask [B, O, H, W]) as NumPy.

    Raises:
      LayoutError: bad input, with a message naming the layout, object and problem.
    """
    if labels is None:
      if isinstance(boxes, (dict, list, str, os.PathLike)):
        layouts = self.parse_layouts(boxes)
        # Every argument goes on (masks and first_row were once dropped without a word): rows
        # are padded to max_objects, so given z_obj and masks have max_objects entries per row.
        return self.generate_layouts(layouts, z_obj=z_obj, z_im=z_im, seed=seed,
                                     truncation=truncation, strict=strict, masks=masks,
                                     image_format=image_format, mask_format=mask_format,
                                     first_row=first_row)
      raise LayoutError('labels are missing: pass boxes [B, O, 4] and labels [B, O], or layouts')
    return _fetch(self._dispatch(boxes, labels, z_obj, z_im, seed, truncation, strict, masks,
                                 image_format, mask_format, first_row=first_row))

  def generate_many(self, batches: Iterable[Mapping[str, Any]], **common: Any
                    ) -> Iterator[Generated]:
    """`generate` over batches, each a dict of its keyword arguments (boxes, labels, seed, ...).

    Yields one Generated per batch, in order. The next batch is started before the current one's
    outputs are copied to the host, so the copy overlaps the next batch's compute.

    Args:
      batches: dicts of `generate`'s arguments for each batch (array layouts only).
      **common: arguments shared by every batch (e.g. image_format='uint8', mask_format=None).
    """
    pending = None
    for i, batch in enumerate(batches):
      kwargs = {**common, **batch}
      if 'boxes' not in kwargs or 'labels' not in kwargs:  # not a KeyError from deep inside
        raise LayoutError(f'batch {i} has no {"boxes" if "boxes" not in kwargs else "labels"}: '
                          'generate_many takes dicts of array layouts (boxes [B, O, 4], labels '
                          '[B, O]); JSON layouts go to generate')
      started = self._dispatch(kwargs.pop('boxes'), kwargs.pop('labels'), **kwargs)
      if pending is not None:
        yield _fetch(pending)
      pending = started
    if pending is not None:
      yield _fetch(pending)

  def _dispatch(self, boxes: Any, labels: Any, z_obj: Any = None, z_im: Any = None,
                seed: int = 0, truncation: float | None = 2.0, strict: bool = True,
                masks: Any = None, image_format: str = 'float32',
                mask_format: str | None = 'float32', to_host: bool = True, first_row: int = 0
                ) -> tuple[tuple[Any, ...], int]:
    """Checks and pads the inputs and starts the compiled program; returns its device outputs and
    the caller's number of objects per row. `to_host` starts their copies to the host."""
    if image_format not in IMAGE_FORMATS:
      raise LayoutError(f'image_format must be one of {IMAGE_FORMATS}, got {image_format!r}')
    if mask_format not in MASK_FORMATS:
      raise LayoutError(f'mask_format must be one of {MASK_FORMATS}, got {mask_format!r}')
    truncation = layouts_lib.check_sampling(seed, truncation)
    boxes, labels = layouts_lib.check_arrays(boxes, labels, self.num_classes, self.max_objects,
                                             strict)
    b, o = labels.shape
    first_row = layouts_lib.check_int(first_row, 'first_row', 0, MAX_ROW + 1 - b)
    pad = self.max_objects - o
    if z_obj is not None:
      z_obj = self._check_z(z_obj, (b, o, self.z_dim), 'z_obj')
      z_obj = np.concatenate([z_obj, np.zeros((b, pad, self.z_dim), np.float32)], 1)
    if z_im is not None:
      z_im = self._check_z(z_im, (b, self.z_dim), 'z_im')
    boxes = np.concatenate([boxes, np.tile(np.asarray(layouts_lib.PAD_BOX, np.float32),
                                           (b, pad, 1))], 1)
    labels = np.concatenate([labels, np.full((b, pad), layouts_lib.PAD_LABEL, np.int32)], 1)
    if masks is not None:
      masks = self._check_masks(masks, (b, o, self.image_size, self.image_size))
      masks = np.concatenate([masks, np.zeros((b, pad, *masks.shape[2:]), np.float32)], 1)
    drawn = z_obj is None or z_im is None  # else no z is drawn: one program for every truncation
    formats = _Formats(image_format, mask_format, truncation if drawn else None)
    outputs = self._start(formats, seed, first_row, boxes,
                          labels, z_obj, z_im, masks)
    for x in outputs:
      if x is not None and to_host:
        x.copy_to_host_async()  # starts as soon as the program ends (accelerators)
    return outputs, o

  def _start(self, formats: _Formats, seed: int, first_row: int, boxes: np.ndarray,
             labels: np.ndarray, z_obj: np.ndarray | None, z_im: np.ndarray | None,
             masks: np.ndarray | None) -> tuple[jax.Array | None, ...]:
    """Starts the padded [B, max_objects] forward pass; returns its (image, mask, raw) outputs."""
    return _program(self.generator, formats, self._sampling_variables, jax.random.key(seed),
                    jnp.int32(first_row), boxes, labels, z_obj, z_im, masks)

  def generate_layouts(self, layouts: Sequence[Layout], **kwargs: Any) -> Generated:
    """Generates one sample per validated layout (see `parse_layouts`); kwargs go to `generate`.

    Masks have `max_objects` entries per row; a layout's objects come first.
    """
    boxes, labels = layouts_lib.stack_layouts(layouts, self.max_objects)
    return self.generate(boxes, labels, **kwargs)

  def place_masks(self, boxes: Any, local_masks: Any) -> np.ndarray:
    """Box-local object masks [B, O, 32, 32] → semantic masks [B, O, H, W] (masks_to_layout).

    Run op by op, not jitted: a few cheap ops, and bit-equal to `masks_to_layout` called directly.

    Raises:
      LayoutError: shapes that do not match, or values that are not finite (`masks_to_layout`
        would read boxes [B, O, 3] past their end, and place NaN boxes as NaN masks).
    """
    boxes = layouts_lib.as_array(boxes, 'boxes', '[B, O, 4]')
    local_masks = layouts_lib.as_array(local_masks, 'local_masks', '[B, O, M, M]')
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
      raise LayoutError(f'boxes must have shape [B, O, 4], got {list(boxes.shape)}')
    if (local_masks.ndim != 4 or local_masks.shape[:2] != boxes.shape[:2] or
        local_masks.shape[2] != local_masks.shape[3]):
      raise LayoutError(f'local_masks must have shape [B, O, M, M] = [{boxes.shape[0]}, '
                        f'{boxes.shape[1]}, M, M], got {list(local_masks.shape)}')
    for name, x in (('boxes', boxes), ('local_masks', local_masks)):
      if not np.all(np.isfinite(x.astype(np.float32))):
        raise LayoutError(f'{name} hold NaN or infinite values')
    return np.asarray(masks_to_layout(jnp.asarray(boxes, jnp.float32),
                                      jnp.asarray(local_masks, jnp.float32), self.image_size))

  @staticmethod
  def _check_masks(masks, shape):
    # Checked before the cast: a ragged list or a string is a LayoutError, a complex array is not
    # quietly cut to its real part.
    masks = layouts_lib.as_array(masks, 'masks', str(list(shape)))
    if masks.shape != shape:
      raise LayoutError(f'masks must have shape {list(shape)}, got {list(masks.shape)}')
    masks = masks.astype(np.float32)
    if not np.all(np.isfinite(masks)):
      raise LayoutError('masks hold NaN or infinite values')
    return masks

  @staticmethod
  def _check_z(z, shape, name):
    z = layouts_lib.as_array(z, name, str(list(shape)))
    if z.shape != shape:
      raise LayoutError(f'{name} must have shape {list(shape)}, got {list(z.shape)}')
    z = z.astype(np.float32)
    if not np.all(np.isfinite(z)):
      raise LayoutError(f'{name} holds NaN or infinite values')
    return z
