"""A Ctrl-C while a command's modules import is kept for the command, not lost.

JAX and TensorFlow take seconds to import, and a KeyboardInterrupt raised inside one of the
garbage-collector callbacks that run meanwhile cannot propagate: Python prints "Exception ignored"
and goes on, so a training run Ctrl-C'd in its first seconds trained to its end (about 1 in 8 tries
3 s after the start). Other interrupts there printed Python's traceback. Every command, run as a
program, calls `defer_if_main(__name__)` before its heavy imports; `cli.run` then calls
`raise_if_interrupted()`, which restores Python's handler and raises the kept interrupt, so the
command exits with 130 and one word.
"""
import signal

_interrupted = False
_deferring = False


def _remember(signum, frame) -> None:
  del signum, frame
  global _interrupted
  _interrupted = True


def ignored() -> bool:
  """Whether this process started with SIGINT ignored: a background job of a shell script, which a
  Ctrl-C meant for the script's foreground must not stop (Python keeps it ignored, and so do we)."""
  return signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def defer() -> None:
  """Keeps SIGINT for `raise_if_interrupted` instead of raising it (main thread, before imports);
  an ignored SIGINT stays ignored."""
  global _deferring
  if ignored():
    return
  signal.signal(signal.SIGINT, _remember)
  _deferring = True


def defer_if_main(module_name: str) -> None:
  """`defer()` when the calling module runs as the program (`python -m lama_jax.<command>`), whose
  `cli.run` will take the interrupt back; imported as a library, nothing changes."""
  if module_name == '__main__':
    defer()


def raise_if_interrupted() -> None:
  """Puts Python's SIGINT handler back if `defer` replaced it; raises KeyboardInterrupt if a
  SIGINT came meanwhile."""
  global _deferring, _interrupted
  if not _deferring:
    return
  signal.signal(signal.SIGINT, signal.default_int_handler)
  _deferring = False
  if _interrupted:
    _interrupted = False
    raise KeyboardInterrupt
