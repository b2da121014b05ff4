r"""The mask-clarity experiment of the paper's Sec. 3 (Fig. 2): a mask-to-image generator trained on
ground-truth masks, tested with increasingly tainted masks.

  python -m lama_jax.mask_clarity --workdir runs/shapes64_gt_masks --data_dir data/tfds
  python -m lama_jax.mask_clarity --workdir runs/coco128_gt_masks --data_dir data/tfds \
      --metrics fid,scene_fid --inception_weights pt_inception-2015-12-05-6726825d.pth

For every τ of --taus, every val layout (the first --max_layouts) is sampled --num_samples times in
eval mode with the semantic mask

    (1 − τ)·M + τ/m·1

where M = masks_to_layout(boxes, ground-truth 32×32 masks) [O, H, W] and m is the number of *real*
objects of that layout (label > 0). The all-one term covers the real objects' channels only: padding
channels stay exactly 0 for every τ (as M is 0 there), so τ = 1 gives 1/m on each real channel at every
pixel. The same seeds (z and noise maps) are used for every τ: only the mask changes.

Metrics (--metrics, comma separated):
  alignment  shapes only, no weights: share of thing boxes holding their category's colour.
  fid        FID against the real val images (--inception_weights, pytorch-fid's Inception).
  scene_fid  FID of 224×224 object crops (same weights).
Defaults: alignment for the shapes set, fid,scene_fid otherwise. The mean entropy of the normalised
input masks (the paper's mask entropy, Sec. 5) is always reported alongside.

Writes OUT (default RUN/mask_clarity): curve.png (metric vs τ, one line per metric), table.md and
results.json. Bad flags or inputs: one line on stderr, exit code 2.

The generator directory may or may not hold the layout-to-mask network's parameters (it is unused
when masks are given): both checkpoint forms load.
"""
import argparse
import functools
import json
import math
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

DEFAULT_TAUS = '0,0.1,0.25,0.5,0.75,1.0'
METRICS = ('alignment', 'fid', 'scene_fid')
SCENE_CROP = 224
# Line colours of the plot, one per metric.
COLORS = {'alignment': (31, 119, 180), 'fid': (214, 39, 40), 'scene_fid': (44, 160, 44)}
LABELS = {'alignment': 'alignment (higher is better)', 'fid': 'FID', 'scene_fid': 'SceneFID'}
TABLE_HEAD = {'alignment': 'alignment', 'fid': 'FID', 'scene_fid': 'SceneFID'}


class MaskClarityError(Exception):
  """Bad flags or inputs: reported as one line, exit code 2."""


# ---------------------------------------------------------------------------------------------
# Tainting.


def taint_masks(masks: np.ndarray, labels: np.ndarray, tau: float) -> np.ndarray:
  """(1 − τ)·M + τ/m·1 over each layout's real objects; padding channels stay 0.

  Args:
    masks: [B, O, H, W] ground-truth semantic masks M (padding channels 0).
    labels: [B, O] category ids, 0 = padding; m = the number of labels > 0 per row.
    tau: in [0, 1].

  Returns:
    float32 [B, O, H, W].
  """
  masks = np.asarray(masks, np.float32)
  real = (np.asarray(labels) > 0).astype(np.float32)  # [B, O]
  m = np.maximum(real.sum(1), 1.0)  # [B]
  uniform = (real / m[:, None])[:, :, None, None]
  return ((1.0 - tau) * masks * real[:, :, None, None] + tau * uniform).astype(np.float32)


def parse_taus(text: str) -> list[float]:
  try:
    taus = [float(t) for t in text.split(',') if t.strip()]
  except ValueError:
    raise MaskClarityError(f'--taus must be comma-separated numbers, got {text!r}') from None
  if not taus or any(not 0.0 <= t <= 1.0 for t in taus):
    raise MaskClarityError(f'--taus must be numbers in [0, 1], got {text!r}')
  return taus


