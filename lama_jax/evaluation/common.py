"""What every evaluator shares: the error type, the settings, the batches it reads, its base class.

An evaluator is one metric over sampled validation layouts, with big_vision's shape: it is built
from the settings (weights, batch sizes) and the generator it scores (`Target`), the driver calls
`add(samples)` for every batch and sample index, and `result()` once at the end. Class attributes
say what it needs, so missing flags are reported (naming the flag) before anything is sampled.
"""
import dataclasses
from typing import Any, Callable, ClassVar

import numpy as np

from lama_jax.cli import one_line
from lama_jax.errors import LamaError
from lama_jax.inference import sampling

# What each weights flag wants, for the messages naming a missing one.
FLAG_HELP = {
    'inception_weights': 'pytorch-fid pt_inception-2015-12-05-6726825d.pth',
    'lpips_weights': 'lpips v0.1 alex.pth',
    'alexnet_weights': 'torchvision alexnet state dict',
}
_LOAD_ERRORS = (KeyError, ValueError, OSError, RuntimeError, ImportError)


class EvalError(LamaError):
  """A problem with the evaluation's flags or inputs (evaluate and the mask-clarity experiment)."""


class NotComputed(EvalError):
  """A metric that the samples made do not allow (no objects to crop, a classifier that diverged):
  the other metrics of the run are still reported."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """How to sample the validation layouts and what the evaluators need (the command's flags).

  Attributes:
    num_samples: samples per layout (None: the dataset's official count, see `sampling`).
    seed: the sampling seed (as `sample --val`); CAS trains with it too.
    truncation: z entries beyond ±truncation are redrawn once; None draws plain N(0, 1).
    batch_size: layouts per generator batch (also the LPIPS batch).
    max_layouts: only the first N val layouts (None: all).
    data_dir: where `prepare` wrote the datasets (real FID statistics are cached below it).
    inception_weights, inception_batch_size: FID and SceneFID.
    lpips_weights, alexnet_weights: the diversity score.
    cas_epochs: CAS classifier epochs.
    yolo_dir, detections, instances: the YOLO score (write images / score detections).
  """
  num_samples: int | None = None
  seed: int = 0
  truncation: float | None = 2.0
  batch_size: int = 16
  max_layouts: int | None = None
  data_dir: str = ''
  inception_weights: str | None = None
  inception_batch_size: int = 50
  lpips_weights: str | None = None
  alexnet_weights: str | None = None
  cas_epochs: int = 20
  yolo_dir: str | None = None
  detections: str | None = None
  instances: str | None = None

  def samples_per_layout(self, dataset: str) -> int:
    """`num_samples`, or the official count for `dataset` when it is None."""
    return self.num_samples or sampling.val_samples_per_layout(dataset)


@dataclasses.dataclass(frozen=True)
class Target:
  """The generator under evaluation, as far as evaluators need to know it."""
  dataset: str
  image_size: int
  num_classes: int
  step: int = 0
  lama_alpha: float | None = None  # LAMA's α, reported with the mask entropy (None: no LAMA)
  max_objects: int = 0  # objects per layout the generator takes (val layouts keep their first N)

  @classmethod
  def of(cls, gen: Any, dataset: str | None = None) -> 'Target':
    """The target of a `LayoutGenerator` (evaluated on `dataset`, default its own)."""
    try:
      alpha = float(np.asarray(gen.variables['params']['lama']['alpha']))
    except (KeyError, TypeError):
      alpha = None
    runtime = getattr(gen, 'runtime', None)  # a portable artifact: its weights by name
    if alpha is None and runtime is not None:
      names = [w['name'] for w in runtime.manifest['weights']]
      if 'params/lama/alpha' in names:
        alpha = float(np.asarray(runtime.weights[names.index('params/lama/alpha')]))
    return cls(dataset or gen.dataset, gen.image_size, gen.num_classes, gen.step, alpha,
               gen.max_objects)


@dataclasses.dataclass
class SampleBatch:
  """Sample `repeat` of every layout of one batch (only the real rows, no padding).

  Attributes:
    repeat: which sample of each layout this is (0, 1, ...); real images come with every repeat.
    boxes: [N, O, 4] normalised (x, y, w, h); labels: [N, O] (0 = padding); image_ids: [N].
    real: [N, H, W, 3] uint8 real images (rounded, as the pipeline decodes them), or None.
    images: [N, H, W, 3] uint8 samples, exactly as a saved PNG holds them; None when no evaluator
      asked for samples (the driver then passes the layouts once, with repeat 0).
    masks, raw_masks: [N, O, H, W] adapted and raw masks of the samples (or the given masks).
  """
  repeat: int
  boxes: np.ndarray
  labels: np.ndarray
  image_ids: np.ndarray
  real: np.ndarray | None = None
  images: np.ndarray | None = None
  masks: np.ndarray | None = None
  raw_masks: np.ndarray | None = None


class Evaluator:
  """One metric: `add(samples)` for every batch and sample index, then `result()`.

  Subclasses set `name`, the Settings fields naming weight files they need (`weights`), the
  datasets they apply to, and per instance `repeats`, the samples per layout they read (the driver
  draws the largest count asked for; evaluators skip the repeats they do not use).
  """
  name: ClassVar[str] = ''
  weights: ClassVar[tuple[str, ...]] = ()  # Settings fields: weight files that must be given
  datasets: ClassVar[tuple[str, ...] | None] = None  # None: every dataset
  needs_real: ClassVar[bool] = False  # reads the real images (SampleBatch.real)
  min_layouts: ClassVar[int] = 1  # val layouts it needs (checked before any sampling)
  repeats: int = 1

  def __init__(self):
    self.notes: list[str] = []  # lines for the report (what was skipped, written, ...)

  @classmethod
  def missing(cls, settings: Settings) -> str | None:
    """What flag is missing for this evaluator, or None."""
    for flag in cls.weights:
      if not getattr(settings, flag):
        return f'needs --{flag} ({FLAG_HELP[flag]})'
    return None

  @classmethod
  def unsupported(cls, dataset: str) -> str | None:
    """Why the evaluator does not apply to `dataset`, or None."""
    if cls.datasets is not None and dataset not in cls.datasets:
      return f'works on the {" and ".join(cls.datasets)} dataset only, not {dataset}'
    return None

  @classmethod
  def input_files(cls, settings: Settings) -> dict[str, str]:
    """{flag: path} of the files that must exist (weights, detections)."""
    return {flag: getattr(settings, flag) for flag in cls.weights}

  @classmethod
  def create(cls, settings: Settings, target: Target) -> 'Evaluator':
    """Builds the evaluator (loading its weights) for `target`."""
    del settings, target
    return cls()

  def add(self, samples: SampleBatch) -> None:
    raise NotImplementedError

  def result(self) -> Any:
    """The metric (a number or a dict), or None when there is nothing to report."""
    raise NotImplementedError


# Upper limits of counts: beyond them a typo would exhaust the memory (batches) or the disk.
MAX_INCEPTION_BATCH = 250
COUNT_LIMITS = {'batch_size': sampling.MAX_BATCH, 'num_samples': sampling.MAX_SAMPLES_PER_LAYOUT,
                'inception_batch_size': MAX_INCEPTION_BATCH}


def check_counts(**counts: int | None) -> None:
  """Raises EvalError naming the first flag (keyword) given a count below 1 or above its limit
  (`COUNT_LIMITS`); None is unset."""
  for flag, value in counts.items():
    if value is not None and value < 1:
      raise EvalError(f'--{flag} must be at least 1, got {value}')
    limit = COUNT_LIMITS.get(flag)
    if value is not None and limit is not None and value > limit:
      raise EvalError(f'--{flag} {value} is more than the limit of {limit}')


def load_weights(flag: str, loader: Callable[..., Any], *paths: str) -> Any:
  """`loader(*paths)`, with a failure reported as an EvalError naming the flag and file."""
  try:
    return loader(*paths)
  except _LOAD_ERRORS as e:
    # A KeyError's text, not its repr in quotes; the file is named once (torch_io names it too).
    text = ' '.join(str(e.args[0]).split()) if isinstance(e, KeyError) and e.args else one_line(e)
    raise EvalError(f'--{flag} {paths[0]}: cannot load: '
                    f'{text.removeprefix(f"{paths[0]}: ")}') from None
