r"""Our train step and sampling next to the official PyTorch code's, alternating, on one machine.

  python benchmarks/cpu_side_by_side.py --official_dir DIR [--official_python PY] [--quick]

DIR holds the official code's model/ and utils/ folders (github:ZejianLi/LAMA: a checkout or a
`git archive`; imported at run time, never copied here); PY is a Python with torch and torchvision
(default /work/venv_official/bin/python). By default it measures the train step at 64×64 batch 8
and 128×128 batch 4 (`--runs 64:8,128:4`), 5 rounds each; `--quick` is a proof of run (64:8, 2 short
rounds); `--sample_only --runs 64:1,128:1` times sampling alone, one layout per call (the
studio). Run it on a quiet machine: both codes share the cores.

For each size both codes run at once in two processes (the official one in its own Python, torch on
--threads threads, driven through benchmarks/official_worker.py) and take turns: in every round the
official train iteration (D step, G step) and ours, then the official eval-mode generator and our
sampling, the order flipping every round, so load changes on a shared machine hit both alike. Both
see the same layouts (3-8 objects of 8, the official padding) in float32. Ours samples end to end:
uint8 images on the host (`LayoutGenerator.generate(image_format='uint8', mask_format=None)`),
against the official forward alone; its on-device time is reported beside.

Appends one JSON line per round and a summary line per size (medians, min/max, quartiles, per-round
official/ours ratios, load average) to --out, and prints a table of medians [min-max] at the end.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position

from lama_jax.datasets.vocabulary import Vocabulary  # pylint: disable=wrong-import-position
from lama_jax.inference import layouts as layouts_lib  # pylint: disable=wrong-import-position
from lama_jax.training.trainer import Trainer  # pylint: disable=wrong-import-position

NUM_CLASSES, MAX_OBJECTS = 184, 8


def make_batches(size: int, batch: int, count: int, seed: int = 0) -> list[dict]:
  """time_official.py's synthetic batches: 3-8 objects, boxes in [0, 1], official padding."""
  rng = np.random.RandomState(seed)
  out = []
  for _ in range(count):
    labels = np.zeros((batch, MAX_OBJECTS), np.int32)
    boxes = np.tile(np.asarray(layouts_lib.PAD_BOX, np.float32), (batch, MAX_OBJECTS, 1))
    for b in range(batch):
      n = rng.randint(3, MAX_OBJECTS + 1)
      labels[b, :n] = rng.randint(1, NUM_CLASSES, n)
      boxes[b, :n] = np.concatenate([rng.uniform(0, 0.6, (n, 2)), rng.uniform(0.15, 0.4, (n, 2))],
                                    1)
    image = np.tanh(rng.standard_normal((batch, size, size, 3))).astype(np.float32)
    out.append({'image': image, 'boxes': boxes, 'labels': labels})
  return out


