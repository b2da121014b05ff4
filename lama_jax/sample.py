r"""Sample images from layouts (JSON) or from the prepared validation split.

  python -m lama_jax.sample --workdir runs/demo --layouts data/layouts/shapes.json --out samples/
  python -m lama_jax.sample --workdir runs/coco128 --val --data_dir data/tfds --out samples/val128

For layout NAME and sample k it writes NAME_k.png (image), NAME_k_mask.png and NAME_k_raw_mask.png
(adapted and raw masks coloured by category), NAME_layout.png (boxes with names), and one
contact_sheet.png (a row per layout: layout, samples, raw and adapted masks of sample 0, labelled).
All layouts are validated before anything is written; a bad one stops the run with a one-line message
and exit code 2.

Each layout draws its own noise: sample k of layout I (from 0, in file order) is what
`LayoutGenerator.generate` returns for that layout with seed=sampling.layout_seed(SEED, I) and
first_row=k (as uint8: image_format='uint8'), not with seed=SEED.

--fix_z keeps every object's z (and the image z and noise) across the layouts of the file: objects
are matched by (category, how many of that category came before it), so a list of layouts that
differ by one moved or added box shows how LAMA reconfigures the scene around the change.

--val writes IMAGEID_k.png for every validation layout (5 samples per layout for COCO-Stuff and
shapes, 1 for Visual Genome, as the official test.py), for the metrics.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence

from absl import flags

from lama_jax import cli
from lama_jax import files
from lama_jax.datasets import builders
from lama_jax.errors import LamaError
from lama_jax.inference import layouts as layouts_lib
from lama_jax.inference import sampling
from lama_jax.inference.generator import LayoutGenerator

FLAGS = cli.flag_values()
flags.DEFINE_string('workdir', None, 'Training workdir (latest checkpoint), or an exported or '
                    'converted generator directory.', flag_values=FLAGS, required=True)
flags.DEFINE_string('layouts', None, 'Layout JSON file: one layout or a list of layouts.',
                    flag_values=FLAGS)
flags.DEFINE_string('out', None, 'Output folder (created if missing).', flag_values=FLAGS,
                    required=True)
flags.DEFINE_integer('num_samples', None, 'Samples per layout (default 1; with --val 5 for '
                     'COCO-Stuff and shapes, 1 for VG).', lower_bound=1,
                     upper_bound=sampling.MAX_SAMPLES_PER_LAYOUT, flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Random seed for z and the noise maps; layout I of the file is '
                     'sampled with seed sampling.layout_seed(SEED, I) (SEED itself with --fix_z), '
                     'as the text above says.', lower_bound=0,
                     upper_bound=layouts_lib.MAX_SEED, flag_values=FLAGS)
flags.DEFINE_float('truncation', 2.0, 'z entries beyond ±T are redrawn once, as the official '
                   'sampler does; 0 or less draws plain N(0, 1).', flag_values=FLAGS)
flags.DEFINE_boolean('fix_z', False, "Keep each object's z across the layouts of the file "
                     "(objects matched by category and occurrence), to show LAMA's reconfiguration.",
                     flag_values=FLAGS)
flags.DEFINE_boolean('val', False, 'Sample the prepared validation split (needs --data_dir), not '
                     '--layouts.', flag_values=FLAGS)
flags.DEFINE_string('data_dir', None, 'Where `prepare` wrote the datasets (for --val).',
                    flag_values=FLAGS)
flags.DEFINE_enum('dataset', None, list(builders.BUILDERS),
                  "Dataset for --val (default: the generator's own).", flag_values=FLAGS)
flags.DEFINE_integer('batch_size', 16, 'Images per generator call (layouts per batch for --val).',
                     lower_bound=1, upper_bound=sampling.MAX_BATCH, flag_values=FLAGS)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).', lower_bound=0,
                     flag_values=FLAGS)
cli.not_nan(FLAGS, 'truncation')


def _check_flags(fv: flags.FlagValues) -> None:
  """Everything that can be checked before the generator is loaded or --out created."""
  if fv.val == bool(fv.layouts):
    raise LamaError('give either --layouts FILE or --val (with --data_dir)')
  if fv.layouts and (fv.data_dir or fv.dataset):  # they were ignored without a word
    raise LamaError(f'--{"data_dir" if fv.data_dir else "dataset"} goes with --val; --layouts '
                    'takes the layouts from its file')
  if fv.val and fv.fix_z:
    raise LamaError('--fix_z goes with --layouts (it matches objects across the layouts of a '
                    'file); --val draws every sample anew')
  if fv.val and not fv.data_dir:
    raise LamaError('--val needs --data_dir (where `prepare` wrote the datasets)')
  if fv.layouts:
    files.check_input_file(fv.layouts, '--layouts', 'layout file')
  files.check_folder_target(fv.out, '--out')


def _main(fv: flags.FlagValues) -> None:
  _check_flags(fv)
  gen = LayoutGenerator.load(fv.workdir, fv.step)
  truncation = fv.truncation if fv.truncation > 0 else None
  if fv.val:
    dataset = fv.dataset or gen.dataset
    k = fv.num_samples or sampling.val_samples_per_layout(dataset)
    with files.output_dir(fv.out):
      n = sampling.sample_val(gen, fv.data_dir, dataset, fv.out, k, fv.seed, truncation,
                              fv.batch_size)
    print(f'wrote {n} images to {fv.out}')
    return
  layouts = gen.parse_layouts(fv.layouts)
  with files.output_dir(fv.out):
    written = sampling.sample_layouts(gen, layouts, fv.out, fv.num_samples or 1, fv.seed,
                                      truncation, fv.fix_z, fv.batch_size)
  print(f'wrote {len(written)} files for {len(layouts)} layouts to {fv.out}')


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
