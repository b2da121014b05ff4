r"""One GPU measurement session: our benchmark (bf16 steps, profiles, a restart) and the official timer.

Prepare here (fills the git-ignored .devbench/ with the wheels, the clu stand-in, the official timer
and the official model code exported from its git directory; nothing of it is committed):

  bash benchmarks/prepare_gpu_session.sh /work/shared/devbench /work/.mirror/ZejianLi+LAMA/repo
  python3 benchmarks/gpu_session.py --out /tmp/plan --dry_run      # the commands, nothing run

then on the GPU machine, from the checkout root, carrying .devbench (device tool:
carry=['.devbench']), two calls, the second at once so the machine is still warm (a session has
15 device minutes, the start included):

  python3 benchmarks/gpu_session.py --out "$OUT" --part 1 --budget_s 490     # timeout_s 520
  python3 benchmarks/gpu_session.py --out "$OUT" --part 2 --budget_s 280     # timeout_s 300

Sized from the 2026-11-27 H200 session (jax 0.11.2): the official timer takes 14-17 s a size; our
benchmark ~200 s at 128/20 in bf16 with a profile (init 12 s, step compile 146 s, two sampler
compiles ~20 s each), more than 185 s at 64/32. Part 1: the official fp32 iteration and our bf16
step at 128/20 with a profile; the same step with the normalisation statistics summed by halving
on the GPU too, as before (`--pairwise_sums=everywhere`, no sampling: the A/B of that change);
then 128/20 again from the persistent compilation cache the first run filled (what a restart
pays). Part 2: 256/24 (both codes, our profile). Part 3: 64/32, the official AMP timer at
128/20 and the 128/20 step compiled without autotuning (`--xla_gpu_autotune_level=0`, its own cache:
how much of the first compile is the search for kernels, and what the step loses without it); part 4 the fp32 steps: sessions of their own. Three concurrent compiles, tried to fill
the cache faster, did not finish in 240 s: items run one at a time.

Each item runs in its own process, its output going straight to OUT/logs/ITEM.log (kept if it is
cut off), and appends one JSON line to OUT/gpu_session.jsonl when it ends (the benchmark's line:
init_s, compile_s, step_s, gflop_per_image, mfu, sampling on the device and end to end, peak memory,
the profile summary; or the official timer's line). Items that cannot finish inside the remaining
budget (by their estimate) are skipped and listed in the last line.
"""
import argparse
import json
import os
import subprocess
import sys
import time

CACHE = '/tmp/lama_xla_cache'
# (name, part, kind, size, batch, dtype or amp, options, estimated seconds)
PLAN = (
    ('official_128_fp32', 1, 'official', 128, 20, False, (), 25),
    ('ours_128_bf16', 1, 'ours', 128, 20, 'bfloat16', ('profile',), 215),
    ('ours_128_bf16_pairwise', 1, 'ours', 128, 20, 'bfloat16',
     ('pairwise_everywhere', 'no_sampling'), 185),
    ('ours_128_bf16_restart', 1, 'ours', 128, 20, 'bfloat16', ('no_float32',), 45),
    ('official_256_fp32', 2, 'official', 256, 24, False, (), 25),
    ('ours_256_bf16', 2, 'ours', 256, 24, 'bfloat16', ('profile', 'no_float32'), 250),
    ('official_64_fp32', 3, 'official', 64, 32, False, (), 20),
    ('ours_64_bf16', 3, 'ours', 64, 32, 'bfloat16', ('no_float32',), 185),
    ('official_128_amp', 3, 'official', 128, 20, True, (), 20),
    ('ours_128_bf16_autotune0', 3, 'ours', 128, 20, 'bfloat16', ('autotune0', 'no_sampling'), 185),
    ('ours_128_fp32', 4, 'ours', 128, 20, 'float32', ('no_float32',), 220),
    ('ours_64_fp32', 4, 'ours', 64, 32, 'float32', ('no_float32',), 200),
    ('ours_256_fp32', 4, 'ours', 256, 24, 'float32', ('no_float32',), 260),
)


def _setup(root: str) -> dict:
  """Installs the carried wheels into /tmp/lama_site (no index on the machine); returns the env."""
  site = '/tmp/lama_site'
  wheels = [os.path.join(root, '.devbench', 'whl', w)
            for w in sorted(os.listdir(os.path.join(root, '.devbench', 'whl')))]
  subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
                  '--upgrade', '--target', site, *wheels], check=True)
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join([site, os.path.join(root, '.devbench'), root])
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env['PYTHONUNBUFFERED'] = '1'
  return env