# ---------------------------------------------------------------------------------------------
# Loading and sampling.


def _abstract_with_masks(generator, num_objects: int) -> dict[str, Any]:
  """The variables of `generator` initialised with masks given (no layout-to-mask network)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lama_jax.inference import generator_dir  # pylint: disable=g-import-not-at-top
  z, size = generator.z_dim, generator.image_size
  args = (jnp.zeros((1, num_objects, z)), jnp.full((1, num_objects, 4), 0.5),
          jnp.ones((1, num_objects), jnp.int32), jnp.zeros((1, z)))
  masks = jnp.zeros((1, num_objects, size, size))
  rngs = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  tree = jax.eval_shape(lambda: generator.init(rngs, *args, masks=masks))
  return {k: tree.get(k, {}) for k in generator_dir.COLLECTIONS}


def load_generator(path: str, step: int | None = None):
  """A LayoutGenerator from a directory saved with or without the (unused) mask network."""
  from unittest import mock  # pylint: disable=g-import-not-at-top
  from lama_jax.inference import generator_dir  # pylint: disable=g-import-not-at-top
  from lama_jax.inference.generator import LayoutGenerator  # pylint: disable=g-import-not-at-top
  try:
    return LayoutGenerator.load(path, step)
  except generator_dir.GeneratorDirError:
    raise
  except Exception:  # pylint: disable=broad-except
    pass  # the checkpoint's tree lacks the mask network: restore onto the masks-given tree
  try:
    with mock.patch.object(generator_dir, 'abstract_variables', _abstract_with_masks):
      return LayoutGenerator.load(path, step)
  except generator_dir.GeneratorDirError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise MaskClarityError(f'cannot restore the generator checkpoint in {path}: '
                           f'{_one_line(e)}') from None


@functools.lru_cache(maxsize=None)
def _forward_fn(generator):
  import jax  # pylint: disable=g-import-not-at-top

  @jax.jit
  def forward(variables, z_obj, boxes, labels, z_im, masks, keys):
    def one(z_o, bx, lb, z_i, mk, key):
      image, _, _ = generator.apply(variables, z_o[None], bx[None], lb[None], z_i[None],
                                    train=False, masks=mk[None], rngs={'noise': key})
      return image[0]
    return jax.vmap(one)(z_obj, boxes, labels, z_im, masks, keys)
  return forward


def generate_with_masks(gen, boxes: np.ndarray, labels: np.ndarray, masks: np.ndarray, seed: int,
                        truncation: float | None) -> np.ndarray:
  """Eval-mode images [B, H, W, 3] in [−1, 1] from given semantic masks [B, O, H, W].

  The noise is drawn as `LayoutGenerator.generate` draws it for `seed` (row b from (seed, b)).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from lama_jax.inference.generator import _row_keys  # pylint: disable=g-import-not-at-top
  b = len(labels)
  z_obj, z_im = gen.sample_z(b, seed, truncation)
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(_row_keys(seed, b))
  image = _forward_fn(gen.generator)(gen.variables, jnp.asarray(z_obj), jnp.asarray(boxes),
                                     jnp.asarray(labels, jnp.int32), jnp.asarray(z_im),
                                     jnp.asarray(masks), keys)
  return np.asarray(image)


@functools.lru_cache(maxsize=None)
def _layout_fn(size: int):
  import jax  # pylint: disable=g-import-not-at-top
  from lama_jax.models.mask import masks_to_layout  # pylint: disable=g-import-not-at-top
  return jax.jit(lambda boxes, masks: masks_to_layout(boxes, masks, size))


def place_masks(boxes: np.ndarray, masks: np.ndarray, size: int) -> np.ndarray:
  """Box-local masks [B, O, 32, 32] → semantic masks [B, O, size, size] (masks_to_layout)."""
  return np.asarray(_layout_fn(size)(np.asarray(boxes, np.float32), np.asarray(masks, np.float32)))


