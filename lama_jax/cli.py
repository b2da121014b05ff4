"""The one command-line convention of `python -m lama_jax.NAME`.

Every command defines its flags on its own `FlagValues` (made by `flag_values()`, so that commands can
be imported side by side, in tests or a notebook) and ends with

    def main(argv: Sequence[str] | None = None) -> int:
      return cli.run(_main, FLAGS, argv, __doc__)

    if __name__ == '__main__':
      cli.exit_process(main())

`run` parses the flags (absl syntax: `--name=value` or `--name value`, `--flagfile`), answers `--help`
with the module docstring and the flags, and reports every `LamaError`, bad flag value or unusable
path as one line `error: ...` on stderr with exit code 2. `--debug` (or `LAMA_JAX_DEBUG=1`) shows the
traceback instead. Ctrl-C exits with code 130 and one line; SIGTERM too (code 143), after the
same clean-up (temporary outputs removed), where the default would kill the process on the spot.
`exit_process` then ends an interrupted process at once (see there).

Config-file flags (ml_collections' `DEFINE_config_file`) are parsed from the `argv` given here, not
from `sys.argv`, so `--config.field=value` overrides work when a command is called in-process; a
config file that is missing or fails to load is one line naming the file (and the line).
"""
from collections.abc import Callable, Sequence
import contextlib
import errno
import gc
import math
import os
import re
import signal
import sys
import threading
import traceback

from absl import flags
from ml_collections.config_flags import config_flags  # is_config_flag is not re-exported

from lama_jax import startup_interrupts
from lama_jax.errors import LamaError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + signal.SIGTERM
# OS errors about the user's paths: a file where a folder is expected, no permission, and the like.
_PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                PermissionError)
# Other OS errors a user can fix: a full disk or quota, a read-only file system, a too long name.
_USER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP}
# Names of threads whose work cannot be stopped (an XLA compile): a command that fails while one
# runs exits without waiting for it (`exit_process`).
UNWAITED_THREAD_PREFIX = 'unwaited_'


class Terminated(KeyboardInterrupt):
  """SIGTERM, raised like Ctrl-C so that `finally` blocks and temporary-output clean-up run."""


def flag_values() -> flags.FlagValues:
  """A command's own flags, with --debug already defined."""
  fv = flags.FlagValues()
  flags.DEFINE_boolean('debug', False, 'On an error, show the full traceback instead of one line '
                       '(also LAMA_JAX_DEBUG=1).', flag_values=fv)
  return fv


def one_line(e: BaseException) -> str:
  """An exception's message on one line (its type name when it has no message)."""
  if isinstance(e, OSError) and e.filename is not None and e.strerror:
    return f'{e.filename}: {e.strerror}'
  return ' '.join(str(e).split()) or type(e).__name__


def _is_user_os_error(e: BaseException) -> bool:
  return isinstance(e, _PATH_ERRORS) or (isinstance(e, OSError) and e.errno in _USER_ERRNOS)


def _help(doc: str | None, fv: flags.FlagValues) -> str:
  return f'{(doc or "").strip()}\n\nFlags:\n{fv.get_help(include_special_flags=False)}\n'


def _debug(fv: flags.FlagValues) -> bool:
  return os.environ.get('LAMA_JAX_DEBUG', '') not in ('', '0') or (
      'debug' in fv and fv['debug'].present and fv.debug)


def _fail(message: str) -> int:
  print(f'error: {message}', file=sys.stderr, flush=True)
  return EXIT_USER_ERROR


def _config_flag_names(fv: flags.FlagValues) -> list[str]:
  return [name for name in list(fv) if config_flags.is_config_flag(fv[name])]


def _config_path(name: str, argv: Sequence[str]) -> str | None:
  """The value given to --NAME in `argv` (the last one), or None."""
  path = None
  for i, arg in enumerate(argv):
    if arg in (f'-{name}', f'--{name}') and i + 1 < len(argv):
      path = argv[i + 1]
    elif re.match(rf'^--?{re.escape(name)}=', arg):
      path = arg.split('=', 1)[1]
  return path


