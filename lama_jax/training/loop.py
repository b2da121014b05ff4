"""Training loop: data, the jitted step over a Mesh, checkpoints, metrics, sample grids.

`train_and_evaluate(config, workdir)` runs (or resumes) a run in `workdir`:
  generator.json, vocabulary.json, config.json   what inference needs to rebuild the generator
  checkpoints/<step>/                            Orbax checkpoints (see checkpointing.py)
  samples/<step>.png                             rows: real | fake | raw mask | adapted mask, boxes on top
  events.out.tfevents.*                          TensorBoard scalars and image grids
"""
import json
import os
import signal
import time
from typing import Any, Iterator

from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
from jax.experimental import multihost_utils
import numpy as np

from lama_jax.training import checkpointing
from lama_jax import models
from lama_jax.training import optimizers
from lama_jax.training import state as train_state_lib
from lama_jax.training import step as train_step_lib
from lama_jax import visualize
from lama_jax.models.mask import masks_to_layout


def create_models(config: ml_collections.ConfigDict
                  ) -> tuple[models.Generator, models.Discriminator]:
  dtype = jnp.dtype(config.dtype)
  g = models.make_generator(config.image_size, config.ch, config.num_classes,
                            mask_hidden=config.mask_hidden, mask_adaption=config.mask_adaption,
                            lama_local_blocks=config.lama_local_blocks, norm=config.norm,
                            noise=config.noise, dtype=dtype)
  d = models.make_discriminator(config.image_size, config.d_ch, config.num_classes, dtype=dtype)
  return g, d


def create_optimizers(config: ml_collections.ConfigDict):
  return optimizers.make_optimizers(config.g_lr, config.d_lr, config.g_slow_mult,
                                    config.d_alpha_mult, config.adam_b1, config.adam_b2,
                                    config.adam_eps)


def create_mesh(devices=None) -> Mesh:
  """A 1-D mesh named 'data' over every device of every process (or the given devices)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ('data',))


def to_host(tree):
  """Replicated (possibly multi-process) arrays to NumPy, from this process's first shard."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array)
                      else np.asarray(x), tree)


# ---------------------------------------------------------------------------------------------- data


def vocabulary_name(config) -> str:
  if config.vocabulary:
    return config.vocabulary
  if config.dataset == 'visual_genome':
    return os.path.join(config.data_dir, 'visual_genome', 'vocab.json')
  return 'shapes' if config.dataset == 'synthetic' else config.dataset


def ensure_shapes_prepared(config) -> None:
  """Generates and prepares the shapes set when it is not in `config.data_dir` yet (first use)."""
  from lama_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  try:
    input_pipeline.num_examples(config.data_dir, 'shapes', 'train')
    return
  except FileNotFoundError:
    pass
  from lama_jax import prepare  # pylint: disable=g-import-not-at-top
  from lama_jax.datasets import shapes  # pylint: disable=g-import-not-at-top
  start = time.time()
  if jax.process_index() == 0:
    if not (os.path.isdir(config.shapes_manual_dir) and os.listdir(config.shapes_manual_dir)):
      logging.info('Generating the shapes set in %s.', config.shapes_manual_dir)
      shapes.generate(config.shapes_manual_dir, config.shapes_num_train, config.shapes_num_val,
                      seed=0)
    prepare.prepare('shapes', config.shapes_manual_dir, config.data_dir)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('shapes_prepared')
  logging.info('Shapes set ready in %.1f s.', time.time() - start)


def synthetic_batches(config, batch_size: int, seed: int) -> Iterator[dict[str, np.ndarray]]:
  """Random layouts and images (benchmarks and tests): boxes inside the image, labels > 0."""
  rng = np.random.default_rng(seed)
  s, o = config.image_size, config.max_objects
  while True:
    xy = rng.uniform(0.0, 0.6, (batch_size, o, 2))
    wh = rng.uniform(0.1, 0.4, (batch_size, o, 2))
    yield {'image': rng.uniform(-1, 1, (batch_size, s, s, 3)).astype(np.float32),
           'boxes': np.concatenate([xy, wh], -1).astype(np.float32),
           'labels': rng.integers(1, config.num_classes, (batch_size, o)).astype(np.int32),
           **({'masks': (rng.uniform(size=(batch_size, o, 32, 32)) > 0.5).astype(np.float32)}
              if config.gt_masks else {})}