# ---------------------------------------------------------------------------------------------
# The experiment.


def run(args: argparse.Namespace, metrics: Sequence[str]) -> dict[str, Any]:
  """Samples the val split for every τ; returns the results dict written to results.json."""
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  from lama_jax import evaluate as ev  # pylint: disable=g-import-not-at-top
  from lama_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  from lama_jax.metrics import mask_entropy, normalize_mask  # pylint: disable=g-import-not-at-top
  from lama_jax import visualize  # pylint: disable=g-import-not-at-top
  from lama_jax.sample import _layout_seed  # pylint: disable=g-import-not-at-top

  taus = parse_taus(args.taus)
  gen = load_generator(args.workdir, args.step)
  dataset = args.dataset or gen.dataset
  if 'alignment' in metrics and dataset != 'shapes':
    raise MaskClarityError(f'alignment is for the shapes set only, not {dataset}; use fid,scene_fid')
  if args.num_samples < 1 or args.batch_size < 1:
    raise MaskClarityError('--num_samples and --batch_size must be at least 1')
  size = gen.image_size
  try:
    total = input_pipeline.num_examples(args.data_dir, dataset, 'val')
    ds = input_pipeline.create_eval_dataset(args.data_dir, dataset, size, args.batch_size,
                                            gen.max_objects, with_masks=True)
  except (FileNotFoundError, ValueError) as e:
    raise MaskClarityError(_one_line(e)) from None
  if args.max_layouts:
    total = min(total, args.max_layouts)
  if total < 1:
    raise MaskClarityError(f'the {dataset} val split in {args.data_dir} is empty')
  extract = None
  if 'fid' in metrics or 'scene_fid' in metrics:
    try:
      extract = ev.make_inception(args.inception_weights, args.inception_batch_size)
    except ev.EvalError as e:
      raise MaskClarityError(str(e)) from None
  truncation = args.truncation if args.truncation > 0 else None
  paths = {kind: ev._stats_path(args.data_dir, dataset, size, kind, args.max_layouts)  # pylint: disable=protected-access
           for kind in ('full', 'scene')}
  real = {kind: None for kind in paths}
  if 'fid' in metrics and not os.path.exists(paths['full']):
    real['full'] = ev.InceptionStats(extract, args.inception_batch_size)
  if 'scene_fid' in metrics and not os.path.exists(paths['scene']):
    real['scene'] = ev.InceptionStats(extract, args.inception_batch_size)

  per_tau = []
  start = time.time()
  for t, tau in enumerate(taus):
    alignment = ev.Alignment() if 'alignment' in metrics else None
    fake_full = ev.InceptionStats(extract, args.inception_batch_size) if 'fid' in metrics else None
    fake_scene = (ev.InceptionStats(extract, args.inception_batch_size)
                  if 'scene_fid' in metrics else None)
    entropy_sum, seen = 0.0, 0
    bar = tqdm(total=total * args.num_samples, unit='image',
               desc=f'τ={tau:g} ({t + 1}/{len(taus)})')
    for b, batch in enumerate(ds.as_numpy_iterator()):
      n = min(len(batch['labels']), total - seen)
      if n <= 0:
        break
      boxes, labels = batch['boxes'][:n], batch['labels'][:n]
      if t == 0 and (real['full'] or real['scene']):
        real_images = visualize.to_uint8_truncated(batch['image'][:n])
        if real['full']:
          real['full'].add(list(real_images))
        if real['scene']:
          real['scene'].add(ev._crops(real_images, boxes, labels, SCENE_CROP, 'ceil')[0])  # pylint: disable=protected-access
      # Pad to one compiled batch shape (repeat the last layout), drop the padding afterwards.
      pad = args.batch_size - n
      pboxes, plabels, pmasks = (np.concatenate([x[:n], np.repeat(x[n - 1:n], pad, 0)])
                                 for x in (batch['boxes'], batch['labels'], batch['masks']))
      semantic = taint_masks(place_masks(pboxes, pmasks, size), plabels, tau)
      entropy_sum += mask_entropy(normalize_mask(semantic[:n])) * n
      for r in range(args.num_samples):
        out = generate_with_masks(gen, pboxes, plabels, semantic,
                                  _layout_seed(args.seed, b * 1000 + r), truncation)
        images = visualize.to_uint8_truncated(out[:n])
        if alignment:
          alignment.add(images, boxes, labels)
        if fake_full:
          fake_full.add(list(images))
        if fake_scene:
          fake_scene.add(ev._crops(images, boxes, labels, SCENE_CROP, 'floor')[0])  # pylint: disable=protected-access
        bar.update(n)
      seen += n
    bar.close()
    row: dict[str, Any] = {'tau': tau, 'mask_entropy': entropy_sum / max(seen, 1)}
    try:
      if alignment:
        res = alignment.result()
        row['alignment'] = res['overall']
        row['alignment_per_category'] = res['per_category']
      if fake_full or fake_scene:
        from lama_jax.metrics.fid import cached_statistics  # pylint: disable=g-import-not-at-top
        from lama_jax.metrics.frechet import frechet_distance  # pylint: disable=g-import-not-at-top
      if fake_full:
        stats = cached_statistics(paths['full'], real['full'].stats if real['full'] else None)
        row['fid'] = float(frechet_distance(*stats, *fake_full.stats()))
      if fake_scene:
        stats = cached_statistics(paths['scene'], real['scene'].stats if real['scene'] else None)
        row['scene_fid'] = float(frechet_distance(*stats, *fake_scene.stats()))
    except ev.EvalError as e:
      raise MaskClarityError(str(e)) from None
    per_tau.append(row)
  return {'workdir': os.path.abspath(args.workdir), 'step': gen.step, 'dataset': dataset,
          'image_size': size, 'num_layouts': total, 'num_samples': args.num_samples,
          'seed': args.seed, 'truncation': truncation, 'metrics': list(metrics),
          'taus': taus, 'results': per_tau, 'time_s': round(time.time() - start, 2)}


