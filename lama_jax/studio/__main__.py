r"""The layout studio: draw boxes in the browser and watch LAMA build the image.

  python -m lama_jax.studio --model runs/demo [--host 127.0.0.1 --port 7860]

--model is anything `LayoutGenerator.load` takes (a training workdir, an export, a converted
official checkpoint). The page listens on 127.0.0.1 only unless --host says otherwise, and opens no
public share link unless --share is given.
"""
import sys
from pathlib import Path
from typing import Sequence

from absl import flags

EXAMPLES = Path(__file__).resolve().parents[2] / 'data' / 'layouts'


def _flags() -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_string('model', None, 'Training workdir, exported or converted generator directory.',
                      flag_values=fv)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).', flag_values=fv)
  flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (0.0.0.0: every interface).',
                      flag_values=fv)
  flags.DEFINE_integer('port', 7860, 'Port to listen on.', flag_values=fv)
  flags.DEFINE_bool('share', False, 'Also open a public gradio share link (off by default).',
                    flag_values=fv)
  flags.DEFINE_string('examples', str(EXAMPLES), 'Folder of example layout JSON files (those that '
                      'fit the model are one click away).', flag_values=fv)
  return fv


def _fail(message: str) -> int:
  print(f'error: {message}', file=sys.stderr)
  return 2


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv if argv is None else argv)
  fv = _flags()
  if any(a in ('-h', '--help', '-help', '--helpfull') for a in argv[1:]):
    print(__doc__.strip() + '\n\nFlags:\n' + fv.get_help())
    return 0
  try:
    rest = fv(argv)
  except flags.Error as e:
    return _fail(str(e).splitlines()[0])
  if len(rest) > 1:
    return _fail(f'unexpected arguments: {" ".join(rest[1:])}')
  if not fv.model:
    return _fail('--model is required (a training workdir or a generator directory)')
  if not 0 < fv.port < 65536:
    return _fail(f'--port must lie in 1..65535, got {fv.port}')
  # Heavy imports after the flags: --help and flag errors stay instant.
  from lama_jax.studio import page  # pylint: disable=g-import-not-at-top
  return page.serve(fv.model, fv.step, fv.host, fv.port, fv.share, fv.examples)


if __name__ == '__main__':
  sys.exit(main())
