"""Times forms of one computation in alternation, so that a drift in the machine's speed hits all."""
import time

import jax
import numpy as np


def time_alternating(forms: dict, reps: int) -> tuple[dict, dict]:
  """forms: name → (jitted function, args). Returns each form's output (from its warm-up call, which
  also compiles it) and its median time in ms over `reps` calls, the forms taking turns."""
  outputs = {name: jax.block_until_ready(fn(*args)) for name, (fn, args) in forms.items()}
  times = {name: [] for name in forms}
  for _ in range(reps):
    for name, (fn, args) in forms.items():
      start = time.perf_counter()
      jax.block_until_ready(fn(*args))
      times[name].append(time.perf_counter() - start)
  return outputs, {name: 1e3 * float(np.median(t)) for name, t in times.items()}