# ---------------------------------------------------------------------------------------------
# Outputs.


def markdown_table(report: dict[str, Any]) -> str:
  metrics = report['metrics']
  head = ['τ'] + [TABLE_HEAD[m] for m in metrics] + ['mask entropy']
  lines = [f"Mask clarity ({report['dataset']} {report['image_size']}×{report['image_size']}, "
           f"step {report['step']}, {report['num_layouts']} layouts × {report['num_samples']} "
           'samples)', '', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for row in report['results']:
    cells = [f"{row['tau']:g}"]
    for m in metrics:
      cells.append(f'{row[m]:.3f}' if m == 'alignment' else f'{row[m]:.2f}')
    cells.append(f"{row['mask_entropy']:.3f}")
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
  """About `count` round tick values covering [lo, hi]."""
  if not math.isfinite(lo) or not math.isfinite(hi):
    return [0.0, 1.0]
  if hi - lo < 1e-9:
    lo, hi = lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3)
  raw = (hi - lo) / max(count - 1, 1)
  mag = 10 ** math.floor(math.log10(raw))
  step = next(s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw)
  first = math.floor(lo / step) * step
  ticks = []
  v = first
  while v < hi + step * 0.999:
    ticks.append(round(v, 10))
    v += step
  return ticks


def _fmt_tick(v: float) -> str:
  return f'{v:g}' if abs(v) >= 1e-3 or v == 0 else f'{v:.1e}'


