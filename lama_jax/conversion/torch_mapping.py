"""Official LAMA generator state dicts (PyTorch names and layouts) → our variables. NumPy only.

Every tensor of the official `ResnetGenerator{64,128,256}` is mapped (the key lists are in
`shared/reference/keys_G*.json`):

  kernels       Linear `[out, in]` → `[in, out]`; Conv `[out, in, kh, kw]` → HWIO.
  spectral norm `weight_orig` → kernel; `weight_u` → u; `weight_v` → v, reordered from PyTorch's
                (in, kh, kw) flattening to ours (kh, kw, in); sigma = u·(W v) in float64.
  BatchNorm     weight/bias → scale/bias; running_mean/var → batch_stats mean/var;
                num_batches_tracked is dropped.
  GroupNorm     weight/bias → scale/bias.
  noise seeds   (1, C, 1, 1) → our (1, C).

Sizes are read from the tensors (width `ch`, classes, embedding and z widths, the mask network's
hidden width), so non-default widths convert too. Any key missing, any shape that does not fit is
an error that names the key; keys the official model does not have are dropped with a warning that
names them, as the official test.py drops them.
"""
from typing import Any, Mapping

from absl import logging
import numpy as np
from flax import traverse_util

from lama_jax.conversion.torch_io import ConversionError
from lama_jax.models import GENERATOR_CHANNELS, generator_spec, make_generator

DDP_PREFIX = 'module.'
IGNORED_SUFFIXES = ('num_batches_tracked',)


def official_block_prefix(image_size: int, i: int) -> str:
  """The official name of our residual block `res{i}`."""
  if image_size == 64:
    return f'res{i + 2}'
  if image_size == 128:
    return f'res{i + 1}'
  if image_size == 256:
    return f'res.{i}.model'
  raise ConversionError(f'image size must be 64, 128 or 256, not {image_size}.')


def strip_ddp_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
  """Removes DistributedDataParallel's `module.` prefix when every key carries it."""
  keys = list(state_dict)
  if keys and all(k.startswith(DDP_PREFIX) for k in keys):
    return {k[len(DDP_PREFIX):]: v for k, v in state_dict.items()}
  return dict(state_dict)


def _guess_image_size(keys) -> int | None:
  if any(k.startswith('res.0.model.') for k in keys):
    return 256
  if any(k.startswith('res1.') for k in keys):
    return 128
  if any(k.startswith('res2.') for k in keys):
    return 64
  return None


class _Reader:
  """Hands out state-dict tensors and remembers which keys were used or missing."""

  def __init__(self, sd: Mapping[str, np.ndarray]):
    self.sd = sd
    self.used: set[str] = set()
    self.missing: list[str] = []

  def get(self, key: str) -> np.ndarray | None:
    if key not in self.sd:
      self.missing.append(key)
      return None
    self.used.add(key)
    return np.asarray(self.sd[key])

  def unmapped(self, ignored_suffixes: tuple[str, ...] = ()) -> list[str]:
    """Keys nothing used (those ending in `ignored_suffixes` apart)."""
    return sorted(k for k in self.sd if k not in self.used
                  and not (ignored_suffixes and k.endswith(ignored_suffixes)))

  def check(self, what: str, ignored_suffixes: tuple[str, ...] = ()) -> None:
    """Raises ConversionError naming the missing keys (and the unmapped ones beside them: a renamed
    key shows as both); with none missing, unmapped keys are only a warning. The official test.py
    loads its checkpoints the same way, keeping the keys its model has and dropping the others, so
    a checkpoint holding a few more tensors than the released model converts as it loads there."""
    unmapped = self.unmapped(ignored_suffixes)
    if self.missing:
      problems = [f'missing keys: {", ".join(self.missing)}']
      if unmapped:
        problems.append(f'unmapped keys: {", ".join(unmapped)}')
      raise ConversionError(f'not an official LAMA {what} state dict: ' + '; '.join(problems))
    if unmapped:
      shown = ', '.join(unmapped[:10]) + (f' and {len(unmapped) - 10} more' if len(unmapped) > 10
                                          else '')
      logging.warning('Ignoring %d state-dict key(s) that the official %s does not have (the '
                      "official test.py's loading ignores them too): %s", len(unmapped), what, shown)


