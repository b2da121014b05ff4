"""The mask-clarity experiment of the paper's Sec. 3 (Fig. 2): a mask-to-image generator trained on
ground-truth masks, tested with increasingly tainted masks (`taint_masks`: each layout's masks mixed
with a uniform mask over its real objects by a factor τ; `python -m lama_jax.mask_clarity --help`).

Each τ is one pass of the evaluation driver with the tainted masks given to the generator, feeding
the same evaluators as `evaluate` (alignment, fid, scene_fid) and the mask entropy of the given
masks (Sec. 5's measure). Every τ uses the same seeds (z and noise maps): only the mask changes.
"""
import os
import time
from typing import Any, Sequence

import numpy as np

from lama_jax import files
from lama_jax.evaluation import curve_plot
from lama_jax.evaluation import driver
from lama_jax.evaluation import registry
from lama_jax.evaluation import report as report_lib
from lama_jax.evaluation.common import EvalError, Settings, Target
from lama_jax.inference.generator import LayoutGenerator
from lama_jax.inference.sampling import ValBatch

DEFAULT_TAUS = '0,0.1,0.25,0.5,0.75,1.0'
METRICS = ('alignment', 'fid', 'scene_fid')
# Line colours of the plot, one per metric.
COLORS = {'alignment': (31, 119, 180), 'fid': (214, 39, 40), 'scene_fid': (44, 160, 44)}
LABELS = {'alignment': 'alignment (higher is better)', 'fid': 'FID', 'scene_fid': 'SceneFID'}
TABLE_HEAD = {'alignment': 'alignment', 'fid': 'FID', 'scene_fid': 'SceneFID'}
OUTPUTS = ('curve.png', 'table.md', 'results.json')


def default_metrics(dataset: str) -> tuple[str, ...]:
  """Alignment for the shapes set (no weights), FID and SceneFID otherwise."""
  return ('alignment',) if dataset == 'shapes' else ('fid', 'scene_fid')


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
  """Comma-separated τ values in [0, 1], in increasing order (the curve's points are joined in
  this order: given as 0,1,0.5 the line would double back).

  Raises:
    EvalError: not numbers, none, one outside [0, 1], or one given twice.
  """
  try:
    taus = [float(t) + 0.0 for t in text.split(',') if t.strip()]  # + 0.0: -0 is 0
  except ValueError:
    raise EvalError(f'--taus must be comma-separated numbers, got {text!r}') from None
  if not taus or any(not 0.0 <= t <= 1.0 for t in taus):
    raise EvalError(f'--taus must be numbers in [0, 1], got {text!r}')
  # A repeated τ would sample the whole split again for the same row.
  twice = sorted({t for t in taus if taus.count(t) > 1})
  if twice:
    raise EvalError(f'--taus {text}: {", ".join(f"{t:g}" for t in twice)} given more than once')
  return sorted(taus)


def _row(tau: float, metrics: dict[str, Any]) -> dict[str, Any]:
  """One τ's line of results.json from the evaluators' results."""
  row: dict[str, Any] = {'tau': tau, 'mask_entropy': metrics['mask_entropy']['adapted']}
  if 'alignment' in metrics:
    row['alignment'] = metrics['alignment']['overall']
    row['alignment_per_category'] = metrics['alignment']['per_category']
  for name in ('fid', 'scene_fid'):
    if name in metrics:
      row[name] = metrics[name]
  return row


def run(workdir: str, taus: Sequence[float], names: Sequence[str], settings: Settings,
        step: int | None = None, dataset: str | None = None) -> dict[str, Any]:
  """Samples the val split with tainted ground-truth masks for every τ; the results.json dict.

  The generator directory may or may not hold the layout-to-mask network (unused here).
  """
  gen = LayoutGenerator.load(workdir, step)
  target = Target.of(gen, dataset)
  per_tau, ids = [], []
  start = time.time()
  for t, tau in enumerate(taus):
    # A new set of evaluators per τ; the first τ caches the real FID statistics for the others.
    evaluators = registry.create([*names, 'mask_entropy'], settings, target)

    def tainted(batch: ValBatch, tau=tau) -> np.ndarray:
      return taint_masks(gen.place_masks(batch.boxes, batch.masks), batch.labels, tau)
    ids = driver.sample_split(gen, target.dataset, evaluators, settings, masks_fn=tainted,
                              desc=f'τ={tau:g} ({t + 1}/{len(taus)})')
    per_tau.append(_row(tau, driver.results(evaluators)[0]))
  return {'workdir': os.path.abspath(workdir), 'step': gen.step, 'dataset': target.dataset,
          'image_size': target.image_size, 'num_layouts': len(ids),
          'num_samples': settings.samples_per_layout(target.dataset), 'seed': settings.seed,
          'truncation': settings.truncation, 'metrics': list(names), 'taus': list(taus),
          'results': per_tau, 'time_s': round(time.time() - start, 2)}


def markdown_table(report: dict[str, Any]) -> str:
  """One row per τ: the metrics and the mask entropy."""
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


def plot_curve(report: dict[str, Any]) -> np.ndarray:
  """Metric vs τ, one line per metric, as a uint8 image."""
  rows, metrics = report['results'], report['metrics']
  series = {LABELS[m]: ([row[m] for row in rows], COLORS[m]) for m in metrics}
  return curve_plot.line_plot(
      [row['tau'] for row in rows], series,
      title=(f"Mask clarity: {report['dataset']} {report['image_size']}px, step {report['step']}, "
             f"{report['num_layouts']} layouts"),
      xlabel='tau   (tainted mask = (1 - tau) * M + tau / m)',  # the default font has no τ
      ylabel=' / '.join(LABELS[m] for m in metrics))


def write_outputs(report: dict[str, Any], out: str) -> dict[str, str]:
  """Writes curve.png, table.md and results.json into the existing folder `out`; their paths.

  The three replace an earlier run's together, so an interrupted run never leaves a mixed set.
  """
  paths = {name: os.path.join(out, name) for name in OUTPUTS}
  with files.atomic_files([paths[name] for name in OUTPUTS]) as tmps:
    tmp = dict(zip(OUTPUTS, tmps))
    files.write_png(tmp['curve.png'], plot_curve(report))
    files.write_text(tmp['table.md'], markdown_table(report))
    report_lib.write_json(tmp['results.json'], report)
  return paths
