"""The one error type for problems a user can fix (bad flags, inputs, files).

Every command reports a `LamaError` as one line naming the flag, file, layout or object and what is
wrong, and exits with code 2 (`lama_jax.cli`). Library code raises subclasses that say where they come
from (`LayoutError`, `DatasetError`, ...), so callers can catch one family or all of them.
"""


class LamaError(Exception):
  """A problem with the user's input: reported as one line, exit code 2."""
