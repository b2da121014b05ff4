"""Test setup: CPU only, TensorFlow kept off accelerators."""
import os
import signal

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# Tests run tiny models, so XLA's compile time is most of the suite's time on a 2-core CPU: compile
# without LLVM optimisation and with the older loop emitters (2.4× faster compiles of the train step,
# 50 s → 21 s; the programs compute the same things, only less optimised). Subprocesses inherit it.
_FAST_COMPILE = '--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false'
if '--xla_backend_optimization_level' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE}".strip()

# One XLA compilation cache per test session, shared with the subprocesses the tests start (the
# preemption test restarts the same run three times). A fresh folder each session, so no test
# depends on what an earlier run left behind.
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  import tempfile  # pylint: disable=g-import-not-at-top
  os.environ['JAX_COMPILATION_CACHE_DIR'] = tempfile.mkdtemp(prefix='lama_jax_tests_xla_cache_')
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')

# Started as a background job of a script, pytest inherits an ignored SIGINT and so would every
# command a test starts, which then (rightly) ignore the Ctrl-C the interrupt tests send. A Python
# handler is not inherited across exec: the commands start with SIGINT at its default.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
  signal.signal(signal.SIGINT, signal.default_int_handler)
