r"""Evaluates a generator on the validation split: FID, SceneFID, DS, CAS, YOLO, mask entropy.

  python -m lama_jax.evaluate --workdir runs/coco128 --data_dir data/tfds \
      --metrics fid,scene_fid,ds,cas,mask_entropy \
      --inception_weights pt_inception-2015-12-05-6726825d.pth \
      --lpips_weights alex.pth --alexnet_weights alexnet-owt-7be5be79.pth
  python -m lama_jax.evaluate --workdir runs/shapes64 --data_dir data/tfds  # alignment,mask_entropy

Protocol (the official test.py): every validation layout is sampled --num_samples times (5 for
COCO-Stuff and shapes, 1 for Visual Genome), each image quantised to uint8 exactly as a saved PNG
((x·0.5 + 0.5)·255, truncated). The samples are those `python -m lama_jax.sample --val` writes with
the same --seed, --batch_size and --truncation. Real images are the val images at the generator's
resolution, as the input pipeline gives them.

Metrics:
  fid           FID of all samples against the real val images (--inception_weights: pytorch-fid's
                pt_inception-2015-12-05-6726825d.pth).
  scene_fid     FID of 224×224 crops of every object (label > 0): real crops round box corners up,
                generated ones truncate, as the official scripts. Same weights.
  ds            Diversity score: LPIPS between samples 0 and 1 of each layout, mean ± std
                (--lpips_weights: lpips v0.1 alex.pth, --alexnet_weights: torchvision alexnet).
                With one sample per layout (VG) a second one is drawn for DS only.
  cas           Classification accuracy score: a ResNet trained on 32×32 crops of the generated
                objects, tested on the real val crops (--cas_epochs).
  yolo          YOLO score, detector-agnostic (see below).
  mask_entropy  Mean entropy of the normalised raw and adapted masks, and LAMA's strength |α|.
  alignment     Shapes only: share of thing boxes holding their category's colour (no weights).
  all           Everything; metrics whose weights or flags are missing are skipped with a note.

Real-image statistics are cached in DATA_DIR/fid_stats/<dataset>_<size>_{full,scene}.npz
(with --max_layouts N: ..._first<N>.npz), so later evaluations only run Inception on samples. A
cache made with other Inception weights, from a val split prepared again since, or (SceneFID) for
another max_objects is computed again. A metric the samples do not allow (no objects to crop, CAS's
classifier diverged) is left out with a note; the others are written, and the run exits 2.

YOLO score how-to (two runs, the detector is yours, e.g. YOLOv4 as in the paper):
  1. python -m lama_jax.evaluate --workdir RUN --data_dir D --metrics yolo --yolo_dir Y
     writes Y/<image_id>.png (sample 0 of each layout, upsampled bilinearly to 512×512) and
     Y/manifest.json (the evaluated image ids and the sizes of the written images).
  2. Run the detector on Y/*.png and write its boxes as a COCO results JSON
     ([{"image_id", "category_id", "bbox": [x, y, w, h] in 512×512 pixels, "score"}, ...]).
  3. python -m lama_jax.evaluate --workdir RUN --data_dir D --metrics yolo --detections dets.json \
         --instances annotations/instances_val2017.json [--yolo_dir Y]
     rescales the boxes from 512×512 to each image's original size and reports COCO AP, AP50 and
     AP75 on the evaluated ids only (those of Y/manifest.json when --yolo_dir is given); no
     sampling.

Results go to --out (default RUN/eval) as metrics.json and metrics.md, and the table is printed.
Bad flags or inputs stop the run before any sampling with one line on stderr and exit code 2.
"""
from lama_jax import startup_interrupts  # first: a Ctrl-C during the imports below is kept
startup_interrupts.defer_if_main(__name__)

from collections.abc import Sequence
import contextlib
import os

from absl import flags

from lama_jax import cli
from lama_jax import files
from lama_jax.datasets import builders
from lama_jax.evaluation import driver
from lama_jax.evaluation import registry
from lama_jax.evaluation import report as report_lib
from lama_jax.evaluation.common import COUNT_LIMITS, EvalError, Settings, check_counts
from lama_jax.inference.layouts import MAX_SEED

FLAGS = cli.flag_values()
flags.DEFINE_string('workdir', None, 'Training workdir (latest checkpoint), an exported or '
                    'converted generator directory, or a portable artifact (export --format '
                    'stablehlo).', flag_values=FLAGS, required=True)
flags.DEFINE_string('data_dir', None, 'Where `prepare` wrote the datasets.', flag_values=FLAGS,
                    required=True)
flags.DEFINE_string('metrics', None, f'Comma-separated, from {",".join(registry.METRICS)} or '
                    '"all" (default: alignment,mask_entropy for shapes, else '
                    'fid,scene_fid,mask_entropy).', flag_values=FLAGS)
flags.DEFINE_string('inception_weights', None, "pytorch-fid's "
                    'pt_inception-2015-12-05-6726825d.pth.', flag_values=FLAGS)
flags.DEFINE_string('lpips_weights', None, 'lpips v0.1 alex.pth (linear layers).',
                    flag_values=FLAGS)