def train_batches(config, start_step: int) -> Iterator[dict[str, np.ndarray]]:
  """This process's batches; the shuffle seed depends on the start step, so a resumed run draws a
  fresh (deterministic) order instead of replaying the first batches."""
  local = config.batch_size // jax.process_count()
  seed = config.seed + 1000003 * start_step + 7919 * jax.process_index()
  if config.dataset == 'synthetic':
    return synthetic_batches(config, local, seed)
  from lama_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  ds = input_pipeline.create_train_dataset(
      config.data_dir, config.dataset, config.image_size, config.batch_size, config.max_objects,
      flip=config.flip, seed=seed % (2**31), shuffle_buffer=config.shuffle_buffer,
      with_masks=config.gt_masks)
  return map(input_pipeline.as_numpy, ds.as_numpy_iterator())


def val_layouts(config, count: int) -> dict[str, np.ndarray]:
  """The first `count` val examples (fixed order), for sample grids and the alignment score."""
  if config.dataset == 'synthetic':
    return next(synthetic_batches(config, count, seed=12345))
  from lama_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  ds = input_pipeline.create_eval_dataset(config.data_dir, config.dataset, config.image_size,
                                          min(count, 64), config.max_objects,
                                          with_masks=config.gt_masks)
  parts = []
  for batch in ds.as_numpy_iterator():
    parts.append(batch)
    if sum(len(p['labels']) for p in parts) >= count:
      break
  return {k: np.concatenate([p[k] for p in parts])[:count] for k in batch_keys(config)}


def batch_keys(config) -> tuple[str, ...]:
  """The batch entries the step takes: ground-truth masks too for the Sec. 3 experiment."""
  return ('image', 'boxes', 'labels') + (('masks',) if config.gt_masks else ())


def steps_per_epoch(config) -> int:
  if config.dataset == 'synthetic':
    return 1000
  from lama_jax.datasets import input_pipeline  # pylint: disable=g-import-not-at-top
  return input_pipeline.steps_per_epoch(config.data_dir, config.dataset, config.batch_size,
                                        config.flip)


# ------------------------------------------------------------------------------------- the trainer


class Trainer:
  """Builds the models, the mesh-sharded state and the jitted functions of one config."""

  def __init__(self, config: ml_collections.ConfigDict, steps_per_epoch: int, devices=None):
    self.config = config
    self.generator, self.discriminator = create_models(config)
    self.g_tx, self.d_tx = create_optimizers(config)
    self.mesh = create_mesh(devices)
    if config.batch_size % self.mesh.size:
      raise ValueError(f'batch_size {config.batch_size} is not divisible by the '
                       f'{self.mesh.size} devices.')
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P('data'))
    self.key = jax.random.key(config.seed)

    def init_fn(rng):
      return train_state_lib.init_state(self.generator, self.discriminator, self.g_tx, self.d_tx,
                                        rng, config.image_size, config.max_objects)

    self.abstract_state = jax.eval_shape(init_fn, self.key)
    self.abstract_state = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated),
        self.abstract_state)
    self._init = jax.jit(init_fn, out_shardings=self.replicated)
    step_fn = train_step_lib.make_train_step(config, self.generator, self.discriminator,
                                             self.g_tx, self.d_tx, steps_per_epoch,
                                             self.batch_sharding)
    self.step_fn = jax.jit(
        step_fn, in_shardings=(self.replicated, self.batch_sharding, self.replicated),
        out_shardings=(self.replicated, self.replicated), donate_argnums=0)
    self._sample = jax.jit(self._sample_impl, out_shardings=self.replicated)

  def init_state(self) -> train_state_lib.TrainState:
    return self._init(jax.random.fold_in(self.key, 1))

  def global_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Assembles the processes' local batches into one global array sharded over 'data'."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, local_batch[k])
            for k in batch_keys(self.config)}

  def _sample_impl(self, g_vars, boxes, labels, key, masks=None):
    b, o = labels.shape
    k1, k2, k3 = jax.random.split(key, 3)
    z_obj = jax.random.normal(k1, (b, o, self.generator.z_dim))
    z_im = jax.random.normal(k2, (b, self.generator.z_dim))
    if masks is not None:  # a ground-truth-mask model (Sec. 3) draws from the given masks
      masks = masks_to_layout(boxes, masks, self.generator.image_size)
    return self.generator.apply(g_vars, z_obj, boxes, labels, z_im, train=False,
                                rngs={'noise': k3}, masks=masks)

  def sample(self, state, boxes, labels, seed: int = 0, masks=None):
    """Eval-mode samples (running BN statistics) of the given layouts: image, mask, raw mask."""
    return to_host(self._sample(state.generator_variables(), jnp.asarray(boxes),
                                jnp.asarray(labels), jax.random.key(seed),
                                None if masks is None else jnp.asarray(masks)))


