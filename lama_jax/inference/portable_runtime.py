"""Runs a portable LAMA generator with JAX and NumPy only: no lama_jax, no Flax.

`python -m lama_jax.export --format stablehlo` writes a folder that holds this file as
`lama_portable.py`, so a serving process needs nothing of ours:

    import sys; sys.path.insert(0, 'exported/demo_hlo')
    import lama_portable
    gen = lama_portable.load('exported/demo_hlo')
    out = gen.generate(boxes, labels, seed=0)   # boxes [B, O, 4] (x, y, w, h), labels [B, O] ids
    out.image, out.mask, out.raw_mask           # NumPy [B, H, W, 3] in [-1, 1], [B, O, H, W] x 2

The folder (see `manifest.json` for every shape and dtype):

  manifest.json     format, model facts (image size, max objects, z size, classes), the inputs and
                    outputs of both programs with a symbolic batch 'b', the JAX version that wrote it.
  vocabulary.json   category ids <-> names (`gen.vocabulary`), with the dataset name.
  weights.npz       the eval-mode variables, one array per name; the programs take them in the order
                    `manifest['weights']` lists.
  sample.jax        `jax.export` program: (weights, boxes, labels, seed, truncation) -> outputs; z and
                    noise are drawn inside from the seed, exactly as `LayoutGenerator.generate` draws.
  forward.jax       `jax.export` program: (weights, z_obj, boxes, labels, z_im, noise_keys) -> outputs,
                    for callers that bring their own noise.

Both programs have a fixed object count (the model's max_objects; `generate` pads with the official
padding, label 0 at box (-0.6, -0.6, 0.5, 0.5)) and any batch size.
"""
import json
import os
from typing import Any, NamedTuple
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

FORMAT = 'lama_jax.portable'
FORMAT_VERSION = 1
MANIFEST = 'manifest.json'
VOCABULARY = 'vocabulary.json'
WEIGHTS = 'weights.npz'
SAMPLE = 'sample.jax'
FORWARD = 'forward.jax'
RUNTIME = 'lama_portable.py'  # this file, as copied into the artifact
PAD_LABEL = 0
PAD_BOX = (-0.6, -0.6, 0.5, 0.5)
# Each program's inputs after the weights.
INPUTS = {'forward': ('z_obj', 'boxes', 'labels', 'z_im', 'noise_keys'),
          'sample': ('boxes', 'labels', 'seed', 'truncation')}

# lama_jax runs XLA:CPU convolutions on Eigen rather than YNNPACK (see lama_jax/__init__.py); doing the
# same here lets a bare process reproduce LayoutGenerator's numbers on CPU bit for bit (YNNPACK's
# differ by float rounding, up to ~1e-5 on the demo model). Like there, it only takes effect before
# JAX starts its CPU backend, and a value the user already chose is kept.
_YNN_FLAG = '--xla_cpu_experimental_ynn_fusion_type'
if _YNN_FLAG not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_YNN_FLAG}=".strip()


class PortableError(ValueError):
  """A folder that is not a usable portable generator, or inputs it cannot take."""


class Outputs(NamedTuple):
  """What the generator returns (NumPy float32)."""
  image: np.ndarray  # [B, H, W, 3] in [-1, 1]
  mask: np.ndarray  # [B, O, H, W] adapted mask, unnormalised
  raw_mask: np.ndarray  # [B, O, H, W] masks placed in their boxes, before LAMA


def is_portable(path: str | os.PathLike) -> bool:
  """Whether `path` is a folder written by `export --format stablehlo` (or one whose manifest.json
  is cut short or garbled, so that `load` names that file rather than the folder being taken for
  something else)."""
  manifest = os.path.join(path, MANIFEST)
  if not os.path.isfile(manifest):
    return False
  try:
    with open(manifest) as f:
      return json.load(f).get('format') == FORMAT
  except ValueError:  # not JSON (UnicodeDecodeError is one too)
    return True
  except (OSError, AttributeError):
    return False


def _numbers(x: Any, name: str) -> np.ndarray:
  """`x` as an array of ints or floats (not bools, strings or ragged lists), checked before any
  cast: a cast to int32 would turn the label 2**32 + 1 into 1, and 1.9 into 1."""
  try:
    array = np.asarray(x)
  except (ValueError, TypeError):
    raise PortableError(f'{name} must be a regular array of numbers (rows of equal length)'
                        ) from None
  if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
    raise PortableError(f'{name} must be an array of numbers, got dtype {array.dtype}')
  return array


def read_json(path: str) -> dict[str, Any]:
  """The JSON object in `path` (an artifact's manifest or vocabulary)."""
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise PortableError(f'{path}: cannot read it as JSON ({e})') from None
  if not isinstance(data, dict):
    raise PortableError(f'{path}: not a JSON object')
  return data