class Ours:
  """Our compiled step and LayoutGenerator for one size, on the side-by-side batches."""

  def __init__(self, size: int, batch: int, batches: list[dict], train: bool = True):
    import importlib  # pylint: disable=import-outside-toplevel
    config = importlib.import_module(f'configs.coco{size}').get_config()
    config.batch_size, config.data.dataset, config.model.dtype = batch, 'synthetic', 'float32'
    self.trainer = Trainer(config, steps_per_epoch=1000)
    self.batches = [self.trainer.global_batch(b) for b in batches]
    self.layouts = batches
    self.state = self.trainer.init_state()
    t0 = time.perf_counter()
    self.step = (self.trainer.step_fn.lower(self.state, self.batches[0], self.trainer.key).compile()
                 if train else None)
    self.compile_s = time.perf_counter() - t0
    self.calls = 0
    self.gen = None

  def train(self, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
      batch = self.batches[self.calls % len(self.batches)]
      self.calls += 1
      t0 = time.perf_counter()
      self.state, metrics = self.step(self.state, batch, self.trainer.key)
      jax.block_until_ready(metrics)
      times.append(time.perf_counter() - t0)
    return times

  def layout_generator(self):
    """Our LayoutGenerator of the state (made at the first call)."""
    if self.gen is None:
      self.gen = self.trainer.layout_generator(
          self.state, Vocabulary.numbered('synthetic', NUM_CLASSES))
    return self.gen

  def sample(self, repeats: int, on_device: bool = False) -> list[float]:
    self.layout_generator()
    times = []
    for _ in range(repeats):
      layout = self.layouts[self.calls % len(self.layouts)]
      self.calls += 1
      t0 = time.perf_counter()
      if on_device:
        outputs, _ = self.gen._dispatch(  # pylint: disable=protected-access
            layout['boxes'], layout['labels'], seed=self.calls, strict=False,
            image_format='uint8', mask_format=None, to_host=False)
        jax.block_until_ready(outputs[0])
      else:
        self.gen.generate(layout['boxes'], layout['labels'], seed=self.calls, strict=False,
                          image_format='uint8', mask_format=None)
      times.append(time.perf_counter() - t0)
    return times


class Official:
  """The official code in its own Python (benchmarks/official_worker.py), one command at a time."""

  def __init__(self, python: str, official_dir: str, size: int, batches_file: str, threads: int):
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'official_worker.py')
    self.proc = subprocess.Popen(
        [python, worker, '--official_dir', official_dir, '--size', str(size), '--batches',
         batches_file, '--threads', str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env={**os.environ, 'OMP_NUM_THREADS': str(threads)})
    self.info = self._read()

  def _read(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f'the official worker stopped (exit code {self.proc.wait()})')
    return json.loads(line)

  def ask(self, **cmd) -> list[float]:
    self.proc.stdin.write(json.dumps(cmd) + '\n')
    self.proc.stdin.flush()
    return next(iter(self._read().values()))

  def close(self) -> None:
    try:
      self.proc.stdin.write(json.dumps({'cmd': 'quit'}) + '\n')
      self.proc.stdin.flush()
      self.proc.wait(timeout=60)
    except (BrokenPipeError, subprocess.TimeoutExpired):
      self.proc.kill()
      self.proc.wait()


def _stats(values: list[float]) -> dict:
  v = np.asarray(values)
  return {'median': round(float(np.median(v)), 4), 'min': round(float(v.min()), 4),
          'max': round(float(v.max()), 4), 'q25': round(float(np.percentile(v, 25)), 4),
          'q75': round(float(np.percentile(v, 75)), 4), 'n': int(v.size)}


def summarise(rounds: list[dict], batch: int) -> dict:
  """Medians and spreads over every timed call, and the per-round official/ours ratios."""
  pooled = {k: [t for r in rounds for t in r[k]] for k in rounds[0] if k.endswith('_s')}
  out = {k: _stats(v) for k, v in pooled.items() if v}
  for what, ours in (('train', 'ours_train_s'), ('sample', 'ours_sample_s')):
    if ours not in pooled:  # --sample_only
      continue
    ratios = [np.median(r[f'official_{what}_s']) / np.median(r[ours]) for r in rounds]
    out[f'{what}_ratio_official_over_ours'] = {
        'of_medians': round(float(np.median(pooled[f'official_{what}_s']) /
                                  np.median(pooled[ours])), 3),
        'per_round': _stats(ratios)}
  for k in ('official_sample_s', 'ours_sample_s', 'ours_sample_device_s'):
    if pooled[k]:
      out[k[:-len('_s')] + '_ms_per_image'] = round(1000 * float(np.median(pooled[k])) / batch, 2)
  out['load'] = _stats([r['load'] for r in rounds])
  return out


def _parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--official_dir', required=True,
                      help='official LAMA checkout (its model/ and utils/ folders are imported)')
  parser.add_argument('--official_python', default='/work/venv_official/bin/python',
                      help='Python with torch and torchvision')
  parser.add_argument('--runs', default='64:8,128:4',
                      help='comma-separated SIZE:BATCH pairs, measured one after the other')
  parser.add_argument('--rounds', type=int, default=5, help='alternating rounds per size')
  parser.add_argument('--steps', type=int, default=2, help='train steps per code per round')
  parser.add_argument('--sample_repeats', type=int, default=3, help='sampling calls per round')
  parser.add_argument('--threads', type=int, default=2, help="the official code's torch threads")
  parser.add_argument('--sample_only', action='store_true',
                      help='sampling only (no train steps): e.g. --runs 64:1,128:1 for the '
                           "studio's one-image latency")
  parser.add_argument('--quick', action='store_true',
                      help='proof of run: 64:8 only, 2 rounds of 1 step and 2 sampling calls')
  parser.add_argument('--out', default='side_by_side.jsonl', help='JSON lines are appended here')
  args = parser.parse_args()
  if args.quick:
    args.runs, args.rounds, args.steps, args.sample_repeats = '64:8', 2, 1, 2
  try:
    args.runs = [tuple(int(v) for v in run.split(':')) for run in args.runs.split(',')]
  except ValueError:
    parser.error(f'--runs: expected SIZE:BATCH pairs such as 64:8,128:4, got {args.runs!r}')
  for size, _ in args.runs:
    if size not in (64, 128, 256):
      parser.error(f'--runs: size {size} is not one of 64, 128, 256')
  if not os.path.isdir(os.path.join(args.official_dir, 'model')):
    parser.error(f'--official_dir: no model/ folder in {args.official_dir}')
  return args