def plot_curve(report: dict[str, Any], path: str, width: int = 640, height: int = 420) -> None:
  """Metric vs τ as a PNG line plot (PIL): axes, ticks, labels, one line with points per metric."""
  from PIL import Image, ImageDraw, ImageFont  # pylint: disable=g-import-not-at-top
  font = ImageFont.load_default()
  img = Image.new('RGB', (width, height), 'white')
  draw = ImageDraw.Draw(img)
  left, right, top, bottom = 70, width - 30, 40, height - 60
  taus = [row['tau'] for row in report['results']]
  metrics = report['metrics']
  values = [row[m] for row in report['results'] for m in metrics if math.isfinite(row[m])]
  yticks = _nice_ticks(min(values, default=0.0), max(values, default=1.0))
  ylo, yhi = yticks[0], yticks[-1]
  xticks = _nice_ticks(min(0.0, min(taus)), max(1.0, max(taus)), 6)
  xlo, xhi = xticks[0], xticks[-1]

  def px(x, y):
    return (left + (x - xlo) / (xhi - xlo) * (right - left),
            bottom - (y - ylo) / (yhi - ylo) * (bottom - top))

  for v in yticks:  # horizontal grid, y ticks and labels
    _, y = px(xlo, v)
    draw.line([(left, y), (right, y)], fill=(225, 225, 225))
    draw.line([(left - 5, y), (left, y)], fill='black')
    text = _fmt_tick(v)
    draw.text((left - 8 - draw.textlength(text, font=font), y - 6), text, fill='black', font=font)
  for v in xticks:
    x, _ = px(v, ylo)
    draw.line([(x, bottom), (x, bottom + 5)], fill='black')
    text = _fmt_tick(v)
    draw.text((x - draw.textlength(text, font=font) / 2, bottom + 8), text, fill='black',
              font=font)
  draw.line([(left, top), (left, bottom), (right, bottom)], fill='black', width=1)
  xlabel = 'tau   (tainted mask = (1 - tau) * M + tau / m)'  # the default font has no τ
  draw.text(((left + right) / 2 - draw.textlength(xlabel, font=font) / 2, bottom + 28), xlabel,
            fill='black', font=font)
  ylabel = ' / '.join(LABELS[m] for m in metrics)
  label_img = Image.new('RGB', (int(draw.textlength(ylabel, font=font)) + 4, 14), 'white')
  ImageDraw.Draw(label_img).text((2, 1), ylabel, fill='black', font=font)
  label_img = label_img.rotate(90, expand=True)
  img.paste(label_img, (8, int((top + bottom) / 2 - label_img.height / 2)))
  title = (f"Mask clarity: {report['dataset']} {report['image_size']}px, step {report['step']}, "
           f"{report['num_layouts']} layouts")
  draw.text((left, 12), title, fill='black', font=font)
  for k, m in enumerate(metrics):
    color = COLORS[m]
    pts = [px(row['tau'], row[m]) for row in report['results'] if math.isfinite(row[m])]
    if len(pts) > 1:
      draw.line(pts, fill=color, width=2)
    for x, y in pts:
      draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color, outline='black')
    lx, ly = right - 190, top + 8 + 16 * k  # legend
    draw.line([(lx, ly + 6), (lx + 20, ly + 6)], fill=color, width=2)
    draw.ellipse([lx + 7, ly + 3, lx + 13, ly + 9], fill=color)
    draw.text((lx + 26, ly), LABELS[m], fill='black', font=font)
  tmp = path + '.tmp.png'
  img.save(tmp)
  os.replace(tmp, path)


def _json_safe(x: Any) -> Any:
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: _json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_json_safe(v) for v in x]
  if isinstance(x, (np.floating, np.integer)):
    return _json_safe(x.item())
  return x


def write_outputs(report: dict[str, Any], out: str) -> dict[str, str]:
  os.makedirs(out, exist_ok=True)
  paths = {name: os.path.join(out, name) for name in ('curve.png', 'table.md', 'results.json')}
  plot_curve(report, paths['curve.png'])
  with open(paths['table.md'], 'w') as f:
    f.write(markdown_table(report))
  with open(paths['results.json'], 'w') as f:
    json.dump(_json_safe(report), f, indent=1)
  return paths


