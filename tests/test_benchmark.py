"""The benchmark: honest FLOP counts (convolutions included) and its figures on a tiny config."""
import json
import pathlib
import subprocess
import sys

import numpy as np

from lama_jax import benchmark as benchmark_cli
from lama_jax.models import numerics
from lama_jax.models import winograd
from lama_jax.training import benchmark
from lama_jax.training import profiling
from tests import train_helpers


def test_flops_include_convolutions_and_match_the_compiled_count(tmp_path):
  # The step compiled with direct convolutions too: the CPU's faster forms of the same functions
  # (the upsampled convolution at its input's resolution, here; Winograd at wider layers) do fewer
  # multiplies, which the compiled count would see and the model's count must not.
  with winograd.direct_form():
    figures = benchmark.run(train_helpers.tiny_config(), steps=1, sample_batch=2, sample_repeats=1,
                            profile_dir=str(tmp_path), profile_steps=1)
  flops, xla, compiled, conv, matmul = (figures[k] for k in (
      'flops_per_step', 'xla_flops_per_step', 'compiled_flops_per_step', 'conv_flops_per_step',
      'matmul_flops_per_step'))
  # XLA:CPU's compiled module keeps convolutions as convolutions, so its count is the reference
  # that the model's count (convolutions and matrix products of the jaxpr: what the benchmark
  # reports on every backend) and the lowered module's must meet. XLA
  # also counts elementwise work (one FLOP per element), which the model's count leaves out: 4.4%
  # here, a fraction of a percent at the official widths.
  assert 0.95 * compiled < flops <= compiled, (flops, compiled)
  assert abs(xla - compiled) / compiled < 0.03, (xla, compiled)
  # Convolutions (padding taps left out as XLA does) are most of it.
  assert flops == conv + matmul and 0.5 * flops < conv, (conv, matmul)
  assert figures['gflop_per_image'] == round(flops / 2 / 1e9, 2)
  assert figures['mfu'] is None and figures['peak_bf16_tflops'] is None  # no known peak on CPU
  for key in ('sample_device_ms_per_image', 'sample_ms_per_image', 'sample_float32_ms_per_image'):
    assert np.isfinite(figures[key]) and figures[key] > 0
  # The trace, aggregated: XLA:CPU's thunks keyed by their HLO op, each of a known kind.
  profile = figures['profile']
  assert profile['keyed_by'] == 'hlo_op (host threads)' and profile['op_ms_per_run'] > 0
  assert abs(sum(k['share'] for k in profile['by_kind'].values()) - 1) < 1e-3
  assert 'elementwise fusion' in profile['by_kind']
  assert profile['by_kind'].get('other', {'share': 0})['share'] < 0.05  # ops named in the HLO
  assert any(s['source'].split(' | ')[1].startswith(('D ', 'G ')) for s in profile['top_sources'])


def test_peak_table_matches_device_kinds():
  class Device:
    def __init__(self, kind):
      self.device_kind = kind
  assert benchmark.peak_bf16_flops(Device('NVIDIA H100 80GB HBM3')) == 989e12
  assert benchmark.peak_bf16_flops(Device('NVIDIA H100 PCIe')) == 756e12
  assert benchmark.peak_bf16_flops(Device('NVIDIA H200')) == 989e12
  assert benchmark.peak_bf16_flops(Device('TPU v5 lite')) == 197e12
  assert benchmark.peak_bf16_flops(Device('TPU v5p')) == 459e12
  assert benchmark.peak_bf16_flops(Device('TPU v6 lite')) == 918e12
  assert benchmark.peak_bf16_flops(Device('cpu')) is None