flags.DEFINE_string('alexnet_weights', None, "torchvision's alexnet state dict.", flag_values=FLAGS)
flags.DEFINE_string('yolo_dir', None, 'Write one sample per layout at 512×512 here for a detector '
                    '(with --detections: score the ids of its manifest.json).', flag_values=FLAGS)
flags.DEFINE_string('detections', None, 'COCO results JSON of the detector on --yolo_dir images.',
                    flag_values=FLAGS)
flags.DEFINE_string('instances', None, 'instances_val2017.json, the ground truth for --detections.',
                    flag_values=FLAGS)
flags.DEFINE_integer('num_samples', None, 'Samples per layout (default 5 for COCO-Stuff and '
                     f"shapes, 1 for VG; at most {COUNT_LIMITS['num_samples']}).",
                     flag_values=FLAGS)
flags.DEFINE_integer('batch_size', 16, 'Layouts per generator batch (at most '
                     f"{COUNT_LIMITS['batch_size']}).", flag_values=FLAGS)
flags.DEFINE_integer('inception_batch_size', 50, 'Images per Inception pass (at most '
                     f"{COUNT_LIMITS['inception_batch_size']}).", flag_values=FLAGS)
flags.DEFINE_integer('seed', 0, 'Sampling seed (as `sample --val`).', lower_bound=0,
                     upper_bound=MAX_SEED, flag_values=FLAGS)
flags.DEFINE_float('truncation', 2.0, 'z entries beyond ±T are redrawn once (official); 0 or less: '
                   'plain N(0, 1).', flag_values=FLAGS)
flags.DEFINE_integer('max_layouts', None, 'Evaluate only the first N val layouts (quick runs; not '
                     'comparable).', flag_values=FLAGS)
flags.DEFINE_integer('cas_epochs', 20, 'CAS classifier training epochs.', flag_values=FLAGS)
flags.DEFINE_enum('dataset', None, list(builders.BUILDERS),
                  "The val split to use (default: the generator's dataset); its categories must "
                  "be the generator's.", flag_values=FLAGS)
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).', lower_bound=0,
                     flag_values=FLAGS)
flags.DEFINE_string('out', None, 'Output folder (default: WORKDIR/eval).', flag_values=FLAGS)
cli.not_nan(FLAGS, 'truncation')


def settings_from_flags(fv: flags.FlagValues) -> Settings:
  """The evaluators' settings from the flags, checked.

  Raises:
    EvalError: a count below 1, or --detections without --instances.
  """
  check_counts(batch_size=fv.batch_size, inception_batch_size=fv.inception_batch_size,
               cas_epochs=fv.cas_epochs, num_samples=fv.num_samples, max_layouts=fv.max_layouts)
  if fv.detections and not fv.instances:
    raise EvalError('--detections needs --instances (instances_val2017.json)')
  return Settings(
      num_samples=fv.num_samples, seed=fv.seed,
      truncation=fv.truncation if fv.truncation > 0 else None, batch_size=fv.batch_size,
      max_layouts=fv.max_layouts, data_dir=fv.data_dir, inception_weights=fv.inception_weights,
      inception_batch_size=fv.inception_batch_size, lpips_weights=fv.lpips_weights,
      alexnet_weights=fv.alexnet_weights, cas_epochs=fv.cas_epochs, yolo_dir=fv.yolo_dir,
      detections=fv.detections, instances=fv.instances)


def _main(fv: flags.FlagValues) -> None:
  settings = settings_from_flags(fv)
  names, notes = registry.select(fv.metrics, settings,
                                 lambda: driver.dataset_of(fv.workdir, fv.dataset))
  out = fv.out or os.path.join(fv.workdir, 'eval')
  writes_yolo = 'yolo' in names and fv.yolo_dir and not fv.detections
  files.check_folder_target(out, '--out')
  if writes_yolo:
    files.check_folder_target(fv.yolo_dir, '--yolo_dir')
  with contextlib.ExitStack() as stack:
    if writes_yolo:
      stack.enter_context(files.output_dir(fv.yolo_dir))
    stack.enter_context(files.output_dir(out))
    report = driver.evaluate(fv.workdir, names, settings, fv.step, fv.dataset, notes)
    table = report_lib.markdown_table(report)
    # Together: a rerun into the same --out never leaves one new file beside an old one.
    with files.atomic_files([os.path.join(out, 'metrics.json'),
                             os.path.join(out, 'metrics.md')]) as (json_tmp, md_tmp):
      report_lib.write_json(json_tmp, report)
      files.write_text(md_tmp, table)
  print(table)
  print(f'wrote {os.path.join(out, "metrics.json")} and metrics.md')
  failed = driver.failures(report)
  if failed:  # after the report is written: the other metrics are kept, and the exit code says so
    raise EvalError(f'{failed[0].rstrip(".")}'
                    f'{f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""}; '
                    f'the other results are in {os.path.join(out, "metrics.json")}')


def main(argv: Sequence[str] | None = None) -> int:
  return cli.run(_main, FLAGS, argv, __doc__)


if __name__ == '__main__':
  cli.exit_process(main())