# ---------------------------------------------------------------------------------------------
# Command line.


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line, exit 2
    sys.stderr.write(f'mask_clarity: error: {message}\n')
    sys.exit(2)


def _parser() -> argparse.ArgumentParser:
  p = _Parser(prog='python -m lama_jax.mask_clarity', description=__doc__.split('\n\n')[0],
              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True,
                 help='generator directory or training workdir of a GT-mask generator')
  p.add_argument('--data_dir', required=True, help='TFDS data dir holding the prepared dataset')
  p.add_argument('--dataset', default=None, help="default: the generator's dataset")
  p.add_argument('--step', type=int, default=None, help='checkpoint step (default: latest)')
  p.add_argument('--taus', default=DEFAULT_TAUS, help=f'comma-separated τ values (default {DEFAULT_TAUS})')
  p.add_argument('--metrics', default=None,
                 help='comma-separated from alignment, fid, scene_fid (default: alignment for '
                      'shapes, fid,scene_fid otherwise)')
  p.add_argument('--inception_weights', default=None,
                 help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth (fid, scene_fid)")
  p.add_argument('--inception_batch_size', type=int, default=50)
  p.add_argument('--max_layouts', type=int, default=None, help='use the first N val layouts')
  p.add_argument('--num_samples', type=int, default=1, help='samples per layout and τ')
  p.add_argument('--batch_size', type=int, default=16)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--truncation', type=float, default=2.0, help='z truncation; ≤ 0 disables it')
  p.add_argument('--out', default=None, help='output folder (default RUN/mask_clarity)')
  return p


def _one_line(e: BaseException) -> str:
  text = ' '.join(str(e).split())
  return text or type(e).__name__


def _select_metrics(text: str | None, dataset_hint: str | None, args) -> list[str]:
  if text is None:
    return ['alignment'] if dataset_hint == 'shapes' else ['fid', 'scene_fid']
  metrics = [m.strip() for m in text.split(',') if m.strip()]
  bad = [m for m in metrics if m not in METRICS]
  if bad or not metrics:
    raise MaskClarityError(f'unknown --metrics {bad or text!r}; choose from {", ".join(METRICS)}')
  if ('fid' in metrics or 'scene_fid' in metrics):
    if not args.inception_weights:
      raise MaskClarityError('fid and scene_fid need --inception_weights '
                             '(pt_inception-2015-12-05-6726825d.pth)')
    if not os.path.isfile(args.inception_weights):
      raise MaskClarityError(f'--inception_weights {args.inception_weights} does not exist')
  return list(dict.fromkeys(metrics))


def _dataset_hint(workdir: str) -> str | None:
  try:
    with open(os.path.join(workdir, 'generator.json')) as f:
      return json.load(f).get('dataset')
  except (OSError, ValueError, AttributeError):
    return None


def main(argv: Sequence[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  try:
    parse_taus(args.taus)
    metrics = _select_metrics(args.metrics, args.dataset or _dataset_hint(args.workdir), args)
    if args.metrics is None and 'fid' in metrics:
      _select_metrics('fid,scene_fid', None, args)  # the defaults need the weights too
    from lama_jax.inference.generator_dir import GeneratorDirError  # pylint: disable=g-import-not-at-top
    try:
      report = run(args, metrics)
    except GeneratorDirError as e:
      raise MaskClarityError(_one_line(e)) from None
    out = args.out or os.path.join(args.workdir, 'mask_clarity')
    paths = write_outputs(report, out)
  except MaskClarityError as e:
    sys.stderr.write(f'mask_clarity: error: {_one_line(e)}\n')
    return 2
  print(markdown_table(report), end='')
  print(f"Wrote {paths['curve.png']}, {paths['table.md']}, {paths['results.json']}")
  return 0


if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