# ---------------------------------------------------------------------------------------- outputs


def write_run_files(config, workdir: str, generator: models.Generator) -> None:
  """generator.json, vocabulary.json and config.json: what inference needs (process 0 only)."""
  from lama_jax.datasets import vocabulary as vocabulary_lib  # pylint: disable=g-import-not-at-top
  spec = models.generator_spec(generator)
  spec.update(max_objects=config.max_objects, image_size=config.image_size,
              dataset=config.dataset)
  files = {'generator.json': spec, 'config.json': json.loads(config.to_json_best_effort())}
  try:
    files['vocabulary.json'] = vocabulary_lib.load_vocabulary(vocabulary_name(config)).to_json()
  except FileNotFoundError as e:
    logging.warning('No vocabulary written: %s', e)
  for name, content in files.items():
    tmp = os.path.join(workdir, name + '.tmp')
    with open(tmp, 'w') as f:
      json.dump(content, f, indent=1)
    os.replace(tmp, os.path.join(workdir, name))


def sample_grids(layouts: dict[str, np.ndarray], image, mask, raw_mask, num_classes: int,
                 names=None) -> dict[str, np.ndarray]:
  """uint8 grids of real images, fakes, raw and adapted masks, each with the layout's boxes."""
  boxes, labels = layouts['boxes'], layouts['labels']
  ncol = min(8, len(labels))
  pictures = {
      'real': visualize.to_uint8(layouts['image']),
      'fake': visualize.to_uint8(image),
      'raw_mask': visualize.colorize_masks(raw_mask, labels, num_classes),
      'mask': visualize.colorize_masks(mask, labels, num_classes),
  }
  grids = {'fake_plain': visualize.make_grid(pictures['fake'], ncol)}
  for k, v in pictures.items():
    grids[k] = visualize.make_grid(visualize.draw_layout(v, boxes, labels, names, num_classes), ncol)
  return grids


def alignment_score(trainer: Trainer, state, layouts: dict[str, np.ndarray]) -> dict[str, Any]:
  """shapes_alignment of eval-mode samples on val layouts (shapes set only)."""
  from lama_jax.metrics import shapes_alignment  # pylint: disable=g-import-not-at-top
  images = []
  for i in range(0, len(layouts['labels']), 64):
    masks = layouts['masks'][i:i + 64] if 'masks' in layouts else None
    image, _, _ = trainer.sample(state, layouts['boxes'][i:i + 64], layouts['labels'][i:i + 64],
                                 seed=1, masks=masks)
    images.append(visualize.to_uint8(image))
  return shapes_alignment(np.concatenate(images), layouts['boxes'], layouts['labels'])


class _Preempted:
  """Remembers a SIGTERM so the loop can save and stop cleanly."""

  def __init__(self):
    self.flag = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM: saving a checkpoint and stopping.')
    self.flag = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _check_finite(pending: list[tuple[int, dict]]) -> dict[int, dict]:
  """Fetches queued step metrics; raises naming the first step whose loss is not finite."""
  fetched = {}
  for step, metrics in pending:
    values = to_host(metrics)
    for k in ('D/d_loss', 'G/g_loss'):
      if not np.isfinite(values[k]):
        raise FloatingPointError(
            f'{k} is {values[k]} at step {step}; stopping. The last good checkpoint is kept.')
    fetched[step] = values
  return fetched


def _out_of_time(config, started: float) -> bool:
  """The run's wall-clock budget (config.time_budget_minutes, from process start; 0 = none)."""
  budget = config.get('time_budget_minutes', 0)
  return bool(budget) and time.monotonic() - started > 60 * budget


