"""The one command-line convention of `python -m lama_jax.NAME`.

Every command defines its flags on its own `FlagValues` (made by `flag_values()`, so that commands can
be imported side by side, in tests or a notebook) and ends with

    def main(argv: Sequence[str] | None = None) -> int:
      return cli.run(_main, FLAGS, argv, __doc__)

    if __name__ == '__main__':
      sys.exit(main())

`run` parses the flags (absl syntax: `--name=value` or `--name value`, `--flagfile`), answers `--help`
with the module docstring and the flags, and reports every `LamaError`, bad flag value or unusable
path as one line `error: ...` on stderr with exit code 2. `--debug` (or `LAMA_JAX_DEBUG=1`) shows the
traceback instead. Ctrl-C exits with code 130 and one line.
"""
from collections.abc import Callable, Sequence
import os
import sys
import traceback

from absl import flags

from lama_jax.errors import LamaError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
# OS errors about the user's paths: a file where a folder is expected, no permission, and the like.
_PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
                PermissionError)


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


def _help(doc: str | None, fv: flags.FlagValues) -> str:
  return f'{(doc or "").strip()}\n\nFlags:\n{fv.get_help(include_special_flags=False)}\n'


def _debug(fv: flags.FlagValues) -> bool:
  return os.environ.get('LAMA_JAX_DEBUG', '') not in ('', '0') or (
      'debug' in fv and fv['debug'].present and fv.debug)


def _fail(message: str) -> int:
  print(f'error: {message}', file=sys.stderr, flush=True)
  return EXIT_USER_ERROR


def parse(fv: flags.FlagValues, argv: Sequence[str]) -> None:
  """Parses `argv` (without the program name) into `fv`, from the defaults.

  Raises:
    LamaError: an unknown flag, a bad value, a missing required flag or a stray argument.
  """
  fv.unparse_flags()
  try:
    rest = fv(['lama_jax', *argv])
  except flags.Error as e:
    raise LamaError(one_line(e)) from None
  if len(rest) > 1:
    raise LamaError(f'unexpected argument(s) {" ".join(rest[1:])} (flags are --name=value)')


def run(main: Callable[[flags.FlagValues], int | None], fv: flags.FlagValues,
        argv: Sequence[str] | None = None, doc: str | None = None) -> int:
  """Parses `argv` into `fv`, calls `main(fv)` and returns the exit code (0, 2 or 130)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  if any(a in ('--help', '-h', '--helpfull', '-?') for a in argv):
    print(_help(doc, fv), end='')
    return 0
  try:
    parse(fv, argv)
    return int(main(fv) or 0)
  except (LamaError, *_PATH_ERRORS) as e:
    if _debug(fv):
      traceback.print_exc()
    return _fail(one_line(e))
  except KeyboardInterrupt:
    print('interrupted', file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
