"""Official LAMA discriminator state dicts (PyTorch names and layouts) → our variables. NumPy only.

Every tensor of the official `CombineDiscriminator{64,128,256}` is mapped (the key lists are in
`shared/reference/keys_D*.json`). Its module names are ours under the `obD.` prefix (`obD.block3.conv1`
is our `block3/conv1`), so the mapping walks our discriminator's variables and asks the state dict
for each:

  SN conv / Linear  as for the generator (`torch_mapping._convert_sn`): kernel transposed to HWIO or
                    `[in, out]`, u as is, v reordered to our (kh, kw, in) flattening, sigma = u·(W v).
  SN Embedding      `l_y.weight_orig` `[classes, C]` is our table as is (PyTorch normalises it over
                    its class axis, as our SNEmbed does), u `[classes]`, v `[C]`.
  alphas            `obD.<block>.alpha` → `<block>/alpha`.

Sizes are read from the tensors (width `ch`, classes). Missing or misshapen keys are errors that name
them, and keys it does not have are dropped with a warning, as for the generator.
"""
from typing import Any, Mapping

import jax
import numpy as np
from flax import traverse_util

from lama_jax.models import Discriminator, make_discriminator
from lama_jax.models.discriminator import DISCRIMINATOR_SPECS
from lama_jax.conversion.torch_io import ConversionError
from lama_jax.conversion.torch_mapping import (_convert_sn, _Reader, _shape_of, _sigma,
                                               add_spectral_vectors, strip_ddp_prefix)

PREFIX = 'obD.'  # CombineDiscriminator holds the ResnetDiscriminator as `obD`


def _guess_image_size(keys) -> int | None:
  if any(k.startswith(PREFIX + 'block7.') for k in keys):
    return 256
  if any(k.startswith(PREFIX + 'block6.') for k in keys):
    return 128
  if any(k.startswith(PREFIX + 'block5.') for k in keys):
    return 64
  return None


def infer_discriminator(sd: Mapping[str, Any], image_size: int) -> Discriminator:
  """The discriminator whose shapes the (prefix-stripped) state dict has."""
  if image_size not in DISCRIMINATOR_SPECS:
    raise ConversionError(f'image size must be 64, 128 or 256, not {image_size}.')
  guess = _guess_image_size(sd)
  if guess is not None and guess != image_size:
    raise ConversionError(f'the checkpoint names its blocks like the official {guess}×{guess} '
                          f'discriminator, not {image_size}×{image_size}: pass --image_size {guess}.')
  ch = _shape_of(sd, PREFIX + 'block1.conv1.weight_orig')[0]
  num_classes = _shape_of(sd, PREFIX + 'l_y.weight_orig')[0]
  return make_discriminator(image_size, ch, num_classes)


def _template(discriminator: Discriminator) -> dict[tuple[str, ...], Any]:
  """(collection, *path) → ShapeDtypeStruct of every variable of ours."""
  size = discriminator.image_size
  images = jax.ShapeDtypeStruct((1, size, size, 3), np.float32)
  boxes = jax.ShapeDtypeStruct((1, 2, 4), np.float32)
  labels = jax.ShapeDtypeStruct((1, 2), np.int32)
  abstract = jax.eval_shape(lambda: discriminator.init(
      {'params': jax.random.key(0)}, np.zeros(images.shape, np.float32),
      np.full(boxes.shape, 0.25, np.float32), np.ones(labels.shape, np.int32), train=True))
  return {(col, *k): leaf for col, tree in abstract.items()
          for k, leaf in traverse_util.flatten_dict(dict(tree)).items()}


def _layers(template: Mapping[tuple[str, ...], Any]):
  """Yields (our path, kind) for every layer: 'sn_conv', 'sn_dense', 'sn_embed' or 'scalar'."""
  for key, leaf in sorted(template.items()):
    col, *path, leaf_name = key
    if col != 'params':
      continue
    if leaf_name == 'alpha':
      yield '/'.join(path + ['alpha']), 'scalar'
    elif leaf_name == 'kernel':
      yield '/'.join(path), 'sn_conv' if len(leaf.shape) == 4 else 'sn_dense'
    elif leaf_name == 'embedding':
      yield '/'.join(path), 'sn_embed'


def _convert_embed(r: _Reader, t: str) -> dict[tuple[str, str], np.ndarray]:
  w, u, v = r.get(f'{t}.weight_orig'), r.get(f'{t}.weight_u'), r.get(f'{t}.weight_v')
  if w is None or u is None or v is None:
    return {}
  if w.ndim != 2 or u.shape != (w.shape[0],) or v.shape != (w.shape[1],):
    raise ConversionError(f'{t}: weight_orig {w.shape}, weight_u {u.shape}, weight_v {v.shape} '
                          'are not an SN Embedding.')
  return {('params', 'embedding'): w, ('spectral', 'u'): u, ('spectral', 'v'): v,
          ('spectral', 'sigma'): _sigma(w, u, v)}


