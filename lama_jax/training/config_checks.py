"""Checks a training config before anything is created: every field known, typed and in range.

`check(config, num_devices)` raises a `ConfigError` naming the field as it is overridden on the
command line (`--config.model.ch`), what it holds and what is allowed, so that a bad value stops
`main` (and `benchmark`) before the workdir exists, not minutes later inside TensorFlow or XLA.

The limits on sizes (batch, objects, widths, buffers, layouts) are where a value would exhaust the
memory or disk of a machine long before it could be useful; each message says the limit.
"""
import difflib
import math
from typing import Any, Callable

import ml_collections

from lama_jax.datasets import shapes
from lama_jax.errors import LamaError
from lama_jax.inference import layouts
from lama_jax.models import presets
from lama_jax.models.layers import GROUP_NORM_GROUPS

DATASETS = ('coco_stuff', 'visual_genome', 'shapes', 'synthetic')
FLIP_MODES = ('official', 'random', 'none')
NORMS = ('bgn', 'bn', 'gn')
DTYPES = ('float32', 'bfloat16', 'float16')
SEED_RANGE = (0, layouts.MAX_SEED)  # JAX keys hold 32 bits: larger seeds would alias smaller ones
MAX_BATCH_PER_DEVICE = 1024
MAX_OBJECTS = layouts.MAX_OBJECTS
MAX_WIDTH = 512  # model.ch, model.d_ch (the paper's is 64)
MAX_MASK_HIDDEN = 2048
MAX_SHUFFLE_BUFFER = 20_000  # stored examples (192 KB each at 256×256: 4 GB at the limit)
MAX_SHAPES_IMAGES = shapes.MAX_IMAGES  # the generated shapes set, per split
MAX_SAMPLE_IMAGES = 64  # log.num_sample_images: one generator batch per sample step
MAX_EVAL_LAYOUTS = 5_000  # evals.num_layouts: their real images are held in memory


class ConfigError(LamaError, ValueError):
  """A training config field that is missing, unknown, mistyped or out of range."""


def _int(low: int | None = None, high: int | None = None, why: str = '') -> Callable:
  def check(v):
    if not isinstance(v, int) or isinstance(v, bool):
      return 'must be an integer'
    if low is not None and v < low or high is not None and v > high:
      span = (f'in [{low}, {high}]' if low is not None and high is not None else
              f'at least {low}' if low is not None else f'at most {high}')
      return f'must be {span}{why}'
    return None
  return check


def _num(low: float | None = None, high: float | None = None, low_open: bool = False,
         high_open: bool = False) -> Callable:
  def check(v):
    if not isinstance(v, (int, float)) or isinstance(v, bool):
      return 'must be a number'
    if not math.isfinite(v):
      return 'must be finite'
    if low is not None and (v < low or low_open and v == low):
      return f'must be {">" if low_open else ">="} {low:g}'
    if high is not None and (v > high or high_open and v == high):
      return f'must be {"<" if high_open else "<="} {high:g}'
    return None
  return check


def _one_of(choices) -> Callable:
  return lambda v: None if v in choices else f'must be one of {", ".join(map(repr, choices))}'


def _bool(v) -> str | None:
  return None if isinstance(v, bool) else 'must be True or False'


def _str(v) -> str | None:
  return None if isinstance(v, str) else 'must be a string'


def _milestones(v) -> str | None:
  if not isinstance(v, (tuple, list)) or not all(
      isinstance(e, int) and not isinstance(e, bool) and e >= 0 for e in v):
    return 'must be a list of epochs (non-negative integers)'
  return None


def _train_steps(v) -> str | None:
  problem = _int()(v)
  if problem is None and v == 0 or (problem is None and v < -1):
    return 'must be at least 1, or -1 for num_epochs × steps per epoch'
  return problem