def _command(item, root: str, steps: int) -> list[str]:
  name, _, kind, size, batch, option, options, _ = item
  if kind == 'official':
    return [sys.executable, os.path.join(root, '.devbench', 'time_official.py'), str(size),
            str(batch), str(steps)] + (['--amp'] if option else [])
  cache = CACHE + ('_autotune0' if 'autotune0' in options else '')
  command = [sys.executable, '-m', 'lama_jax.benchmark', f'--config=configs/coco{size}.py',
             f'--batch_size={batch}', f'--config.model.dtype={option}', f'--steps={steps}',
             f'--sample_batch={batch}', f'--compilation_cache_dir={cache}']
  if 'profile' in options:  # traces stay on the machine (large); the summary comes back
    command += [f'--profile_dir=/tmp/lama_traces/{name}', '--profile_steps=3']
  if 'no_float32' in options:  # the float32-outputs sampler: a second compile, ~20 s
    command += ['--nosample_float32']
  if 'no_sampling' in options:  # the step only: no sampler compiles
    command[command.index(f'--sample_batch={batch}')] = '--sample_batch=0'
  if 'pairwise_everywhere' in options:  # the step as before: halving sums on the GPU too
    command += ['--pairwise_sums=everywhere']
  return command


def _item_env(item, env: dict) -> dict:
  """The environment of one item: XLA's autotuning off for the 'autotune0' items."""
  if 'autotune0' not in item[6]:
    return env
  return dict(env, XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} --xla_gpu_autotune_level=0".strip())


def _device_name() -> str | None:
  try:
    return subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def _last_json(path: str):
  with open(path, encoding='utf-8', errors='replace') as f:
    lines = f.read().strip().splitlines()
  for line in reversed(lines):
    if line.startswith('{'):
      try:
        return json.loads(line)
      except json.JSONDecodeError:
        continue
  return None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='output folder ($OUT)')
  parser.add_argument('--budget_s', type=float, default=490, help='stop starting items after this')
  parser.add_argument('--steps', type=int, default=10, help='timed steps per item')
  parser.add_argument('--part', type=int, choices=(1, 2, 3, 4), default=1,
                      help='which part to run')
  parser.add_argument('--only', default='', help='comma-separated item names (any part)')
  parser.add_argument('--dry_run', action='store_true', help='print the commands only')
  args = parser.parse_args()
  start = time.time()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  only = [n for n in args.only.split(',') if n]
  plan = [p for p in PLAN if (p[0] in only if only else p[1] == args.part)]
  if args.dry_run:
    for item in plan:
      flags = _item_env(item, {}).get('XLA_FLAGS')
      print(item[0], *([f'XLA_FLAGS={flags!r}'] if flags else []),
            ' '.join(_command(item, root, args.steps)))
    return
  os.makedirs(os.path.join(args.out, 'logs'), exist_ok=True)
  env, device, skipped = _setup(root), _device_name(), []
  with open(os.path.join(args.out, 'gpu_session.jsonl'), 'a', encoding='utf-8') as out:
    for item in plan:
      left = args.budget_s - (time.time() - start)
      if left < item[-1]:
        skipped.append(item[0])
        continue
      log_path = os.path.join(args.out, 'logs', f'{item[0]}.log')
      t0 = time.time()
      with open(log_path, 'w', encoding='utf-8') as log:
        try:
          rc = subprocess.run(_command(item, root, args.steps), cwd=root, env=_item_env(item, env),
                              stdout=log,
                              stderr=subprocess.STDOUT, timeout=left, check=False).returncode
        except subprocess.TimeoutExpired:
          rc = 'timeout'
      row = {'item': item[0], 'device': device, 'rc': rc, 'wall_s': round(time.time() - t0, 1),
             'result': _last_json(log_path) if rc == 0 else None}
      out.write(json.dumps(row) + '\n')
      out.flush()
      print(json.dumps({k: v for k, v in row.items() if k != 'result'}), flush=True)
    out.write(json.dumps({'item': 'end', 'skipped': skipped,
                          'total_s': round(time.time() - start, 1)}) + '\n')


if __name__ == '__main__':
  main()