def _shape_of(sd: Mapping[str, Any], key: str) -> tuple[int, ...]:
  if key not in sd:
    raise ConversionError(f'missing key {key!r} (needed to infer the model size).')
  return tuple(np.shape(sd[key]))


def infer_generator(sd: Mapping[str, Any], image_size: int):
  """The generator whose shapes the (prefix-stripped) state dict has."""
  guess = _guess_image_size(sd)
  if image_size not in GENERATOR_CHANNELS:
    raise ConversionError(f'image size must be 64, 128 or 256, not {image_size}.')
  if guess is not None and guess != image_size:
    raise ConversionError(f'the checkpoint names its blocks like the official {guess}×{guess} '
                          f'generator, not {image_size}×{image_size}: pass --image_size {guess}.')
  ch = _shape_of(sd, 'final.0.weight')[0]
  num_classes, embed_dim = _shape_of(sd, 'label_embedding.weight')
  fc_out, z_dim = _shape_of(sd, 'fc.weight_orig')
  mask_hidden = _shape_of(sd, 'mask_regress.fc.weight_orig')[0] // 16
  channels = [fc_out // (16 * ch)]
  for i in range(len(GENERATOR_CHANNELS[image_size]) - 1):
    out = _shape_of(sd, f'{official_block_prefix(image_size, i)}.conv1.weight_orig')[0]
    channels.append(out // ch)
  return make_generator(image_size, ch, num_classes, embed_dim=embed_dim, z_dim=z_dim,
                        mask_hidden=mask_hidden, channels=tuple(channels), mask_adaption=True,
                        lama_local_blocks=2, norm='bgn', noise=True)


def _sigma(w_mat: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  w64 = w_mat.astype(np.float64)
  return np.asarray(np.dot(u.astype(np.float64), w64 @ v.astype(np.float64)), np.float32)


def _entries(sd: Mapping[str, Any], image_size: int, num_blocks: int, local_blocks: int):
  """Yields (our path, official prefix, kind) for every layer of the generator."""
  yield 'label_embedding', 'label_embedding', 'embed'
  yield 'fc', 'fc', 'sn_dense'
  for j in range(3):
    yield f'style_mapping/fc{j}', f'style_mapping.{2 * j}', 'sn_dense'
  for i in range(num_blocks):
    t, p = official_block_prefix(image_size, i), f'res{i}'
    yield f'{p}/alpha', f'{t}.alpha', 'scalar'
    yield f'{p}/conv1', f'{t}.conv1', 'sn_conv'
    yield f'{p}/conv2', f'{t}.conv2', 'sn_conv'
    yield f'{p}/c_sc', f'{t}.c_sc', 'sn_conv'
    for b in ('b1', 'b2'):
      yield f'{p}/{b}/rho', f'{t}.{b}.rho', 'scalar'
      yield f'{p}/{b}/alpha', f'{t}.{b}.alpha', 'scalar'
      yield f'{p}/{b}/weight_proj', f'{t}.{b}.weight_proj', 'sn_dense'
      yield f'{p}/{b}/bias_proj', f'{t}.{b}.bias_proj', 'sn_dense'
      yield f'{p}/{b}/batch_norm2d', f'{t}.{b}.batch_norm2d', 'bn_stats'
    for n in ('noise1', 'noise2'):
      yield f'{p}/{n}/noise_weight_seed', f'{t}.{n}.noise_weight_seed', 'noise'
  yield 'final_bn', 'final.0', 'bn'
  yield 'final_conv', 'final.2', 'sn_conv'
  m = 'mask_regress'
  yield f'{m}/fc', f'{m}.fc', 'sn_dense'
  for k in (1, 2, 3):
    yield f'{m}/conv{k}/alpha', f'{m}.conv{k}.alpha', 'scalar'
    yield f'{m}/conv{k}/bn', f'{m}.conv{k}.conv.0', 'bn'
    yield f'{m}/conv{k}/conv', f'{m}.conv{k}.conv.2', 'sn_conv'
  yield f'{m}/final_bn', f'{m}.final.0', 'bn'
  yield f'{m}/final_conv', f'{m}.final.2', 'sn_conv'
  yield 'lama/query_affine', f'{m}.query_affine', 'sn_dense'
  yield 'lama/key_affine', f'{m}.key_affine', 'sn_dense'
  for j in range(local_blocks):
    yield f'lama/query_local_{j}/alpha', f'{m}.query_local.{j}.alpha', 'scalar'
    yield f'lama/query_local_{j}/gn', f'{m}.query_local.{j}.conv.0', 'gn'
    yield f'lama/query_local_{j}/conv', f'{m}.query_local.{j}.conv.2', 'sn_conv'
  yield 'lama/alpha', f'{m}.mask_adjust_alpha', 'scalar'


def _convert_sn(r: _Reader, t: str, conv: bool, has_bias: bool
                ) -> dict[tuple[str, str], np.ndarray]:
  """Spectral-norm layer `t` → {(collection, leaf name): array}."""
  w, u, v = r.get(f'{t}.weight_orig'), r.get(f'{t}.weight_u'), r.get(f'{t}.weight_v')
  bias = r.get(f'{t}.bias') if has_bias else None
  if w is None or u is None or v is None or (has_bias and bias is None):
    return {}
  out_dim = w.shape[0]
  w_mat = w.reshape(out_dim, -1)
  if u.shape != (out_dim,) or v.shape != (w_mat.shape[1],):
    raise ConversionError(f'{t}: weight_u {u.shape} / weight_v {v.shape} do not fit weight_orig '
                          f'{w.shape}.')
  if conv:
    if w.ndim != 4:
      raise ConversionError(f'{t}.weight_orig has shape {w.shape}, expected a 4-D conv kernel.')
    _, cin, kh, kw = w.shape
    kernel = w.transpose(2, 3, 1, 0)
    v_ours = v.reshape(cin, kh, kw).transpose(1, 2, 0).reshape(-1)
  else:
    if w.ndim != 2:
      raise ConversionError(f'{t}.weight_orig has shape {w.shape}, expected a Linear weight.')
    kernel = w.T
    v_ours = v
  leaves = {('params', 'kernel'): kernel, ('spectral', 'u'): u, ('spectral', 'v'): v_ours,
            ('spectral', 'sigma'): _sigma(w_mat, u, v)}
  if has_bias:
    leaves[('params', 'bias')] = bias
  return leaves


def _convert_entry(r: _Reader, t: str, kind: str, template: Mapping[tuple, Any], path: str
                   ) -> dict[tuple[str, str], np.ndarray]:
  """One layer → {(collection, leaf name under `path`): array}; missing keys go to r.missing."""
  def get(*names):
    return {n: r.get(f'{t}.{n}') for n in names}

  if kind == 'scalar':
    x = r.get(t)
    return {} if x is None else {('params', ''): x}
  if kind == 'noise':
    x = r.get(t)
    return {} if x is None else {('params', ''): x}
  if kind == 'embed':
    x = r.get(f'{t}.weight')
    return {} if x is None else {('params', 'embedding'): x}
  if kind in ('sn_dense', 'sn_conv'):
    has_bias = ('params', *path.split('/'), 'bias') in template
    return _convert_sn(r, t, kind == 'sn_conv', has_bias)
  if kind in ('bn', 'bn_stats'):
    names = ('running_mean', 'running_var') + (('weight', 'bias') if kind == 'bn' else ())
    x = get(*names)
    r.get(f'{t}.num_batches_tracked')  # optional: consumed when present, never required
    if f'{t}.num_batches_tracked' in r.missing:
      r.missing.remove(f'{t}.num_batches_tracked')
    if any(a is None for a in x.values()):
      return {}
    leaves = {('batch_stats', 'mean'): x['running_mean'], ('batch_stats', 'var'): x['running_var']}
    if kind == 'bn':
      leaves.update({('params', 'scale'): x['weight'], ('params', 'bias'): x['bias']})
    return leaves
  if kind == 'gn':
    x = get('weight', 'bias')
    if any(a is None for a in x.values()):
      return {}
    return {('params', 'scale'): x['weight'], ('params', 'bias'): x['bias']}
  raise AssertionError(kind)


def convert_state_dict(state_dict: Mapping[str, Any], image_size: int
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
  """Converts an official LAMA generator state dict.

  Args:
    state_dict: name → array (NumPy, or anything `np.asarray` takes), with or without DDP's
      `module.` prefix.
    image_size: 64, 128 or 256 (it fixes the official block names).

  Returns:
    (spec, variables): `generator_spec` of the matching generator (rebuild it with
    `generator_from_spec(spec)`) and {'params', 'batch_stats', 'spectral'} as float32 NumPy trees.

  Raises:
    ConversionError: naming every missing or misshapen key (unmapped keys: a warning).
  """
  sd = strip_ddp_prefix(state_dict)
  generator = infer_generator(sd, image_size)
  # Imported here: generator_dir pulls in orbax, which a pure conversion does not need.
  from lama_jax.inference.generator_dir import abstract_variables  # pylint: disable=g-import-not-at-top
  abstract = abstract_variables(generator)
  template = {}
  for col, tree in abstract.items():
    for k, leaf in traverse_util.flatten_dict(dict(tree)).items():
      template[(col, *k)] = leaf
  reader = _Reader(sd)
  flat = {}
  num_blocks = len(generator.channels) - 1
  for path, t, kind in _entries(sd, image_size, num_blocks, generator.lama_local_blocks):
    for (col, leaf), arr in _convert_entry(reader, t, kind, template, path).items():
      key = (col, *path.split('/')) + ((leaf,) if leaf else ())
      if key not in template:
        raise ConversionError(f'{t}: no place for it in our generator ({"/".join(key)}).')
      want = template[key].shape
      arr = np.asarray(arr, np.float32)
      if kind == 'noise' and arr.size == int(np.prod(want)) and arr.ndim == 4:
        arr = arr.reshape(want)
      if arr.shape != tuple(want):
        raise ConversionError(f'{t}: shape {arr.shape} after conversion, our generator expects '
                              f'{tuple(want)} at {"/".join(key)}.')
      flat[key] = arr
  reader.check('generator', IGNORED_SUFFIXES)
  unfilled = sorted('/'.join(k) for k in template if k not in flat)
  if unfilled:
    raise ConversionError('not an official LAMA generator state dict: our variables left '
                          f'unfilled: {", ".join(unfilled)}')
  variables = {}
  for col in ('params', 'batch_stats', 'spectral'):
    variables[col] = traverse_util.unflatten_dict(
        {k[1:]: v for k, v in flat.items() if k[0] == col})
  return generator_spec(generator), variables


def official_shapes(image_size: int, ch: int = 64, num_classes: int = 184, z_dim: int = 128,
                    embed_dim: int | None = None, mask_hidden: int = 128
                    ) -> dict[str, tuple[int, ...]]:
  """Name → shape of every tensor in the official generator's state dict (no `module.` prefix).

  At ch=64 this is exactly `shared/reference/keys_G{size}.json`; other widths scale the blocks. Used
  to build test state dicts and by parity scripts.
  """
  from lama_jax.models import EMBED_DIM  # pylint: disable=g-import-not-at-top
  embed_dim = embed_dim or EMBED_DIM[image_size]
  mults = GENERATOR_CHANNELS[image_size]
  num_w, d = z_dim + embed_dim, z_dim + embed_dim + 2
  shapes: dict[str, tuple[int, ...]] = {}

  def sn(name, out, fan_in, weight_shape, bias=True):
    shapes[f'{name}.weight_orig'] = weight_shape
    shapes[f'{name}.weight_u'] = (out,)
    shapes[f'{name}.weight_v'] = (fan_in,)
    if bias:
      shapes[f'{name}.bias'] = (out,)

  def linear(name, fan_in, out):
    sn(name, out, fan_in, (out, fan_in))

  def conv(name, cin, out, k, bias=True):
    sn(name, out, cin * k * k, (out, cin, k, k), bias)

  def bn(name, c, affine=True):
    if affine:
      shapes[f'{name}.weight'] = (c,)
      shapes[f'{name}.bias'] = (c,)
    shapes[f'{name}.running_mean'] = (c,)
    shapes[f'{name}.running_var'] = (c,)
    shapes[f'{name}.num_batches_tracked'] = ()

  shapes['label_embedding.weight'] = (num_classes, embed_dim)
  linear('fc', z_dim, 16 * mults[0] * ch)
  for i, (cin, cout) in enumerate(zip(mults[:-1], mults[1:])):
    t, cin, cout = official_block_prefix(image_size, i), cin * ch, cout * ch
    shapes[f'{t}.alpha'] = ()
    conv(f'{t}.conv1', cin, cout, 3, bias=False)
    conv(f'{t}.conv2', cout, cout, 3, bias=False)
    for b, c in (('b1', cin), ('b2', cout)):
      shapes[f'{t}.{b}.rho'] = ()
      shapes[f'{t}.{b}.alpha'] = ()
      linear(f'{t}.{b}.weight_proj', num_w, c)
      linear(f'{t}.{b}.bias_proj', num_w, c)
      bn(f'{t}.{b}.batch_norm2d', c, affine=False)
    conv(f'{t}.c_sc', cin, cout, 1)
    shapes[f'{t}.noise1.noise_weight_seed'] = (1, cout, 1, 1)
    shapes[f'{t}.noise2.noise_weight_seed'] = (1, cout, 1, 1)
  bn('final.0', ch)
  conv('final.2', ch, 3, 3)
  m, h, md = 'mask_regress', mask_hidden, d // 4
  shapes[f'{m}.mask_adjust_alpha'] = ()
  linear(f'{m}.fc', d, 16 * h)
  for k in (1, 2, 3):
    shapes[f'{m}.conv{k}.alpha'] = ()
    bn(f'{m}.conv{k}.conv.0', h)
    conv(f'{m}.conv{k}.conv.2', h, h, 3, bias=False)
  bn(f'{m}.final.0', h)
  conv(f'{m}.final.2', h, 1, 1)
  linear(f'{m}.query_affine', d, md)
  linear(f'{m}.key_affine', d, md)
  for j in (0, 1):
    shapes[f'{m}.query_local.{j}.alpha'] = ()
    shapes[f'{m}.query_local.{j}.conv.0.weight'] = (md,)
    shapes[f'{m}.query_local.{j}.conv.0.bias'] = (md,)
    conv(f'{m}.query_local.{j}.conv.2', md, md, 3, bias=False)
  for j in (0, 2, 4):
    linear(f'style_mapping.{j}', z_dim, z_dim)
  return shapes


def random_state_dict(image_size: int, seed: int = 0, **kwargs) -> dict[str, np.ndarray]:
  """An official-shaped generator state dict of random tensors, as after training.

  Running variances are positive, and each spectral-norm layer's u, v come from 30 power iterations
  (as after many training steps); random u, v would give a tiny sigma and blow the activations up.
  """
  rng = np.random.default_rng(seed)
  sd = {}
  for name, shape in official_shapes(image_size, **kwargs).items():
    if name.endswith('num_batches_tracked'):
      sd[name] = np.asarray(7, np.int64)
    elif name.endswith('running_var'):
      sd[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
    elif not name.endswith(('weight_u', 'weight_v')):
      sd[name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
  add_spectral_vectors(sd, rng)
  return sd


def add_spectral_vectors(sd: dict[str, np.ndarray], rng: np.random.Generator) -> None:
  """Each spectral-norm layer's u, v after 30 power iterations on its weight_orig (in place)."""
  for name in [k for k in sd if k.endswith('.weight_orig')]:
    w = sd[name].reshape(sd[name].shape[0], -1).astype(np.float64)
    v = rng.standard_normal(w.shape[1])
    for _ in range(30):
      u = w @ v
      u /= np.linalg.norm(u)
      v = w.T @ u
      v /= np.linalg.norm(v)
    prefix = name[:-len('weight_orig')]
    sd[prefix + 'weight_u'], sd[prefix + 'weight_v'] = u.astype(np.float32), v.astype(np.float32)