def read_manifest(path: str) -> dict[str, Any]:
  """The manifest.json of the artifact folder `path`, checked for what the runtime reads in it.

  Raises:
    PortableError: not readable JSON, another format or version, or a field missing or malformed.
  """
  file = os.path.join(path, MANIFEST)
  manifest = read_json(file)
  if manifest.get('format') != FORMAT:
    raise PortableError(f'{path}: {MANIFEST} is not a {FORMAT} manifest')
  if manifest.get('format_version') != FORMAT_VERSION:
    raise PortableError(f'{path}: format version {manifest.get("format_version")}, this '
                        f'runtime reads {FORMAT_VERSION}')
  try:
    model = manifest['model']
    for key in ('image_size', 'max_objects', 'z_dim', 'num_classes'):
      int(model[key])
    int(model.get('step', 0))
    if not all(isinstance(w['name'], str) for w in manifest['weights']):
      raise TypeError('a weight name is not a string')
  except (KeyError, TypeError, ValueError, AttributeError) as e:
    raise PortableError(f'{file}: not a complete manifest ({type(e).__name__}: {e})') from None
  return manifest


def _read_weights(path: str, manifest: dict[str, Any]) -> list[jax.Array]:
  """The arrays of weights.npz in `path`, in the order of `manifest['weights']`."""
  file = os.path.join(path, WEIGHTS)
  # Checked first: np.load takes any other file for a pickle and suggests loading it unsafely.
  if os.path.isfile(file) and not zipfile.is_zipfile(file):
    raise PortableError(f'{file}: not an .npz archive (cut short or damaged?)')
  try:
    with np.load(file, allow_pickle=False) as npz:
      return [jnp.asarray(npz[w['name']]) for w in manifest['weights']]
  except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise PortableError(f'{file}: cannot read the weights ({e})') from None


def _read_program(path: str, name: str, manifest: dict[str, Any], weights: list[jax.Array]
                  ) -> jax.export.Exported:
  """The program `name` ('sample' or 'forward') at `path`, checked to take `weights`."""
  try:
    with open(path, 'rb') as f:
      program = jax.export.deserialize(bytearray(f.read()))
  except OSError as e:
    raise PortableError(f'{path}: {e.strerror}') from None
  except Exception as e:  # a truncated or foreign file: flatbuffers raises assorted errors
    raise PortableError(f'{path}: not a serialised jax.export program ({type(e).__name__}: '
                        f'{e})') from None
  # A program of another export (or the other program) would fail only when called, in JAX's words.
  avals = program.in_avals
  if len(avals) != len(weights) + len(INPUTS[name]):
    raise PortableError(f'{path}: a program of {len(avals)} inputs, not the {name} program of '
                        f'this artifact ({len(weights)} weights, {", ".join(INPUTS[name])})')
  for spec, weight, aval in zip(manifest['weights'], weights, avals):
    if tuple(weight.shape) != tuple(aval.shape):
      raise PortableError(f'{os.path.join(os.path.dirname(path), WEIGHTS)}: {spec["name"]} has '
                          f'shape {list(weight.shape)} but {path} takes {list(aval.shape)} '
                          '(files of different exports?)')
  return program


