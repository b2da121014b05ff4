r"""The layout studio: draw boxes in the browser and watch LAMA build the image.

  python -m lama_jax.studio --model runs/demo [--host 127.0.0.1 --port 7860]

--model is anything `LayoutGenerator.load` takes (a training workdir, an export, a converted
official checkpoint). The page listens on 127.0.0.1 only unless --host says otherwise, and opens no
public share link unless --share is given.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence
import errno
import os
from pathlib import Path
import socket

from absl import flags

from lama_jax import cli
from lama_jax.errors import LamaError

EXAMPLES = Path(__file__).resolve().parents[2] / 'data' / 'layouts'

FLAGS = cli.flag_values()
flags.DEFINE_string('model', None, 'Training workdir, exported or converted generator directory.',
                    flag_values=FLAGS, required=True)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).', lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every interface).',
                    flag_values=FLAGS)
flags.DEFINE_integer('port', 7860, 'Port to listen on.', flag_values=FLAGS)
flags.DEFINE_boolean('share', False, 'Also open a public gradio share link (off by default).',
                     flag_values=FLAGS)
flags.DEFINE_string('examples', str(EXAMPLES), 'Folder of example layout JSON files (those that '
                    'fit the model are one click away).', flag_values=FLAGS)


def check_address(host: str, port: int) -> None:
  """Raises LamaError unless the page can listen on host:port (checked before the model loads and
  compiles; gradio's own error is a traceback, after the compile)."""
  try:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
  except (socket.gaierror, UnicodeError) as e:
    reason = getattr(e, 'strerror', None) or cli.one_line(e)
    raise LamaError(f'--host {host}: not an address to listen on ({reason})') from None
  with socket.socket(family, kind, proto) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gradio binds
    try:
      s.bind(address)
    except OSError as e:
      if e.errno == errno.EADDRINUSE:
        raise LamaError(f'--port {port}: already in use on {host} (choose another --port)'
                        ) from None
      raise LamaError(f'--host {host} --port {port}: cannot listen there: '
                      f'{e.strerror or cli.one_line(e)}') from None


def _main(fv: flags.FlagValues) -> None:
  if not 0 < fv.port < 65536:
    raise LamaError(f'--port must lie in 1..65535, got {fv.port}')
  if fv['examples'].present and not os.path.isdir(fv.examples):  # the default may be missing
    raise LamaError(f'--examples {fv.examples}: no such folder' if not os.path.exists(
        fv.examples) else f'--examples {fv.examples}: not a folder (of layout JSON files)')
  check_address(fv.host, fv.port)
  # Heavy imports after the flags: --help and flag errors stay instant.
  from lama_jax.studio import page  # pylint: disable=g-import-not-at-top
  page.serve(fv.model, fv.step, fv.host, fv.port, fv.share, fv.examples)


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
