"""The evaluators by name (in report order), the default metrics per dataset, metric selection."""
from typing import Callable, Sequence

from lama_jax import files
from lama_jax.evaluation.alignment import Alignment
from lama_jax.evaluation.cas import Cas
from lama_jax.evaluation.common import EvalError, Evaluator, Settings, Target
from lama_jax.evaluation.diversity import Diversity
from lama_jax.evaluation.fid import Fid, SceneFid
from lama_jax.evaluation.mask_entropy import MaskEntropy
from lama_jax.evaluation.yolo import Yolo

EVALUATORS: dict[str, type[Evaluator]] = {
    cls.name: cls for cls in (Fid, SceneFid, Diversity, Cas, Yolo, MaskEntropy, Alignment)}
METRICS = tuple(EVALUATORS)
DEFAULT_METRICS = {'shapes': ('alignment', 'mask_entropy')}
OTHER_DEFAULT_METRICS = ('fid', 'scene_fid', 'mask_entropy')


def default_metrics(dataset: str) -> tuple[str, ...]:
  """What `evaluate` computes when --metrics is not given."""
  return DEFAULT_METRICS.get(dataset, OTHER_DEFAULT_METRICS)


def _parse(text: str, choices: Sequence[str], allow_all: bool) -> list[str]:
  asked = [m.strip() for m in text.split(',') if m.strip()]
  if not asked:
    raise EvalError('--metrics is empty')
  unknown = [m for m in asked if m not in choices and not (allow_all and m == 'all')]
  if unknown:
    raise EvalError(f'unknown metric(s) {",".join(unknown)} in --metrics; choose from '
                    f'{",".join(choices)}' + (' or all' if allow_all else ''))
  return asked


def select(text: str | None, settings: Settings, dataset_of: Callable[[], str],
           choices: Sequence[str] = METRICS,
           defaults: Callable[[str], Sequence[str]] = default_metrics,
           allow_all: bool = True) -> tuple[list[str], list[str]]:
  """The metrics to compute, in report order, and notes on those `all` skipped.

  Flags are checked before the generator directory is read: an explicit --metrics list is checked
  for missing weights first, then `dataset_of()` gives the dataset (for the defaults and the
  dataset-only metrics), then every chosen metric's input files must exist.

  Raises:
    EvalError: an unknown metric, or one whose flags are missing (naming the flag) or that does not
      apply to the dataset (unless skipped by `all`); a named input file that does not exist.
  """
  asked = None if text is None else _parse(text, choices, allow_all)
  want_all = asked is not None and 'all' in asked
  for name in asked if asked and not want_all else ():
    problem = EVALUATORS[name].missing(settings)
    if problem:
      raise EvalError(f'{name}: {problem}')
  dataset = dataset_of()
  asked = list(choices) if want_all else asked or list(defaults(dataset))
  chosen, notes = [], []
  for name in (m for m in choices if m in asked):
    problem = EVALUATORS[name].missing(settings) or EVALUATORS[name].unsupported(dataset)
    if problem is None:
      chosen.append(name)
    elif want_all:
      notes.append(f'{name} skipped: {problem}')
    else:
      raise EvalError(f'{name}: {problem}')
  for name in chosen:
    for flag, path in EVALUATORS[name].input_files(settings).items():
      files.check_input_file(path, f'--{flag}', 'file')  # a folder: not "no such file"
  if not chosen:
    raise EvalError('no metric left to compute: ' + '; '.join(notes))
  return chosen, notes


def create(names: Sequence[str], settings: Settings, target: Target) -> list[Evaluator]:
  """The named evaluators for `target` (weights are loaded here, before any sampling)."""
  return [EVALUATORS[name].create(settings, target) for name in names]
