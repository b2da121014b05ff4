r"""Times the compiled train step and generator sampling (synthetic batches), or the input pipeline.

  python -m lama_jax.benchmark --config configs/coco128.py [--batch_size 4 --steps 5]
  python -m lama_jax.benchmark --mode pipeline --config configs/coco128.py --image_sizes 64,128,256

Prints one JSON line: compile time (apart), median step time, images/s, the step's FLOPs (the
model's convolutions and matrix products, counted from its jaxpr the same on every backend; XLA's
counts beside it) per step and per image, the achieved FLOP/s and its share of the devices' bf16
peak (`mfu`, where the device is known), peak memory, and sampling time per image: on the device,
end to end as uint8 images, and with the float32 outputs. With --profile_dir, a trace of a few more
steps aggregated by op kind and model code ('profile').

--mode pipeline times the real tf.data training pipeline on the config's prepared dataset
(`config.data`: data_dir, dataset, flip, shuffle buffer) at each of --image_sizes, batch
--batch_size, and prints one JSON line per size: images/s in all and per host core, and the CPU time
per image. --coco_like N first writes N photo-like 640x480 JPEGs in the COCO-Stuff layout to a
temporary folder and prepares them there (see lama_jax/datasets/pipeline_benchmark.py).
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence
import contextlib
import json

from absl import flags
import jax
from ml_collections import config_flags

from lama_jax import cli
from lama_jax import files
from lama_jax.errors import LamaError
from lama_jax.inference import sampling
from lama_jax.models import numerics
from lama_jax.training import benchmark
from lama_jax.training import compilation_cache
from lama_jax.training import config_checks

FLAGS = cli.flag_values()
config_flags.DEFINE_config_file('config', None, 'Training configuration (a configs/*.py file).',
                                flag_values=FLAGS, lock_config=False)
flags.DEFINE_integer('batch_size', None, "Global batch size (default: the config's).",
                     lower_bound=1, flag_values=FLAGS)
flags.DEFINE_integer('steps', 5, 'Timed steps (after the compile and one warm-up step).',
                     lower_bound=1, upper_bound=1000, flag_values=FLAGS)
flags.DEFINE_integer('sample_batch', 8, 'Batch of the generator-sampling timing (0: no sampling '
                     'timing, nor its compiles).', lower_bound=0, upper_bound=sampling.MAX_BATCH,
                     flag_values=FLAGS)
flags.DEFINE_enum('mode', 'step', ['step', 'pipeline'], "What to time: the train step and "
                  "sampling, or the input pipeline.", flag_values=FLAGS)
flags.DEFINE_list('image_sizes', None, "--mode pipeline: image sizes (default: the config's).",
                  flag_values=FLAGS)
flags.DEFINE_integer('batches', 30, '--mode pipeline: timed batches per size (after 5 warm-up).',
                     lower_bound=1, upper_bound=100_000, flag_values=FLAGS)
flags.DEFINE_integer('coco_like', 0, '--mode pipeline: time a fresh COCO-like set of this many '
                     'photo-like 640x480 JPEGs instead of the prepared dataset.', lower_bound=0,
                     upper_bound=100_000, flag_values=FLAGS)
flags.DEFINE_string('profile_dir', None, 'Trace a few more steps here and add a summary of where '
                    'the time goes (op kinds, model code, slowest ops).', flag_values=FLAGS)
flags.DEFINE_integer('profile_steps', 3, 'Steps traced with --profile_dir.', lower_bound=1,
                     upper_bound=100, flag_values=FLAGS)
flags.DEFINE_boolean('sample_float32', True, 'Also time sampling with the default float32 image '
                     'and masks on the host (a second sampler compile).', flag_values=FLAGS)
flags.DEFINE_string('compilation_cache_dir', '', "JAX's persistent compilation cache: a folder, "
                    "'auto' (the training default), or '' (off, the default here: compile_s is then "
                    "a fresh compile; with a filled cache it is a restart's).", flag_values=FLAGS)
flags.DEFINE_enum('pairwise_sums', 'cpu', ['cpu', 'everywhere'], "Where the normalisation "
                  "statistics are summed by halving (models/numerics.py): on CPU only (the default) "
                  "or on every backend, as before, to compare a GPU's or TPU's step.",
                  flag_values=FLAGS)
flags.mark_flag_as_required('config', flag_values=FLAGS)
flags.register_validator(
    'image_sizes', lambda v: v is None or all(x.isdigit() and int(x) > 0 for x in v),
    '--image_sizes: positive whole numbers, comma-separated', flag_values=FLAGS)


# The flags that only one --mode reads: given to the other, they were ignored without a word.
_MODE_FLAGS = {'step': ('steps', 'sample_batch', 'profile_dir', 'profile_steps', 'sample_float32',
                        'compilation_cache_dir', 'pairwise_sums'),
               'pipeline': ('image_sizes', 'batches', 'coco_like')}


def _main(fv: flags.FlagValues) -> None:
  for mode, names in _MODE_FLAGS.items():
    given = [f'--{name}' for name in names if fv[name].present]
    if mode != fv.mode and given:
      raise LamaError(f'{", ".join(given)} applies to --mode {mode} only (--mode is {fv.mode})')
  config = fv.config
  if fv.batch_size:
    config.batch_size = fv.batch_size
  # --batch_size too (per device, divisible); no evaluator runs here.
  config_checks.check(config, jax.device_count(), evals=False)
  if fv.profile_dir:  # at once, not a traceback after the compile and the timed steps
    files.check_folder_target(fv.profile_dir, '--profile_dir')
  if fv.mode == 'pipeline':
    # Imported here: it needs TensorFlow (tf.data), which accelerator-only machines may lack.
    from lama_jax.datasets import pipeline_benchmark  # pylint: disable=g-import-not-at-top
    sizes = [int(s) for s in fv.image_sizes or [config.model.image_size]]
    for result in pipeline_benchmark.run(config, sizes, fv.batches, fv.coco_like):
      print(json.dumps(result), flush=True)
    return
  cache = compilation_cache.configure(fv.compilation_cache_dir, '--compilation_cache_dir')
  with (numerics.pairwise_everywhere() if fv.pairwise_sums == 'everywhere'
        else contextlib.nullcontext()):
    result = benchmark.run(config, fv.steps, fv.sample_batch, profile_dir=fv.profile_dir,
                           profile_steps=fv.profile_steps, sample_float32=fv.sample_float32)
  print(json.dumps({**result, 'pairwise_sums': fv.pairwise_sums,
                    'compilation_cache_dir': cache or None}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