def _metrics(v) -> str | None:
  if isinstance(v, str) or not isinstance(v, (tuple, list)) or not all(
      isinstance(m, str) for m in v):
    return "must be a list of evaluator names, e.g. ('alignment',)"
  return None


SCHEMA: dict[str, Callable[[Any], str | None]] = {
    'seed': _int(*SEED_RANGE),
    'batch_size': _int(1),
    'num_epochs': _int(1),
    'num_train_steps': _train_steps,
    'time_budget_minutes': _num(0),
    'gt_masks': _bool,
    'compilation_cache_dir': _str,  # 'auto', a folder, or '' (off)
    'data.dataset': _one_of(DATASETS),
    'data.data_dir': _str,
    'data.vocabulary': _str,
    'data.max_objects': _int(1, MAX_OBJECTS),
    'data.flip': _one_of(FLIP_MODES),
    'data.shuffle_buffer': _int(1, MAX_SHUFFLE_BUFFER),
    'data.shapes.manual_dir': _str,
    'data.shapes.num_train': _int(1, MAX_SHAPES_IMAGES),
    'data.shapes.num_val': _int(1, MAX_SHAPES_IMAGES),
    'model.image_size': _one_of(tuple(presets.GENERATOR_CHANNELS)),
    'model.num_classes': _int(2),
    'model.ch': _int(1, MAX_WIDTH),
    'model.d_ch': _int(1, MAX_WIDTH),
    'model.mask_hidden': _int(1, MAX_MASK_HIDDEN),
    'model.mask_adaption': _bool,
    'model.lama_local_blocks': _int(0, 16),
    'model.norm': _one_of(NORMS),
    'model.noise': _bool,
    'model.dtype': _one_of(DTYPES),
    'optim.g_lr': _num(0),
    'optim.d_lr': _num(0),
    'optim.g_slow_mult': _num(0),
    'optim.d_alpha_mult': _num(0),
    'optim.b1': _num(0, 1, high_open=True),
    'optim.b2': _num(0, 1, high_open=True),
    'optim.eps': _num(0, low_open=True),
    'schedule.milestone_epochs': _milestones,
    'schedule.gamma': _num(0, low_open=True),
    'schedule.d_only_iters': _int(0),
    'loss.lambda_obj': _num(0),
    'loss.lambda_img': _num(0),
    'log.every_steps': _int(1),
    'log.checkpoint_every_steps': _int(1),
    'log.keep_checkpoints': _int(1),
    'log.sample_every_steps': _int(1),
    'log.num_sample_images': _int(1, MAX_SAMPLE_IMAGES),
    'evals.metrics': _metrics,
    'evals.num_layouts': _int(0, MAX_EVAL_LAYOUTS),
}


