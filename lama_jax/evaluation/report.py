"""The evaluation report: metrics.json (strict JSON) and metrics.md (tables like the paper's)."""
import math
import os
from typing import Any

import numpy as np

from lama_jax import files


def json_safe(x: Any) -> Any:
  """NaN and infinities as null (strict JSON readers reject them); NumPy scalars as Python ones."""
  if isinstance(x, dict):
    return {k: json_safe(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_safe(v) for v in x]
  if isinstance(x, (np.floating, np.integer)):
    x = x.item()
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def fmt(x: float | None, scale: float = 1.0, digits: int = 2) -> str:
  """A number for a table ('nan' for None, NaN and infinities)."""
  return 'nan' if x is None or not math.isfinite(x) else f'{x * scale:.{digits}f}'


def _main_columns(m: dict[str, Any]) -> list[tuple[str, str]]:
  """Table 1's columns of the metrics computed."""
  cols = []
  if 'fid' in m:
    cols.append(('FID ↓', fmt(m['fid'])))
  if 'scene_fid' in m:
    cols.append(('SceneFID ↓', fmt(m['scene_fid'])))
  if 'ds' in m:
    cols.append(('DS ↑', f'{fmt(m["ds"]["mean"])} ± {fmt(m["ds"]["std"])}'))
  if 'cas' in m:
    cols.append(('CAS ↑', fmt(m['cas']['accuracy'], 100)))
  if 'yolo' in m:
    cols.append(('YOLO AP / AP50 / AP75 ↑',
                 ' / '.join(fmt(m['yolo'][k], 100) for k in ('AP', 'AP50', 'AP75'))))
  return cols


def markdown_table(report: dict[str, Any]) -> str:
  """The results as Markdown tables shaped like the paper's (Table 1, Table 4)."""
  m = report['metrics']
  name = os.path.basename(report['workdir'].rstrip('/')) or report['workdir']
  size = f'{report["image_size"]}×{report["image_size"]}'
  lines = [f'# Evaluation of {name} (step {report["step"]})', '',
           f'{report["dataset"]} val, {report["num_layouts"]} layouts × {report["num_samples"]} '
           f'samples, {size}, seed {report["seed"]}'
           + (f' (first {report["max_layouts"]} layouts only)' if report['max_layouts'] else ''),
           '']
  cols = _main_columns(m)
  if cols:
    head = ['Method', 'Resolution'] + [c for c, _ in cols]
    lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head),
              '| ' + ' | '.join([name, size] + [v for _, v in cols]) + ' |', '']
  if 'mask_entropy' in m:
    e = m['mask_entropy']
    lines += ['Mask entropy (Table 4)', '',
              '| Method | H(raw mask) | H(adapted mask) | abs(α) |', '|---|---|---|---|',
              f'| {name} | {fmt(e["raw"], digits=4)} | {fmt(e["adapted"], digits=4)} | '
              f'{fmt(e.get("abs_alpha"), digits=4)} |', '']
  if 'alignment' in m:
    a = m['alignment']
    cats = list(a['per_category'])
    lines += [f'Shapes alignment ({a["num_boxes"]} thing boxes, %)', '',
              '| Method | overall | ' + ' | '.join(cats) + ' |', '|' + '---|' * (len(cats) + 2),
              f'| {name} | {fmt(a["overall"], 100)} | '
              + ' | '.join(fmt(a['per_category'][c], 100) for c in cats) + ' |', '']
  for note in report['notes']:
    lines.append(f'- {note}')
  return '\n'.join(lines).rstrip() + '\n'


def write_json(path: str, report: dict[str, Any]) -> None:
  """The report as strict JSON (NaN as null), written atomically."""
  files.write_json(path, json_safe(report))