def _any_process(local: bool) -> bool:
  """True on every process if it is True on any: a stop must be decided together, or one process
  would wait forever in the next step's collectives (or in the checkpoint save) for the others."""
  if jax.process_count() == 1:
    return local
  return bool(np.any(multihost_utils.process_allgather(np.array([local]))))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_state_lib.TrainState:
  """Trains (or resumes) in `workdir` until `config.num_train_steps`; returns the final state."""
  started = time.monotonic()
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  if config.dataset == 'shapes':
    ensure_shapes_prepared(config)
  spe = steps_per_epoch(config)
  num_steps = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * spe
  trainer = Trainer(config, spe)
  if is_main:
    write_run_files(config, workdir, trainer.generator)
  writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
  manager = checkpointing.make_manager(workdir, config.keep_checkpoints, owner=True)

  state = checkpointing.restore_latest(manager, trainer.abstract_state)
  if state is None:
    state = trainer.init_state()
    logging.info('Initialised a new run in %s.', workdir)
  else:
    logging.info('Resumed from step %d.', int(to_host(state.step)))
  start_step = int(to_host(state.step))
  if start_step == 0:
    parameter_overview.log_parameter_overview(to_host(state.g_params), msg='Generator')
    parameter_overview.log_parameter_overview(to_host(state.d_params), msg='Discriminator')
    writer.write_hparams({k: v for k, v in config.items() if isinstance(v, (int, float, str, bool))})
  logging.info('%d steps per epoch; training to step %d.', spe, num_steps)

  layouts = val_layouts(config, max(config.num_sample_images, config.alignment_layouts))
  grid_layouts = {k: v[:config.num_sample_images] for k, v in layouts.items()}
  names = None
  try:
    from lama_jax.datasets import vocabulary as vocabulary_lib  # pylint: disable=g-import-not-at-top
    names = vocabulary_lib.load_vocabulary(vocabulary_name(config)).id_to_name
  except (FileNotFoundError, ValueError):
    pass

  def write_samples(state, step):
    image, mask, raw = trainer.sample(state, grid_layouts['boxes'], grid_layouts['labels'],
                                      masks=grid_layouts.get('masks'))
    grids = sample_grids(grid_layouts, image, mask, raw, config.num_classes, names)
    scalars = {}
    if config.alignment_layouts:
      score = alignment_score(trainer, state, {k: v[:config.alignment_layouts]
                                               for k, v in layouts.items()})
      scalars['eval/shapes_alignment'] = score['overall']
      scalars.update({f'eval/alignment_{k}': v for k, v in score['per_category'].items()
                      if np.isfinite(v)})
      logging.info('step %d: shapes alignment %.3f on %d boxes %s', step, score['overall'],
                   score['num_boxes'], {k: round(v, 2) for k, v in score['per_category'].items()})
    if is_main:
      writer.write_images(step, {f'samples/{k}': v[None] for k, v in grids.items()})
      if scalars:
        writer.write_scalars(step, scalars)
      os.makedirs(os.path.join(workdir, 'samples'), exist_ok=True)
      rows = [grids[k] for k in ('real', 'fake', 'raw_mask', 'mask')]
      visualize.save_png(os.path.join(workdir, 'samples', f'{step:06d}.png'),
                         np.concatenate(rows, axis=0))
    return scalars

  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  batches = train_batches(config, start_step)
  pending: list[tuple[int, dict]] = []
  fetched: dict[int, dict] = {}
  step = start_step
  with _Preempted() as preempted, trainer.mesh:
    while step < num_steps:
      batch = trainer.global_batch(next(batches))
      state, metrics = trainer.step_fn(state, batch, trainer.key)
      step += 1
      pending.append((step, metrics))
      report(step)
      # One process checks every step; several agree at the logging steps, which all reach together.
      stop = False
      if jax.process_count() == 1 or step % config.log_every_steps == 0:
        stop = _any_process(preempted.flag or _out_of_time(config, started))
      is_last = step == num_steps or stop
      if step % config.log_every_steps == 0 or is_last:
        fetched.update(_check_finite(pending))
        pending = []
        summary = {k: float(np.mean([m[k] for m in fetched.values()]))
                   for k in next(iter(fetched.values()))}
        fetched = {}
        if is_main:
          writer.write_scalars(step, summary)
      if step % config.sample_every_steps == 0 or is_last:
        scalars = write_samples(state, step)
        if is_last and scalars and is_main:
          print(json.dumps({'step': step, **scalars}), flush=True)
      if step % config.checkpoint_every_steps == 0 or is_last:
        fetched.update(_check_finite(pending))
        pending = []
        checkpointing.save(manager, state)
      if is_last:
        if step < num_steps:
          reason = ('SIGTERM' if preempted.flag else
                    f'time budget of {config.time_budget_minutes} min' if _out_of_time(config, started)
                    else 'another process stopping')
          logging.warning('Stopped at step %d (%s); saved a checkpoint.', step, reason)
        break
  manager.wait_until_finished()
  manager.close()
  writer.flush()
  return state
