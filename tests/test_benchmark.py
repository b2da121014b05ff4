"""The benchmark: honest FLOP counts (convolutions included) and its figures on a tiny config."""
import numpy as np

from lama_jax.training import benchmark
from tests import train_helpers


def test_flops_include_convolutions_and_match_the_compiled_count(tmp_path):
  figures = benchmark.run(train_helpers.tiny_config(), steps=1, sample_batch=2, sample_repeats=1,
                          profile_dir=str(tmp_path), profile_steps=1)
  flops, compiled, conv = (figures[k] for k in ('flops_per_step', 'compiled_flops_per_step',
                                                'conv_flops_per_step'))
  # XLA:CPU's compiled module keeps convolutions as convolutions, so its count is the reference
  # the lowered count (what the benchmark reports on every backend) must meet.
  assert abs(flops - compiled) / compiled < 0.03, (flops, compiled)
  # The analytic count of the step's convolutions (from its jaxpr, padding taps left out as XLA
  # does) is inside, and most of it.
  assert 0.5 * flops < conv <= flops, (conv, flops)
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
