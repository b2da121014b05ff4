r"""Synthesize a COCO-format dataset (images + per-object boxes and masks) from layouts.

  python -m lama_jax.synthesize --model runs/demo --out synth/demo --num_images 1000 \
      --split train --data_dir data/tfds --samples_per_layout 2 --jitter 0.1
  python -m lama_jax.synthesize --model runs/demo --out synth/mine --num_images 50 \
      --layouts data/layouts/shapes.json
  python -m lama_jax.synthesize --out synth/demo --resume       # continue an interrupted run

Writes OUT/images/000000000001.png ... and OUT/annotations.json (COCO: images, categories = the
model's vocabulary with its ids — COCO ids for COCO-Stuff — with `isthing` and a 'thing'/'stuff'
supercategory, and one annotation per layout object: the layout box, the RLE of the object's
adapted mask restricted to the box and binarised at --mask_threshold, and its area), plus
OUT/synthesis.json (the settings).

Layouts come from a layout file (--layouts) or a prepared split (--split, --data_dir), used in order
and cycled when --num_images asks for more; --jitter moves and scales the boxes a little (clipped to
the image), differently on every pass, so one split yields many distinct layouts.

A run can be interrupted at any time: --resume (with --out, other flags optional but must match)
finishes it without duplicating images, and gives the same files as an uninterrupted run.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence
import math
import os
import sys

from absl import flags

from lama_jax import cli
from lama_jax import files
from lama_jax.datasets import builders
from lama_jax.errors import LamaError
from lama_jax.inference import coco_export
from lama_jax.inference import layouts as layouts_lib
from lama_jax.inference import sampling
from lama_jax.inference import synthesis
from lama_jax.inference.generator import LayoutGenerator

FLAGS = cli.flag_values()
flags.DEFINE_string('model', None, 'Training workdir, generator directory or portable artifact.',
                    flag_values=FLAGS)
flags.DEFINE_string('out', None, 'Output folder (new or empty; with --resume the interrupted one).',
                    flag_values=FLAGS, required=True)
flags.DEFINE_integer('num_images', None, 'Images to write (1 to 100,000,000).', flag_values=FLAGS)
flags.DEFINE_string('layouts', None, 'Layout JSON file (one layout or a list).', flag_values=FLAGS)
flags.DEFINE_enum('split', None, ['train', 'val'], 'Take the layouts of this prepared split '
                  '(needs --data_dir).', flag_values=FLAGS)
flags.DEFINE_string('data_dir', None, 'Where `prepare` wrote the datasets (for --split).',
                    flag_values=FLAGS)
flags.DEFINE_enum('dataset', None, list(builders.BUILDERS),
                  "Dataset for --split (default: the generator's own).", flag_values=FLAGS)
flags.DEFINE_integer('samples_per_layout', 1, 'Images per (jittered) layout, each with its own z.',
                     flag_values=FLAGS)
flags.DEFINE_float('jitter', 0.0, 'Box jitter: centres move by up to jitter·(w, h), sides scale by '
                   'up to 1 ± jitter, then clipped to the image (0 = layouts as given; 0.1 is a '
                   'good start for new layouts).', flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Seed for z, the noise maps and the jitter.', lower_bound=0,
                     upper_bound=layouts_lib.MAX_SEED, flag_values=FLAGS)
flags.DEFINE_float('truncation', 2.0, 'z entries beyond ±T are redrawn once (official sampler); 0 '
                   'or less draws plain N(0, 1).', flag_values=FLAGS)
flags.DEFINE_integer('batch_size', 8, 'Images per generator call.',
                     upper_bound=sampling.MAX_BATCH, flag_values=FLAGS)
flags.DEFINE_float('mask_threshold', coco_export.DEFAULT_THRESHOLD, "An object's mask holds the "
                   'pixels of its box where its share of the normalised adapted mask exceeds this.',
                   flag_values=FLAGS)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).', lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_boolean('resume', False, 'Continue the interrupted run in --out with its settings.',
                     flag_values=FLAGS)
cli.not_nan(FLAGS, 'truncation')

# The flags a run is made of: synthesis.json records them, --resume restores them.
_RECORDED = ('model', 'step', 'layouts', 'split', 'data_dir', 'dataset', 'num_images',
             'samples_per_layout', 'jitter', 'seed', 'truncation', 'batch_size', 'mask_threshold')
_PATHS = ('model', 'layouts', 'data_dir')


def _normal(name: str, value):
  """A flag value as synthesis.json records it (paths absolute)."""
  return os.path.abspath(value) if name in _PATHS and value else value


def _restore_flags(fv: flags.FlagValues, record: dict) -> None:
  """--resume: flags not given take the recorded values; given ones must match them."""
  recorded = record.get('flags', {})
  missing = [name for name in _RECORDED if name not in recorded]
  if missing:
    raise LamaError(f'{os.path.join(fv.out, synthesis.RECORD)}: not a synthesis record (its "flags" '
                    f'lack {", ".join(missing)}); cannot resume from it')
  for name in _RECORDED:
    value = recorded.get(name)
    if fv[name].present and _normal(name, fv[name].value) != value:
      raise LamaError(f'--{name}={fv[name].value} differs from the interrupted run in {fv.out} '
                      f'({value}); resume with its settings, or start a new --out')
    fv[name].value = value


def _check_flags(fv: flags.FlagValues) -> None:
  if not fv.model:
    raise LamaError('--model is required (a training workdir, generator directory or artifact)')
  if fv.num_images is None or fv.num_images < 1:
    raise LamaError(f'--num_images must be at least 1, got {fv.num_images}')
  if fv.num_images > synthesis.MAX_IMAGES:
    raise LamaError(f'--num_images must be at most {synthesis.MAX_IMAGES:,} (one annotations.json '
                    f'lists them all), got {fv.num_images:,}; make larger sets as several runs '
                    'with different --seed')
  if bool(fv.layouts) == bool(fv.split):
    raise LamaError('give either --layouts FILE or --split train|val (with --data_dir)')
  if fv.layouts and (fv.data_dir or fv.dataset):
    raise LamaError(f'--{"data_dir" if fv.data_dir else "dataset"} goes with --split; --layouts '
                    'takes the layouts from its file')
  if fv.split and not fv.data_dir:
    raise LamaError('--split needs --data_dir (where `prepare` wrote the datasets)')
  if fv.layouts:
    files.check_input_file(fv.layouts, '--layouts', 'layout file')
  if fv.samples_per_layout < 1:
    raise LamaError(f'--samples_per_layout must be at least 1, got {fv.samples_per_layout}')
  if not 0 <= fv.jitter <= 0.5:
    raise LamaError(f'--jitter must lie in [0, 0.5], got {fv.jitter}')
  if fv.batch_size < 1:
    raise LamaError(f'--batch_size must be at least 1, got {fv.batch_size}')
  if not 0 < fv.mask_threshold < 1:
    raise LamaError(f'--mask_threshold must lie in (0, 1), got {fv.mask_threshold}')


def _record(fv: flags.FlagValues, gen: LayoutGenerator) -> dict:
  values = {name: _normal(name, fv[name].value) for name in _RECORDED}
  values['step'] = gen.step  # the latest step now, so a resumed run uses the same checkpoint
  source = synthesis.file_sha256(fv.layouts) if fv.layouts else None
  return {'flags': values, 'layouts_sha256': source}


def _main(fv: flags.FlagValues) -> None:
  # A file, a folder below a file or no permission: one line now, not after loading the model.
  files.check_folder_target(fv.out, '--out')
  record = synthesis.check_out(fv.out, fv.resume)
  if record is not None:
    _restore_flags(fv, record)
  _check_flags(fv)
  if record is not None and fv.layouts:
    recorded = record.get('layouts_sha256')
    if recorded is not None and recorded != synthesis.file_sha256(fv.layouts):
      raise LamaError(f'--layouts {fv.layouts}: the file has changed since the interrupted run in '
                      f'{fv.out} started; restore it, or start a new --out')
  gen = LayoutGenerator.load(fv.model, fv.step)
  settings = synthesis.Settings(fv.num_images, fv.samples_per_layout, fv.jitter, fv.seed,
                                fv.truncation if fv.truncation > 0 else None, fv.batch_size,
                                fv.mask_threshold)
  if fv.layouts:
    layouts = synthesis.from_file(gen, fv.layouts)
  else:
    limit = math.ceil(fv.num_images / fv.samples_per_layout)
    layouts = synthesis.from_split(gen, fv.data_dir, fv.dataset or gen.dataset, fv.split, limit)
  try:
    summary = synthesis.synthesize(gen, layouts, settings, fv.out, _record(fv, gen), fv.resume)
  except KeyboardInterrupt:
    print(f'interrupted: continue with python -m lama_jax.synthesize --out {fv.out} --resume',
          file=sys.stderr)
    raise
  speed = f', {summary.steady_rate:.2f} images/s after compiling' if summary.steady_rate else ''
  resumed = f', {summary.resumed_from} already there' if summary.resumed_from else ''
  print(f'wrote {summary.images} images and {summary.annotations} annotations ({summary.things} '
        f'things, {summary.annotations - summary.things} stuff; {summary.empty} objects with an '
        f'empty mask left out) to {fv.out} in {summary.seconds:.1f} s{speed}{resumed}')


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