def _prepare_config_flags(fv: flags.FlagValues, argv: Sequence[str]) -> None:
  """Points config flags at `argv` and forgets what an earlier parse registered or loaded.

  ml_collections registers the `--config.field` override flags from `sys.argv` while it parses the
  config file, and loads the file as the module NAME_config, reusing one already loaded.

  Raises:
    LamaError: a config file that does not exist or is not a file.
  """
  for name in _config_flag_names(fv):
    fv[name]._sys_argv = ['lama_jax', *argv]  # pylint: disable=protected-access
    for other in [n for n in list(fv) if n.startswith(f'{name}.')]:
      delattr(fv, other)
    sys.modules.pop(f'{name}_config', None)
    path = _config_path(name, argv)
    if path is not None:
      file = path.split(':', 1)[0]
      if not os.path.exists(file):
        raise LamaError(f'--{name} {file}: no such config file')
      if not os.path.isfile(file):
        raise LamaError(f'--{name} {file}: not a file (give a configs/*.py file)')


def _config_error(e: BaseException, name: str, argv: Sequence[str]) -> LamaError:
  """One line for a config file that failed to load: the file, the line, the error."""
  path = _config_path(name, argv) or ''
  file = path.split(':', 1)[0]
  text = str(e)
  if 'Error whilst parsing config file' in text:  # ml_collections put the traceback in the text
    frames = re.findall(r'File "([^"]+)", line (\d+)', text)
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    where = next((f' line {n}' for f, n in reversed(frames)
                  if os.path.abspath(f) == os.path.abspath(file)), '')
    return LamaError(f'--{name} {path}{where}: {lines[-1]}')
  if isinstance(e, (AttributeError, KeyError)) and not isinstance(e, flags.Error):
    field = re.search(r"([A-Za-z0-9_]+)", text)
    hint = re.search(r'Did you mean "([^"]+)"', text)
    overrides = [a.split('=', 1)[0].lstrip('-') for a in argv if field and re.match(
        rf'^--?{re.escape(name)}\.(.*\.)?{re.escape(field[1])}(\.|=|$)', a)]
    if overrides:  # an override of a field the config does not have
      return LamaError(f'--{overrides[0]}: the config ({path}) has no field {field[1]!r}' +
                       (f' (did you mean {hint[1]!r}?)' if hint else ''))
  where = ''
  for frame in traceback.extract_tb(e.__traceback__):
    if os.path.abspath(frame.filename) == os.path.abspath(file):
      where = f' line {frame.lineno}'
  if isinstance(e, SyntaxError):
    where, text = (f' line {e.lineno}' if e.lineno else ''), e.msg
  if isinstance(e, AttributeError) and 'get_config' in text:
    return LamaError(f'--{name} {path}: the file defines no get_config()')
  return LamaError(f'--{name} {path}{where}: {type(e).__name__}: {" ".join(text.split())}')


def _check_loaded_configs(fv: flags.FlagValues, argv: Sequence[str]) -> None:
  """Raises for a config flag whose file could not be read (ml_collections defers that error)."""
  for name in _config_flag_names(fv):
    value = fv[name].value
    if type(value).__name__ == '_ErrorConfig':
      cause = str(getattr(value, '_error', '')).strip().splitlines()
      raise LamaError(f'--{name} {_config_path(name, argv)}: cannot load the config file: '
                      f'{cause[-1].strip() if cause else "unreadable"}')


def _flag_error(e: flags.Error) -> str:
  text = one_line(e)
  # absl's message for --n=abc quotes int(); say what is wrong instead.
  return re.sub(r"invalid literal for int\(\) with base 10: ('.*')", r'\1 is not an integer', text)


