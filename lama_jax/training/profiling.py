"""Where a compiled program's time goes: a `jax.profiler` trace aggregated by HLO op and op kind.

    summary = profiling.profile(lambda: jax.block_until_ready(compiled(*args)), compiled.as_text(),
                                repeats=3, logdir='/tmp/trace')
    summary['by_kind']      # {'convolution': {'ms': ..., 'share': ..., 'count': ...}, ...}
    summary['top_sources']  # op time by kind and model code ('D bwd block#/conv#/reduce_sum')
    summary['top_ops']      # the slowest ops: name, kind, source, ms per run, count per run, share

Op events are those the runtime tags with the HLO instruction they execute (`hlo_op`): the device's
kernels on a GPU or TPU, the thunks of XLA:CPU's executor threads on a CPU. Their durations are summed
(kernels that overlap each count fully), so the shares are shares of op time, not of wall time. On a
CPU, XLA's Eigen convolutions run asynchronously on the intra-op pool and their events do not show
their compute: there the shares describe the other ops only. The op kind comes from the compiled
HLO: a fusion is a convolution (or dot) fusion when its fused computation holds one, a reduce fusion
when it reduces, an elementwise fusion otherwise; custom calls are named by their target (cuDNN
convolutions count as convolutions). The source is the JAX op_name metadata with indices as '#'.
"""
import collections
import glob
import os
import re
import time
from typing import Any, Callable

import jax