def convert_discriminator_state_dict(state_dict: Mapping[str, Any], image_size: int
                                     ) -> tuple[dict[str, int], dict[str, Any]]:
  """Converts an official LAMA discriminator state dict.

  Args:
    state_dict: name → array, as `CombineDiscriminator{size}.state_dict()` (keys `obD.…`), with or
      without DDP's `module.` prefix.
    image_size: 64, 128 or 256.

  Returns:
    ({'image_size', 'ch', 'num_classes'}, {'params', 'spectral'} as float32 NumPy trees); rebuild the
    module with `make_discriminator(**spec)`.

  Raises:
    ConversionError: naming every missing or misshapen key (unmapped keys: a warning).
  """
  sd = strip_ddp_prefix(state_dict)
  discriminator = infer_discriminator(sd, image_size)
  template = _template(discriminator)
  reader = _Reader(sd)
  flat = {}
  for path, kind in _layers(template):
    t = PREFIX + path.replace('/', '.')
    if kind == 'scalar':
      x = reader.get(t)
      leaves = {} if x is None else {('params', ''): x}
    elif kind == 'sn_embed':
      leaves = _convert_embed(reader, t)
    else:
      has_bias = ('params', *path.split('/'), 'bias') in template
      leaves = _convert_sn(reader, t, kind == 'sn_conv', has_bias)
    for (col, leaf), arr in leaves.items():
      key = (col, *path.split('/')) + ((leaf,) if leaf else ())
      arr = np.asarray(arr, np.float32)
      want = tuple(template[key].shape)
      if arr.shape != want:
        raise ConversionError(f'{t}: shape {arr.shape} after conversion, our discriminator expects '
                              f'{want} at {"/".join(key)}.')
      flat[key] = arr
  reader.check('discriminator')
  assert set(flat) == set(template), sorted(set(template) - set(flat))
  variables = {col: traverse_util.unflatten_dict({k[1:]: v for k, v in flat.items() if k[0] == col})
               for col in ('params', 'spectral')}
  spec = {'image_size': image_size, 'ch': discriminator.ch, 'num_classes': discriminator.num_classes}
  return spec, variables


def official_discriminator_shapes(image_size: int, ch: int = 64, num_classes: int = 184
                                  ) -> dict[str, tuple[int, ...]]:
  """Name → shape of every tensor of the official discriminator's state dict (no `module.`).

  Derived from our discriminator through the mapping above; at ch=64 and 184 classes it must be
  exactly `shared/reference/keys_D{size}.json` (tested), which checks the mapping against the
  official code's own key list.
  """
  template = _template(make_discriminator(image_size, ch, num_classes))
  shapes = {}
  for path, kind in _layers(template):
    t = PREFIX + path.replace('/', '.')
    if kind == 'scalar':
      shapes[t] = ()
      continue
    leaf = 'embedding' if kind == 'sn_embed' else 'kernel'
    shape = tuple(template[('params', *path.split('/'), leaf)].shape)
    if kind == 'sn_conv':
      kh, kw, cin, cout = shape
      shapes[f'{t}.weight_orig'] = (cout, cin, kh, kw)
      shapes[f'{t}.weight_v'] = (cin * kh * kw,)
    elif kind == 'sn_dense':
      cin, cout = shape
      shapes[f'{t}.weight_orig'] = (cout, cin)
      shapes[f'{t}.weight_v'] = (cin,)
    else:
      cout, cin = shape  # [classes, C]: the class axis is PyTorch's output axis
      shapes[f'{t}.weight_orig'] = (cout, cin)
      shapes[f'{t}.weight_v'] = (cin,)
    shapes[f'{t}.weight_u'] = (cout,)
    if ('params', *path.split('/'), 'bias') in template:
      shapes[f'{t}.bias'] = (cout,)
  return shapes


def random_discriminator_state_dict(image_size: int, seed: int = 0, ch: int = 64,
                                    num_classes: int = 184) -> dict[str, np.ndarray]:
  """An official-shaped discriminator state dict of random tensors, as after training.

  u, v come from 30 power iterations on each weight, as the generator's `random_state_dict` does.
  """
  rng = np.random.default_rng(seed)
  sd = {}
  for name, shape in official_discriminator_shapes(image_size, ch, num_classes).items():
    if not name.endswith(('weight_u', 'weight_v')):
      sd[name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
  add_spectral_vectors(sd, rng)
  return sd