def parse(fv: flags.FlagValues, argv: Sequence[str]) -> None:
  """Parses `argv` (without the program name) into `fv`, from the defaults.

  Raises:
    LamaError: an unknown flag, a bad value, a missing required flag, a stray argument, or a config
      file that is missing or fails to load.
  """
  argv = list(argv)
  fv.unparse_flags()
  _prepare_config_flags(fv, argv)
  names = [n for n in _config_flag_names(fv) if _config_path(n, argv) is not None]
  try:
    rest = fv(['lama_jax', *argv])
  except flags.Error as e:
    if names and 'Error whilst parsing config file' in str(e):
      raise _config_error(e, names[0], argv) from None
    if names and f'--{names[0]}=None' in str(e):
      raise LamaError(f'--{names[0]} {_config_path(names[0], argv)}: get_config() returned None '
                      '(a missing return?)') from None
    raise LamaError(_flag_error(e)) from None
  except Exception as e:  # pylint: disable=broad-except
    # Only loading a config file runs user code here: SyntaxError, NameError, ImportError, ...
    if not names:
      raise
    raise _config_error(e, names[0], argv) from e
  if len(rest) > 1:
    raise LamaError(f'unexpected argument(s) {" ".join(rest[1:])} (flags are --name=value)')
  _check_loaded_configs(fv, argv)


def not_nan(fv: flags.FlagValues, *names: str) -> None:
  """Registers validators: the float flags `names` must not be NaN (absl's bounds let NaN pass)."""
  for name in names:
    flags.register_validator(name, lambda v: v is None or not math.isnan(v),
                             message='not a number (NaN)', flag_values=fv)


@contextlib.contextmanager
def _sigterm_raises():
  """SIGTERM raises `Terminated` while the command runs (main thread only)."""
  def handle(signum, frame):
    del frame
    # A second SIGTERM kills at once, as the default would: the first one's exception may have been
    # swallowed (a handler running inside a garbage-collector callback cannot raise).
    signal.signal(signum, signal.SIG_DFL)
    raise Terminated()
  try:
    previous = signal.signal(signal.SIGTERM, handle)
  except ValueError:  # not the main thread
    yield
    return
  try:
    yield
  finally:
    signal.signal(signal.SIGTERM, previous)


def _unwaited_work_running() -> bool:
  return any(t.name.startswith(UNWAITED_THREAD_PREFIX) and t.is_alive()
             for t in threading.enumerate())


def exit_process(code: int) -> None:
  """Ends the process with a command's exit code (every command's `__main__`).

  An interrupted command ends at once, its clean-up done and its output flushed (`os._exit`): in
  the interpreter's normal shutdown, an XLA compilation still running in a background thread
  crashed the process (SIGSEGV or SIGABRT, and a core file) instead of exiting with 130 or 143.
  So does a failed command while an `UNWAITED_THREAD_PREFIX` thread runs: the shutdown waited for
  that thread's compile (a minute and more) after the error was said.
  Objects in reference cycles are collected first: `os._exit` runs no finalizers, and a worker
  pool's semaphores left that way made Python's resource_tracker warn after 'interrupted'.
  """
  if code in (EXIT_INTERRUPTED, EXIT_TERMINATED) or (code and _unwaited_work_running()):
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


def run(main: Callable[[flags.FlagValues], int | None], fv: flags.FlagValues,
        argv: Sequence[str] | None = None, doc: str | None = None) -> int:
  """Parses `argv` into `fv`, calls `main(fv)` and returns the exit code (0, 2 or 130)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a in ('--help', '-h', '--helpfull', '-?') for a in argv):
    print(_help(doc, fv), end='')
    return 0
  try:
    with _sigterm_raises():
      startup_interrupts.raise_if_interrupted()
      parse(fv, argv)
      return int(main(fv) or 0)
  except (LamaError, OSError) as e:
    if not isinstance(e, LamaError) and not _is_user_os_error(e):
      raise
    if _debug(fv):
      traceback.print_exc()
    return _fail(one_line(e))
  except Terminated:
    print('terminated', file=sys.stderr, flush=True)
    return EXIT_TERMINATED
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