def test_profile_attributes_kernels_replayed_in_command_buffers():
  """On a GPU, XLA replays runs of kernels as command buffers (CUDA graphs): their events carry the
  buffer as hlo_op (an H200 trace put 44% of op time under 'command_buffer_N'). The kernel's name
  says what ran: a fusion's kernel is named after the fusion, a cuDNN / cuBLAS kernel after its
  algorithm; only what neither names stays 'other', listed by kernel name."""
  hlo = '\n'.join([
      '%fused_add (p0: f32[4]) -> f32[4] {',
      '  %p0 = f32[4]{0} parameter(0)',
      '  ROOT %add.1 = f32[4]{0} add(f32[4]{0} %p0, f32[4]{0} %p0), '
      'metadata={op_name="jit(step)/Generator/res1/add"}',
      '}',
      'ENTRY %main (x: f32[4]) -> f32[4] {',
      '  %x = f32[4]{0} parameter(0)',
      '  %loop_add_fusion.3 = f32[4]{0} fusion(f32[4]{0} %x), kind=kLoop, calls=%fused_add',
      '  ROOT %cudnn-conv.7 = f32[4]{0} custom-call(f32[4]{0} %loop_add_fusion.3), '
      'custom_call_target="__cudnn$convForward"',
      '}'])
  events = [
      ('command_buffer_12', 'loop_add_fusion_3', 2.0),  # a fusion inside a buffer
      ('command_buffer_12', 'sm90_xmma_fprop_implicit_gemm_bf16f32', 3.0),  # cuDNN inside one
      ('command_buffer_12', 'sm90_xmma_gemm_bf16bf16_bf16f32', 1.0),  # cuBLAS inside one
      ('cudnn-conv.7', 'whatever', 4.0),  # launched on its own: its hlo_op names it
      ('command_buffer_12', 'memset_kernel', 0.5),  # neither: stays 'other'
  ]
  summary = profiling.summarize(events, 'hlo_op (device)', hlo)
  shares = {kind: v['ms'] for kind, v in summary['by_kind'].items()}
  assert shares == {'convolution': 7.0, 'elementwise fusion': 2.0, 'dot': 1.0, 'other': 0.5}
  assert {s['source'] for s in summary['top_sources']} >= {'elementwise fusion | G fwd res#/add'}
  assert summary['top_other_kernels'] == [{'kernel': 'memset_kernel', 'ms': 0.5}]
  # On the host's threads (CPU) names are not read as library kernels: a 'convert' is no conv.
  host = profiling.summarize([('while.2', 'convolution_like_name', 1.0)], profiling.HOST, hlo)
  assert set(host['by_kind']) == {'other'}


def test_benchmark_needs_no_tensorflow_nor_pycocotools():
  """The GPU machines the benchmark runs on have neither (ours had none: the 2026-11-27 session's
  first run failed on the import). Its step mode checks the config and builds the trainer without
  them; tf.data and the evaluators are imported only where used."""
  code = '\n'.join([
      'import sys',
      "for name in ('tensorflow', 'tensorflow_datasets', 'pycocotools'):",
      '  sys.modules[name] = None  # any import of them fails',
      'import jax',
      'from lama_jax import benchmark as cli',
      'from lama_jax.training import benchmark, config_checks',
      'from lama_jax.training.trainer import Trainer',
      'from configs import coco128',
      'config = coco128.get_config()',
      'config_checks.check(config, 1, evals=False)',
      "config.data.dataset = 'synthetic'",
      'trainer = Trainer(config, steps_per_epoch=10)',
      'jax.eval_shape(trainer.init_state)',
      "print('ok')"])
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300,
                        cwd=str(pathlib.Path(__file__).parent.parent), check=False)
  assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-2000:]


def test_cli_times_the_step_alone_with_the_sums_halved_everywhere(tmp_path, capsys):
  """`--sample_batch=0` leaves the sampling out (no sampler compiles); `--pairwise_sums=everywhere`
  traces the step with the halving sums on every backend (the GPU session's before/after)."""
  flags = [f'--config={train_helpers.tiny_config_file(tmp_path)}', '--steps=1', '--sample_batch=0',
           '--pairwise_sums=everywhere']
  assert benchmark_cli.main(flags) == 0
  figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert figures['pairwise_sums'] == 'everywhere' and figures['sample_batch'] == 0
  assert figures['step_median_s'] > 0 and 'sample_ms_per_image' not in figures
  assert not numerics._everywhere  # pylint: disable=protected-access  # the switch is reset


def test_cli_profile_dir_that_is_a_file_is_one_line_at_once(tmp_path, capsys):
  """--profile_dir naming a file is refused before the compile; it was a traceback after it."""
  (tmp_path / 'a_file').write_text('')
  flags = [f'--config={train_helpers.tiny_config_file(tmp_path)}', '--steps=1', '--sample_batch=0',
           f'--profile_dir={tmp_path / "a_file"}']
  assert benchmark_cli.main(flags) == 2
  err = capsys.readouterr().err
  assert err == f'error: --profile_dir {tmp_path / "a_file"}: exists and is not a folder\n', err
