r"""The mask-clarity experiment of the paper's Sec. 3 (Fig. 2): a mask-to-image generator trained on
ground-truth masks, tested with increasingly tainted masks.

  python -m lama_jax.mask_clarity --workdir runs/shapes64_gt_masks --data_dir data/tfds
  python -m lama_jax.mask_clarity --workdir runs/coco128_gt_masks --data_dir data/tfds \
      --metrics fid,scene_fid --inception_weights pt_inception-2015-12-05-6726825d.pth

For every τ of --taus, every val layout (the first --max_layouts) is sampled --num_samples times in
eval mode with the semantic mask

    (1 − τ)·M + τ/m·1

where M = masks_to_layout(boxes, ground-truth 32×32 masks) [O, H, W] and m is the number of *real*
objects of that layout (label > 0). The all-one term covers the real objects' channels only:
padding channels stay exactly 0 for every τ (as M is 0 there), so τ = 1 gives 1/m on each real
channel at every pixel. The same seeds (z and noise maps) are used for every τ: only the mask
changes.

Metrics (--metrics, comma separated):
  alignment  shapes only, no weights: share of thing boxes holding their category's colour.
  fid        FID against the real val images (--inception_weights, pytorch-fid's Inception).
  scene_fid  FID of 224×224 object crops (same weights).
Defaults: alignment for the shapes set, fid,scene_fid otherwise. The mean entropy of the normalised
input masks (the paper's mask entropy, Sec. 5) is always reported alongside.

Writes OUT (default RUN/mask_clarity): curve.png (metric vs τ, one line per metric), table.md and
results.json. Bad flags or inputs: one line on stderr, exit code 2.

The generator directory may or may not hold the layout-to-mask network's parameters (it is unused
when masks are given): both checkpoint forms load.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence
import os

from absl import flags

from lama_jax import cli
from lama_jax import files
from lama_jax.datasets import builders
from lama_jax.evaluation import driver
from lama_jax.evaluation import mask_clarity
from lama_jax.evaluation import registry
from lama_jax.evaluation.common import Settings, check_counts
from lama_jax.inference.layouts import MAX_SEED

FLAGS = cli.flag_values()
flags.DEFINE_string('workdir', None, 'Generator directory or training workdir of a GT-mask '
                    'generator.', flag_values=FLAGS, required=True)
flags.DEFINE_string('data_dir', None, 'TFDS data dir holding the prepared dataset.',
                    flag_values=FLAGS, required=True)
flags.DEFINE_enum('dataset', None, list(builders.BUILDERS), "Default: the generator's dataset.",
                  flag_values=FLAGS)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: latest).', lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_string('taus', mask_clarity.DEFAULT_TAUS, 'Comma-separated τ values in [0, 1], '
                    'each once (reported in increasing order).', flag_values=FLAGS)
flags.DEFINE_string('metrics', None, 'Comma-separated from alignment, fid, scene_fid (default: '
                    'alignment for shapes, fid,scene_fid otherwise).', flag_values=FLAGS)
flags.DEFINE_string('inception_weights', None, "pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                    '(fid, scene_fid).', flag_values=FLAGS)
flags.DEFINE_integer('inception_batch_size', 50, 'Images per Inception pass.', flag_values=FLAGS)
flags.DEFINE_integer('max_layouts', None, 'Use the first N val layouts.', flag_values=FLAGS)
flags.DEFINE_integer('num_samples', 1, 'Samples per layout and τ.', flag_values=FLAGS)
flags.DEFINE_integer('batch_size', 16, 'Layouts per generator batch.', flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Sampling seed (as `sample --val`).', lower_bound=0,
                     upper_bound=MAX_SEED, flag_values=FLAGS)
flags.DEFINE_float('truncation', 2.0, 'z truncation; 0 or less disables it.', flag_values=FLAGS)
flags.DEFINE_string('out', None, 'Output folder (default RUN/mask_clarity).', flag_values=FLAGS)
cli.not_nan(FLAGS, 'truncation')


def _settings(fv: flags.FlagValues) -> Settings:
  check_counts(num_samples=fv.num_samples, batch_size=fv.batch_size,
               inception_batch_size=fv.inception_batch_size, max_layouts=fv.max_layouts)
  return Settings(num_samples=fv.num_samples, seed=fv.seed,
                  truncation=fv.truncation if fv.truncation > 0 else None,
                  batch_size=fv.batch_size, max_layouts=fv.max_layouts, data_dir=fv.data_dir,
                  inception_weights=fv.inception_weights,
                  inception_batch_size=fv.inception_batch_size)


def _main(fv: flags.FlagValues) -> None:
  taus = mask_clarity.parse_taus(fv.taus)
  settings = _settings(fv)
  names, _ = registry.select(fv.metrics, settings,
                             lambda: driver.dataset_of(fv.workdir, fv.dataset),
                             choices=mask_clarity.METRICS, defaults=mask_clarity.default_metrics,
                             allow_all=False)
  out = fv.out or os.path.join(fv.workdir, 'mask_clarity')
  files.check_folder_target(out, '--out')
  with files.output_dir(out):
    report = mask_clarity.run(fv.workdir, taus, names, settings, fv.step, fv.dataset)
    paths = mask_clarity.write_outputs(report, out)
  print(mask_clarity.markdown_table(report), end='')
  print(f"wrote {paths['curve.png']}, {paths['table.md']}, {paths['results.json']}")


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