def _round(r: int, official: 'Official', ours: Ours, args: argparse.Namespace) -> dict:
  """One round: both train, then both sample; who goes first flips every round."""
  row = {'what': 'round', 'round': r, 'load': os.getloadavg()[0]}
  first, second = (('official', 'ours') if r % 2 == 0 else ('ours', 'official'))
  for what in ('sample',) if args.sample_only else ('train', 'sample'):
    for who in (first, second):
      if who == 'official':
        row[f'official_{what}_s'] = official.ask(
            cmd=what, **({'steps': args.steps} if what == 'train'
                         else {'repeats': args.sample_repeats}))
      elif what == 'train':
        row['ours_train_s'] = ours.train(args.steps)
      else:
        row['ours_sample_s'] = ours.sample(args.sample_repeats)
        row['ours_sample_device_s'] = ours.sample(args.sample_repeats, on_device=True)
  return row


def measure(size: int, batch: int, args: argparse.Namespace, log) -> dict:
  """Alternating rounds at one size and batch; returns the summary line (also logged)."""
  batches = make_batches(size, batch, count=2)
  with tempfile.TemporaryDirectory() as tmp:
    batches_file = os.path.join(tmp, 'batches.npz')
    np.savez(batches_file, count=len(batches), **{f'{k}{i}': v for i, b in enumerate(batches)
                                                 for k, v in b.items()})
    official = Official(args.official_python, args.official_dir, size, batches_file, args.threads)
    try:
      ours = Ours(size, batch, batches, train=not args.sample_only)
      head = {'what': 'setup', 'size': size, 'batch': batch, 'torch': official.info['torch'],
              'torch_threads': args.threads, 'jax': jax.__version__,
              'device': str(jax.devices()[0]), 'ours_compile_s': round(ours.compile_s, 1),
              'xla_flags': os.environ.get('XLA_FLAGS'), 'cpus': os.cpu_count()}
      print(json.dumps(head), flush=True)
      log.write(json.dumps(head) + '\n')
      if not args.sample_only:
        official.ask(cmd='train', steps=1), ours.train(1)  # warm-up (and our sampler's compile)
      official.ask(cmd='sample', repeats=1), ours.sample(1), ours.sample(1, on_device=True)
      rounds = []
      for r in range(args.rounds):
        rounds.append(_round(r, official, ours, args))
        log.write(json.dumps(rounds[-1]) + '\n')
        log.flush()
        print(json.dumps(rounds[-1]), flush=True)
    finally:
      official.close()
  summary = {'what': 'summary', 'size': size, 'batch': batch, **summarise(rounds, batch)}
  log.write(json.dumps(summary) + '\n')
  log.flush()
  return summary


def table(summaries: list[dict]) -> str:
  """The figures the README quotes: medians [min-max] and official/ours ratios."""
  def num(v):
    return f'{v:.3g}' if abs(v) < 1000 else f'{v:.0f}'

  def cell(stats, scale=1.0, unit='s'):
    if stats is None:
      return '-'
    return (f"{num(stats['median'] * scale)} {unit} "
            f"[{num(stats['min'] * scale)}-{num(stats['max'] * scale)}]")
  lines = ['size/batch | official step | ours step | step ratio | official sample ms/img | '
           'ours sample ms/img (end to end) | on device | sample ratio | load']
  for s in summaries:
    per_image = 1000 / s['batch']
    lines.append(' | '.join([
        f"{s['size']}/{s['batch']}", cell(s.get('official_train_s')), cell(s.get('ours_train_s')),
        f"{s['train_ratio_official_over_ours']['of_medians']}x" if 'ours_train_s' in s else '-',
        cell(s['official_sample_s'], per_image, 'ms'), cell(s['ours_sample_s'], per_image, 'ms'),
        cell(s['ours_sample_device_s'], per_image, 'ms'),
        f"{s['sample_ratio_official_over_ours']['of_medians']}x",
        f"{s['load']['median']:.1f} [{s['load']['min']:.1f}-{s['load']['max']:.1f}]"]))
  return '\n'.join(lines)


def main() -> None:
  args = _parse_args()
  summaries = []
  with open(args.out, 'a', encoding='utf-8') as log:
    for size, batch in args.runs:
      summaries.append(measure(size, batch, args, log))
      print(json.dumps(summaries[-1]), flush=True)
  print(table(summaries), flush=True)


if __name__ == '__main__':
  main()