class PortableGenerator:
  """A loaded portable generator (see `load`).

  Attributes:
    manifest: the contents of manifest.json.
    id_to_name: category id -> name.
    image_size, max_objects, z_dim, num_classes, step, dataset: facts of the model.
  """

  def __init__(self, path: str):
    self.path = str(path)
    self.manifest = read_manifest(path)
    model = self.manifest['model']
    self.image_size, self.max_objects = int(model['image_size']), int(model['max_objects'])
    self.z_dim, self.num_classes = int(model['z_dim']), int(model['num_classes'])
    self.step, self.dataset = int(model.get('step', 0)), str(model.get('dataset', ''))
    self.vocabulary = read_json(os.path.join(path, VOCABULARY))
    try:
      self.id_to_name = {int(i): n for i, n in self.vocabulary['id_to_name'].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
      raise PortableError(f'{os.path.join(path, VOCABULARY)}: not a vocabulary (its "id_to_name" '
                          f'maps ids to names; {type(e).__name__}: {e})') from None
    self.weights = _read_weights(path, self.manifest)
    # jit over `Exported.call`: one compilation per batch size, reused afterwards.
    self._sample = jax.jit(_read_program(os.path.join(path, SAMPLE), 'sample', self.manifest,
                                         self.weights).call)
    self._forward = jax.jit(_read_program(os.path.join(path, FORWARD), 'forward', self.manifest,
                                          self.weights).call)

  def pad(self, boxes: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """Pads [B, O, 4] boxes and [B, O] labels to max_objects; padding rows get the padding box."""
    boxes, labels = _numbers(boxes, 'boxes'), _numbers(labels, 'labels')
    if boxes.ndim != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
      raise PortableError(f'boxes [B, O, 4] and labels [B, O] expected, got {list(boxes.shape)} '
                          f'and {list(labels.shape)}')
    b, o = labels.shape
    if b == 0:
      raise PortableError('boxes and labels hold no layouts (B = 0)')
    if o > self.max_objects:
      raise PortableError(f'{o} objects per layout, more than the model takes ({self.max_objects})')
    if not np.all(labels == np.round(labels)):  # NaN too
      raise PortableError('labels must be whole numbers (category ids)')
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= self.num_classes:
      raise PortableError(f'labels must lie in [0, {self.num_classes})')
    labels = labels.astype(np.int32)  # safe now
    boxes = boxes.astype(np.float32)
    if not np.all(np.isfinite(boxes[labels != PAD_LABEL])):  # would draw NaN images
      raise PortableError('boxes of real objects (label > 0) must be finite')
    # So would a width or height of 0, or one below float32's smallest normal (a float32 zero on the
    # device): they passed the check above and drew NaN images without a word.
    if not np.all(boxes[labels != PAD_LABEL][:, 2:] >= np.finfo(np.float32).tiny):
      raise PortableError('boxes of real objects (label > 0) must have a positive width and height '
                          f'(at least {np.finfo(np.float32).tiny:.3g}, float32\'s smallest normal)')
    full_boxes = np.tile(np.asarray(PAD_BOX, np.float32), (b, self.max_objects, 1))
    full_labels = np.full((b, self.max_objects), PAD_LABEL, np.int32)
    full_boxes[:, :o] = np.where((labels == PAD_LABEL)[..., None], full_boxes[:, :o], boxes)
    full_labels[:, :o] = labels
    return full_boxes, full_labels, o

  def generate(self, boxes: Any, labels: Any, seed: int = 0,
               truncation: float | None = 2.0) -> Outputs:
    """Generates one image per layout; z and noise drawn from `seed` as `LayoutGenerator` does.

    Args:
      boxes: [B, O, 4] normalised (x, y, w, h), O <= max_objects.
      labels: [B, O] category ids, 0 = padding.
      seed: an int32 seed; row b of the batch depends on (seed, b) only.
      truncation: z entries beyond +-truncation are redrawn once; None draws plain N(0, 1).

    Returns:
      Outputs(image [B, H, W, 3], mask [B, O, H, W], raw_mask [B, O, H, W]).
    """
    # A float seed would be cut to an int, a truncation of 0 or below redraw every z, a NaN one none.
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
      raise PortableError(f'seed must be an integer, not {seed!r}')
    if not -2**31 <= int(seed) < 2**31:
      raise PortableError(f'seed {seed} is not an int32')
    if truncation is not None and (
        isinstance(truncation, (bool, np.bool_)) or
        not isinstance(truncation, (int, float, np.integer, np.floating)) or not truncation > 0):
      raise PortableError(f'truncation must be a positive number or None, not {truncation!r}')
    boxes, labels, o = self.pad(boxes, labels)
    t = np.float32(np.inf if truncation is None else truncation)
    image, mask, raw = self._sample(self.weights, boxes, labels, np.int32(seed), t)
    return Outputs(np.asarray(image), np.asarray(mask)[:, :o], np.asarray(raw)[:, :o])

  def forward(self, z_obj: Any, boxes: Any, labels: Any, z_im: Any, noise_keys: Any) -> Outputs:
    """Generates from given noise: z_obj [B, max_objects, z_dim], z_im [B, z_dim] float32, and
    noise_keys [B, 2] uint32 (threefry key data, one key per row for the noise maps)."""
    boxes, labels, o = self.pad(boxes, labels)
    b = boxes.shape[0]
    given = {}  # checked here: the program's own shape errors speak of args[4] and dimension 'b'
    for name, x, shape in (('z_obj', z_obj, (b, self.max_objects, self.z_dim)),
                           ('z_im', z_im, (b, self.z_dim)), ('noise_keys', noise_keys, (b, 2))):
      x = _numbers(x, name)
      if x.shape != shape:
        raise PortableError(f'{name} must have shape {list(shape)}, got {list(x.shape)}')
      if name != 'noise_keys' and not np.all(np.isfinite(x.astype(np.float32))):
        raise PortableError(f'{name} holds NaN or infinite values')
      given[name] = x
    image, mask, raw = self._forward(self.weights, given['z_obj'].astype(np.float32), boxes,
                                     labels, given['z_im'].astype(np.float32),
                                     given['noise_keys'].astype(np.uint32))
    return Outputs(np.asarray(image), np.asarray(mask)[:, :o], np.asarray(raw)[:, :o])


def load(path: str | os.PathLike) -> PortableGenerator:
  """Loads the portable generator folder at `path`."""
  if not is_portable(path):
    raise PortableError(f'{path} is not a portable generator (no {MANIFEST} of format {FORMAT})')
  return PortableGenerator(os.fspath(path))
