r"""One GPU measurement session: our benchmark (bf16, fp32, profiles) and the official timer.

Prepare here (fills the git-ignored .devbench/ with the wheels, the clu stand-in, the official timer
and the official model code exported from its git directory; nothing of it is committed):

  bash benchmarks/prepare_gpu_session.sh /work/shared/devbench /work/.mirror/ZejianLi+LAMA/repo
  python3 benchmarks/gpu_session.py --out /tmp/plan --dry_run      # the commands, nothing run

then on the GPU machine, from the checkout root, carrying .devbench (device tool:
carry=['.devbench'], timeout_s=600), in two calls on the same warm machine, so that a cut-off
loses at most one part:

  python3 benchmarks/gpu_session.py --out "$OUT" --part 1 --budget_s 540
  python3 benchmarks/gpu_session.py --out "$OUT" --part 2 --budget_s 420

Part 1 is the issue's MFU table in bf16 with the official fp32 timer beside each size (64/32,
128/20, 256/24; profiles at 128 and 256); part 2 the fp32 steps and the official AMP timer. Each
item runs in its own process with a timeout and appends one JSON line to OUT/gpu_session.jsonl as
soon as it ends (the benchmark's line: compile_s, step_s, gflop_per_image, mfu, sampling on the
device and end to end, sample_compile_s, peak memory, the profile summary; or the official
timer's line), with the log tail in OUT/logs/, so what finished comes back even if the session is
cut short. Items that cannot finish inside the remaining budget are skipped and listed in the last
line. Restart times (persistent compilation cache) are the `restarts` branch's own device script.
"""
import argparse
import json
import os
import subprocess
import sys
import time

# (name, part, kind, size, batch, dtype or amp, profile, estimated seconds)
PLAN = (
    ('official_64_fp32', 1, 'official', 64, 32, False, False, 40),
    ('ours_64_bf16', 1, 'ours', 64, 32, 'bfloat16', False, 120),
    ('official_128_fp32', 1, 'official', 128, 20, False, False, 40),
    ('ours_128_bf16', 1, 'ours', 128, 20, 'bfloat16', True, 160),
    ('official_256_fp32', 1, 'official', 256, 24, False, False, 50),
    ('ours_256_bf16', 2, 'ours', 256, 24, 'bfloat16', True, 200),
    ('ours_128_fp32', 2, 'ours', 128, 20, 'float32', False, 130),
    ('official_128_amp', 2, 'official', 128, 20, True, False, 40),
    ('ours_64_fp32', 2, 'ours', 64, 32, 'float32', False, 110),
    ('ours_256_fp32', 2, 'ours', 256, 24, 'float32', False, 170),
)


def _setup(root: str) -> dict:
  """Installs the carried wheels into /tmp/site (no index on the machine); returns the env."""
  site = '/tmp/lama_site'
  wheels = [os.path.join(root, '.devbench', 'whl', w)
            for w in sorted(os.listdir(os.path.join(root, '.devbench', 'whl')))]
  subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
                  '--target', site, *wheels], check=True)
  env = dict(os.environ)
  env['PYTHONPATH'] = os.pathsep.join([site, os.path.join(root, '.devbench'), root])
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  return env


def _command(item, root: str, steps: int) -> list[str]:
  name, _, kind, size, batch, option, profile, _ = item
  if kind == 'official':
    return [sys.executable, os.path.join(root, '.devbench', 'time_official.py'), str(size),
            str(batch), str(steps)] + (['--amp'] if option else [])
  command = [sys.executable, '-m', 'lama_jax.benchmark', f'--config=configs/coco{size}.py',
             f'--batch_size={batch}', f'--config.model.dtype={option}', f'--steps={steps}',
             f'--sample_batch={batch}']
  if profile:  # traces stay on the machine (large); the summary comes back in the JSON line
    command += [f'--profile_dir=/tmp/lama_traces/{name}', '--profile_steps=3']
  if option != 'bfloat16':  # the float32-outputs sampling once per size, with the bf16 item
    command += ['--nosample_float32']
  return command


def _device_name() -> str | None:
  try:
    return subprocess.run(['nvidia-smi', '--query-gpu=name', '--format=csv,noheader'],
                          capture_output=True, text=True, timeout=30, check=True).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None


def _last_json(text: str):
  for line in reversed(text.strip().splitlines()):
    if line.startswith('{'):
      try:
        return json.loads(line)
      except json.JSONDecodeError:
        continue
  return None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', required=True, help='output folder ($OUT)')
  parser.add_argument('--budget_s', type=float, default=540, help='stop starting items after this')
  parser.add_argument('--steps', type=int, default=10, help='timed steps per item')
  parser.add_argument('--part', type=int, choices=(1, 2), help='only this part of the plan')
  parser.add_argument('--only', default='', help='comma-separated item names (default: all)')
  parser.add_argument('--dry_run', action='store_true', help='print the commands only')
  args = parser.parse_args()
  start = time.time()
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  plan = [p for p in PLAN if (not args.only or p[0] in args.only.split(','))
          and (args.part is None or p[1] == args.part)]
  if args.dry_run:
    for item in plan:
      print(item[0], ' '.join(_command(item, root, args.steps)))
    return
  os.makedirs(os.path.join(args.out, 'logs'), exist_ok=True)
  env = _setup(root)
  skipped, device = [], _device_name()
  with open(os.path.join(args.out, 'gpu_session.jsonl'), 'a', encoding='utf-8') as log:
    for item in plan:
      left = args.budget_s - (time.time() - start)
      if left < item[-1]:
        skipped.append(item[0])
        continue
      t0 = time.time()
      try:
        proc = subprocess.run(_command(item, root, args.steps), cwd=root, env=env,
                              capture_output=True, text=True, timeout=left)
        rc, text = proc.returncode, proc.stdout + proc.stderr
      except subprocess.TimeoutExpired as e:
        rc, text = 'timeout', (e.stdout or b'').decode() + (e.stderr or b'').decode()
      with open(os.path.join(args.out, 'logs', f'{item[0]}.log'), 'w', encoding='utf-8') as f:
        f.write(text[-20000:])
      row = {'item': item[0], 'device': device, 'rc': rc, 'wall_s': round(time.time() - t0, 1),
             'result': _last_json(text) if rc == 0 else None}
      log.write(json.dumps(row) + '\n')
      log.flush()
      print(json.dumps({k: v for k, v in row.items() if k != 'result'}), flush=True)
    log.write(json.dumps({'item': 'end', 'skipped': skipped,
                          'total_s': round(time.time() - start, 1)}) + '\n')


if __name__ == '__main__':
  main()
