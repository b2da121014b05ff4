"""JAX's persistent compilation cache: compiled programs kept on disk, so a restart skips compiling.

Compiling the train step takes minutes (2 CPU cores: ~2 min for the 64×64 demo; one H200: 66-101
s); with the cache, a restarted or resumed run loads the compiled step in seconds.
`config.compilation_cache_dir` chooses the folder:

  'auto' (default)  $JAX_COMPILATION_CACHE_DIR when set, else $XDG_CACHE_HOME/lama_jax/xla
                    (~/.cache/lama_jax/xla): one cache for every run of this user on this machine;
  a path            that folder (created if missing); `gs://...` works where JAX can write there,
                    e.g. one folder shared by the hosts of a pod;
  ''                off: every start compiles.

Entries are keyed by the program, the JAX/XLA versions, the device kind and the XLA flags, so a
stale entry is never used; delete the folder to reclaim its space. JAX runs whatever the cache
holds: keep it in a folder that only you can write to.
"""
import os

from absl import logging
import jax
from jax.experimental.compilation_cache import compilation_cache as jax_cache

from lama_jax import files

AUTO = 'auto'
ENV = 'JAX_COMPILATION_CACHE_DIR'


def default_dir() -> str:
  """The per-user cache folder: $XDG_CACHE_HOME/lama_jax/xla, else ~/.cache/lama_jax/xla."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'lama_jax', 'xla')


def resolve(setting: str) -> str:
  """The folder `setting` names ('' = off; see the module docstring)."""
  if setting == AUTO:
    return os.environ.get(ENV) or default_dir()
  return os.path.expanduser(setting) if setting else ''


def configure(setting: str, flag: str = '--config.compilation_cache_dir') -> str:
  """Turns the persistent cache on in the folder `setting` names, or off for ''.

  `flag` names the setting in the one-line error when the folder cannot be made or written (a file
  there, no permission).

  JAX opens its cache at the first compilation; a change of folder or of on/off after that resets
  it, so the setting holds from here on.

  Returns:
    The cache folder, or '' when the cache is off.
  """
  folder = resolve(setting)
  if folder and '://' not in folder:  # before the session's cache setting changes
    files.check_folder_target(folder, flag if setting != AUTO else f'{flag} ({AUTO})')
  if (bool(folder), folder) != (jax.config.jax_enable_compilation_cache,
                                jax.config.jax_compilation_cache_dir or ''):
    jax_cache.reset_cache()
  if not folder:
    jax.config.update('jax_enable_compilation_cache', False)
    logging.info('Persistent compilation cache off.')
    return ''
  if '://' not in folder:
    os.makedirs(folder, exist_ok=True)
  jax.config.update('jax_enable_compilation_cache', True)
  jax.config.update('jax_compilation_cache_dir', folder)
  logging.info('Persistent compilation cache in %s.', folder)
  return folder