_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(?:\([^=]*?\)|\S+)\s+([\w\-]+)\((.*)$')
_CALLS = re.compile(r'(?:calls|to_apply|body|condition)=%?([\w.\-]+)')
_TARGET = re.compile(r'custom_call_target="([^"]+)"')
_OP_NAME = re.compile(r'op_name="([^"]+)"')
HOST = 'hlo_op (host threads)'  # how ops are keyed when only the host's threads traced them
# Lines that summarise or duplicate the op events (GPU traces): never summed.
_SKIP_LINES = ('XLA Modules', 'XLA Ops', 'Steps', 'Framework', 'Source', 'XLA TraceMe')


def _parse_hlo(hlo_text: str):
  """Instruction name → (opcode, called computations, custom-call target); computation → the
  opcodes it holds, also those of the computations it calls (nested fusions)."""
  instructions, first_source = {}, {}
  opcodes, calls = collections.defaultdict(set), collections.defaultdict(set)
  current = ''
  for line in hlo_text.splitlines():
    m = _INSTRUCTION.match(line)
    if m:
      name, opcode, rest = m.groups()
      target = _TARGET.search(rest)
      called = _CALLS.findall(rest)
      op_name = _OP_NAME.search(rest)
      op_name = op_name.group(1) if op_name else ''
      if op_name:
        first_source.setdefault(current, op_name)
      instructions[name] = (opcode, called, target.group(1) if target else '', op_name)
      opcodes[current].add(opcode)
      calls[current].update(called)
      continue
    m = _COMPUTATION.match(line)
    if m and '=' not in line.split('{')[0]:
      current = m.group(1)

  def closure(comp, seen):
    ops = set(opcodes.get(comp, ()))
    for inner in calls.get(comp, ()):
      if inner not in seen:
        seen.add(inner)
        ops |= closure(inner, seen)
    return ops
  for name, (opcode, called, target, op_name) in instructions.items():
    if not op_name:  # a fusion without metadata: name it after what it fuses
      op_name = next((first_source[c] for c in called if c in first_source), '')
      instructions[name] = (opcode, called, target, op_name)
  return instructions, {comp: closure(comp, {comp}) for comp in list(opcodes)}


def _custom_call_kind(target: str) -> str:
  low = target.lower()
  if 'conv' in low:
    return 'convolution'
  if any(s in low for s in ('gemm', 'matmul', 'cublas', 'dot')):
    return 'dot'
  return f'custom-call:{target}'


def _source(op_name: str) -> str:
  """A JAX op_name as a short source group: 'D bwd block#/conv#/reduce_sum'."""
  if not op_name:
    return '?'
  parts = op_name.split('/')[1:] if op_name.startswith('jit(') else op_name.split('/')
  head = parts[0] if parts else ''
  m = re.match(r'^(transpose\()?(?:jvp\()?(\w+)', head)
  where = ''
  if m:
    model = {'Generator': 'G', 'Discriminator': 'D'}.get(m.group(2), m.group(2))
    where = f"{model} {'bwd' if m.group(1) else 'fwd'}"
    parts = parts[1:]
  rest = '/'.join(p for p in parts if not p.startswith('jit(')) or head
  return f'{where} {re.sub(r"[0-9]+", "#", rest)}'.strip()


def op_sources(hlo_text: str) -> dict[str, str]:
  """Every HLO instruction → the model code it comes from (`_source` of its op_name metadata)."""
  instructions, _ = _parse_hlo(hlo_text)
  return {name: _source(entry[3]) for name, entry in instructions.items()}


def op_kinds(hlo_text: str) -> dict[str, str]:
  """Every HLO instruction of a compiled module's text → its kind (see the module docstring)."""
  instructions, opcodes = _parse_hlo(hlo_text)

  kinds = {}
  for name, (opcode, calls, target, _) in instructions.items():
    if opcode == 'custom-call':
      kinds[name] = _custom_call_kind(target)
    elif opcode in ('convolution', 'dot'):
      kinds[name] = opcode
    elif opcode == 'fusion':
      ops = set().union(*(opcodes.get(c, set()) for c in calls))
      if 'convolution' in ops:
        kinds[name] = 'convolution'
      elif 'dot' in ops:
        kinds[name] = 'dot'
      elif ops & {'reduce', 'reduce-window', 'select-and-scatter'}:
        kinds[name] = 'reduce fusion'
      elif ops and ops <= {'parameter', 'copy', 'transpose', 'bitcast', 'reshape', 'broadcast'}:
        kinds[name] = 'copy/transpose'
      else:
        kinds[name] = 'elementwise fusion'
    elif opcode in ('copy', 'transpose'):
      kinds[name] = 'copy/transpose'
    else:
      kinds[name] = opcode
  return kinds


def _op_events(xplane_path: str) -> tuple[list[tuple[str, str, float]], str]:
  """(op, event name, duration in ms) of every op event, and what the ops are keyed by.

  Device planes (GPU, TPU) win over the host's when they hold any event; ops are keyed by the
  `hlo_op` their events carry, or by the event (kernel) name on device planes where none does.
  """
  data = jax.profiler.ProfileData.from_file(xplane_path)
  tagged, named = collections.defaultdict(list), collections.defaultdict(list)
  for plane in data.planes:
    for line in plane.lines:
      if line.name.startswith(_SKIP_LINES):
        continue
      for event in line.events:
        ms = event.duration_ns / 1e6
        op = dict(event.stats).get('hlo_op')
        if op:
          tagged[plane.name].append((str(op), event.name, ms))
        elif plane.name.startswith('/device:'):
          named[plane.name].append((event.name, event.name, ms))
  device = [p for p in tagged if p.startswith('/device:')]
  if device:
    return [e for p in device for e in tagged[p]], 'hlo_op (device)'
  if named:
    return [e for p in named for e in named[p]], 'kernel name (device)'
  return [e for p in tagged for e in tagged[p]], HOST


def _kernel_kind(kernel: str) -> str | None:
  """The kind of a library kernel by its name (cuDNN / cuBLAS / CUTLASS), None if not one."""
  low = kernel.lower()
  if any(s in low for s in ('fprop', 'dgrad', 'wgrad', 'conv2d', 'convolution', 'cudnn')):
    return 'convolution'
  if any(s in low for s in ('gemm', 'cublas', 'cutlass', 'xmma', 'matmul')):
    return 'dot'
  return None


def _resolve(op: str, kernel: str, kinds: dict[str, str], by_kernel: dict[str, str],
             device: bool):
  """(HLO op, kind) of an event. XLA:GPU replays runs of kernels as command buffers (CUDA graphs),
  whose events carry the buffer ('command_buffer_N', opcode call) as their hlo_op; the kernel's own
  name then says what it is: a fusion's kernel is named after the fusion (dots as underscores), a
  library kernel (cuDNN, cuBLAS) after its algorithm."""
  if op in kinds and kinds[op] not in ('other', 'call'):
    return op, kinds[op]
  for name in (kernel, by_kernel.get(kernel)):
    if name and name in kinds:
      return name, kinds[name]
  library = _kernel_kind(kernel) if device else None
  if library:
    return f'{library} kernel in {op}', library
  return op, kinds.get(op, 'other')


def aggregate(xplane_path: str, hlo_text: str, runs: int = 1, top: int = 25) -> dict[str, Any]:
  """Op time per kind and the `top` slowest ops, per run of the program."""
  events, keyed_by = _op_events(xplane_path)
  return summarize(events, keyed_by, hlo_text, runs, top)


def summarize(events, keyed_by: str, hlo_text: str, runs: int = 1, top: int = 25) -> dict[str, Any]:
  """`aggregate` of (op, event name, ms) events; kernels that no HLO op names are listed apart."""
  kinds, sources = op_kinds(hlo_text), op_sources(hlo_text)
  by_kernel = {re.sub(r'[.\-]', '_', name): name for name in kinds}
  per_op, count, kind_of = collections.Counter(), collections.Counter(), {}
  unnamed = collections.Counter()
  for op, kernel, ms in events:
    op, kind = _resolve(op, kernel, kinds, by_kernel, device=keyed_by != HOST)
    kind_of[op] = kind
    per_op[op] += ms
    count[op] += 1
    if kind_of[op] == 'other':
      unnamed[kernel] += ms
  total = sum(per_op.values()) or 1.0
  by_kind = collections.defaultdict(lambda: [0.0, 0])
  by_source = collections.Counter()
  for op, ms in per_op.items():
    entry = by_kind[kind_of[op]]
    entry[0] += ms
    entry[1] += count[op]
    by_source[f"{kind_of[op]} | {sources.get(op, '?')}"] += ms
  return {
      'keyed_by': keyed_by, 'op_ms_per_run': round(total / runs, 3),
      'by_kind': {k: {'ms': round(ms / runs, 3), 'share': round(ms / total, 4), 'count': n // runs}
                  for k, (ms, n) in sorted(by_kind.items(), key=lambda kv: -kv[1][0])},
      'top_sources': [{'source': src, 'ms': round(ms / runs, 3), 'share': round(ms / total, 4)}
                      for src, ms in by_source.most_common(top)],
      'top_ops': [{'op': op, 'kind': kind_of[op], 'source': sources.get(op, '?'),
                   'ms': round(ms / runs, 3),
                   'count': count[op] // runs, 'share': round(ms / total, 4)}
                  for op, ms in per_op.most_common(top)],
      'top_other_kernels': [{'kernel': k[:120], 'ms': round(ms / runs, 3)}
                            for k, ms in unnamed.most_common(top)],
  }


def profile(run_once: Callable[[], Any], hlo_text: str, repeats: int, logdir: str,
            top: int = 25) -> dict[str, Any]:
  """Traces `repeats` calls of `run_once` (which must block until its program ends) into `logdir`.

  Returns `aggregate`'s summary of the newest trace there, with the wall time per call.
  """
  jax.profiler.start_trace(logdir)
  t0 = time.perf_counter()
  for _ in range(repeats):
    run_once()
  wall = (time.perf_counter() - t0) / repeats
  jax.profiler.stop_trace()
  paths = sorted(glob.glob(os.path.join(logdir, '**', '*.xplane.pb'), recursive=True),
                 key=os.path.getmtime)
  summary = aggregate(paths[-1], hlo_text, repeats, top)
  summary['wall_ms_per_run'] = round(wall * 1000, 3)
  return summary
