"""`python -m lama_jax.mask_clarity`: the Sec. 3 experiment (see lama_jax.evaluation.mask_clarity)."""
import os
import sys

from lama_jax.evaluation.mask_clarity import main

if __name__ == '__main__':
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  sys.exit(main())