def _flatten(config: ml_collections.ConfigDict, prefix: str = '') -> dict[str, Any]:
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flatten(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


def _fail(field: str, value: Any, problem: str) -> ConfigError:
  return ConfigError(f'--config.{field}={value!r}: {problem}')


def _check_fields(fields: dict[str, Any]) -> None:
  unknown = [k for k in fields if k not in SCHEMA]
  if unknown:
    close = difflib.get_close_matches(unknown[0], SCHEMA, n=1)
    hint = f' (did you mean {close[0]}?)' if close else ''
    raise ConfigError(f'config.{unknown[0]}: unknown config field{hint}; the fields are those of '
                      'configs/default.py')
  missing = [k for k in SCHEMA if k not in fields]
  if missing:
    more = f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''
    raise ConfigError(f'config.{missing[0]} is missing{more}; start the config from '
                      'configs/default.py')
  for field, value in fields.items():
    problem = SCHEMA[field](value)
    if problem:
      raise _fail(field, value, problem)


def _check_evals(config: ml_collections.ConfigDict) -> None:
  from lama_jax.evaluation import registry  # pylint: disable=g-import-not-at-top
  from lama_jax.evaluation.common import Settings  # pylint: disable=g-import-not-at-top
  for name in config.evals.metrics:
    if name not in registry.EVALUATORS:
      raise _fail('evals.metrics', tuple(config.evals.metrics),
                  f'unknown evaluator {name!r}; choose from {", ".join(registry.METRICS)}')
    cls = registry.EVALUATORS[name]
    problem = cls.missing(Settings()) or (
        None if config.data.dataset == 'synthetic' else cls.unsupported(config.data.dataset))
    if problem:
      raise _fail('evals.metrics', tuple(config.evals.metrics),
                  f'{name} cannot run during training: {problem}')


def _check_norm_groups(model: ml_collections.ConfigDict) -> None:
  """ISLA-Norm's group norm splits every generator layer's channels (multiples of model.ch, the
  last one model.ch itself) into equal groups; other widths fail inside the model's first trace."""
  if model.norm in ('bgn', 'gn') and model.ch % GROUP_NORM_GROUPS:
    raise _fail('model.ch', model.ch, f'must be a multiple of {GROUP_NORM_GROUPS} with '
                f'model.norm={model.norm!r} (its group norm splits the channels into '
                f'{GROUP_NORM_GROUPS} groups); or use model.norm=\'bn\'')


def _check_vocabulary(config: ml_collections.ConfigDict) -> None:
  """A vocabulary the user names must load (the datasets' own fall back to numbered names)."""
  from lama_jax.datasets import vocabulary  # pylint: disable=g-import-not-at-top
  name = config.data.vocabulary
  if not name:
    return
  try:
    vocabulary.load_vocabulary(name)
  except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
    raise _fail('data.vocabulary', name, str(e).rstrip('.')) from None


def _check_num_classes(config: ml_collections.ConfigDict) -> None:
  """The dataset's labels must be model classes: a larger id indexes past the label embedding
  (clamped silently under jit) and the first step's loss is NaN. Its vocabulary bounds them
  (`prepare` checks every label against it); VG's is only known once prepared."""
  from lama_jax.datasets import vocabulary  # pylint: disable=g-import-not-at-top
  data = config.data
  if data.dataset == 'synthetic':  # draws labels below model.num_classes
    return
  try:
    vocab = vocabulary.load_vocabulary(
        vocabulary.dataset_vocabulary_name(data.dataset, data.data_dir))
  except (FileNotFoundError, ValueError):
    return  # not prepared yet: the data loader says so
  if vocab.num_classes > config.model.num_classes:
    raise _fail('model.num_classes', config.model.num_classes,
                f'the {data.dataset} labels run up to {vocab.num_classes - 1} (its vocabulary '
                f'has {vocab.num_classes} classes with 0 = __image__); set it to at least '
                f'{vocab.num_classes}')


def check(config: ml_collections.ConfigDict, num_devices: int = 1, evals: bool = True) -> None:
  """Raises ConfigError for the first bad field of a training config.

  Args:
    config: the config as `main` received it (file plus command-line overrides).
    num_devices: the devices the run will use (every process's): the global batch is split evenly.
    evals: also check `config.evals` (False where no evaluator runs, e.g. `benchmark`: the
      evaluators import TensorFlow, which accelerator-only machines may lack).
  """
  if not isinstance(config, ml_collections.ConfigDict):
    raise ConfigError(f'get_config() must return an ml_collections.ConfigDict, not '
                      f'{type(config).__name__}')
  _check_fields(_flatten(config))
  batch = config.batch_size
  if batch % num_devices:
    raise _fail('batch_size', batch, f'must be divisible by the {num_devices} devices (each '
                'device takes an equal share)')
  if batch // num_devices > MAX_BATCH_PER_DEVICE:
    raise _fail('batch_size', batch, f'{batch // num_devices} images per device, more than the '
                f'limit of {MAX_BATCH_PER_DEVICE} per device (beyond it memory runs out)')
  _check_norm_groups(config.model)
  _check_vocabulary(config)
  _check_num_classes(config)
  if evals:
    _check_evals(config)
