"""The training loop: `train_and_evaluate(config, workdir)` runs (or resumes) a run in `workdir`.

  generator.json, vocabulary.json, config.json   what inference needs to rebuild the generator
  checkpoints/<step>/                            Orbax checkpoints (see checkpointing.py)
  samples/<step>.png                             labelled rows: real | generated | raw mask | adapted mask
  events.out.tfevents.*                          TensorBoard: every scalar and the sample grids

The console gets one short line per log step (step, steps/s, ETA, D and G loss, the evaluators'
headline scores when they ran); the full set of scalars goes to TensorBoard only.
"""
import concurrent.futures
import contextlib
import json
import os
import signal
import time
from typing import Any, Iterator

from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions
import flax
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from lama_jax import cli
from lama_jax import evaluation
from lama_jax import files
from lama_jax import startup_interrupts
from lama_jax.datasets import loaders
from lama_jax.datasets.vocabulary import Vocabulary
from lama_jax.inference import generator_dir
from lama_jax.training import checkpointing
from lama_jax.training import compilation_cache
from lama_jax.training import sample_grids
from lama_jax.training.state import TrainState
from lama_jax.training.trainer import Trainer, to_host

EVAL_CHUNK = 64  # val layouts per generator call when scoring


def _say(message: str) -> None:
  """A console line from process 0 (the progress of the run, not a debug log)."""
  if jax.process_index() == 0:
    print(message, flush=True)


class StopRequests:
  """SIGTERM and the first Ctrl-C (SIGINT) ask the loop to save and stop; a second Ctrl-C aborts.

  Until `arm()` is called (while the run is set up: nothing to save yet) both abort at once, so
  that a Ctrl-C during dataset preparation or restoring does not wait for a whole first step.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.reason = ''
    self.armed = False
    self._aborted: KeyboardInterrupt | None = None
    self._previous = {}

  def arm(self) -> None:
    """From now on a signal asks for a checkpoint and a stop at the end of the step.

    Raises:
      KeyboardInterrupt (or cli.Terminated): a signal came during the set-up and its exception was
        swallowed (a handler that runs inside a garbage-collector callback cannot raise).
    """
    if self._aborted is not None:
      raise self._aborted
    self.armed = True

  def __enter__(self):
    for sig in self.SIGNALS:
      if sig == signal.SIGINT and startup_interrupts.ignored():
        continue  # a background job of a script: the script's Ctrl-C is not for it
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: no signal handling
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if not self.armed:
      self._aborted = cli.Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
      raise self._aborted
    if signum == signal.SIGINT and self.reason:
      raise KeyboardInterrupt  # the second Ctrl-C: stop at once
    self.reason = signal.Signals(signum).name
    _say(f'{self.reason}: saving a checkpoint at the end of this step and stopping '
         '(Ctrl-C again to abort without saving).')

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)


def _agreed(local: bool) -> bool:
  """True on every process if it is True on any: a stop must be decided together, or one process
  would wait forever in the next step's collectives (or in the checkpoint save) for the others."""
  if jax.process_count() == 1:
    return local
  return bool(np.any(multihost_utils.process_allgather(np.array([local]))))


def _check_finite(pending: list[tuple[int, dict]]) -> list[dict]:
  """Fetches queued step metrics; raises naming the first step whose loss is not finite."""
  fetched = []
  for step, metrics in pending:
    values = to_host(metrics)
    for k in ('D/d_loss', 'G/g_loss'):
      if not np.isfinite(values[k]):
        raise FloatingPointError(
            f'{k} is {values[k]} at step {step}; stopping. The last good checkpoint is kept.')
    fetched.append(values)
  return fetched


def write_run_files(workdir: str, config: ml_collections.ConfigDict, trainer: Trainer,
                    vocab: Vocabulary) -> None:
  """generator.json, vocabulary.json and config.json: what inference needs (process 0 only)."""
  generator_dir.write_metadata(workdir, trainer.generator, config.data.max_objects,
                               config.data.dataset, vocab)
  files.write_json(os.path.join(workdir, 'config.json'), json.loads(config.to_json_best_effort()))


class Evaluation:
  """Sample grids and the configured evaluators, on fixed validation layouts, at sample steps."""

  def __init__(self, config: ml_collections.ConfigDict, trainer: Trainer, vocab: Vocabulary,
               workdir: str, writer: metric_writers.MetricWriter):
    self.config, self.trainer, self.vocab, self.writer = config, trainer, vocab, writer
    self.folder = os.path.join(workdir, 'samples')
    self.grid_layouts = self.eval_layouts = None  # read at the first call, not before the 1st step

  def _read_layouts(self) -> None:
    """Reads the validation layouts of the grids and the evaluators (once, at the first call)."""
    config = self.config
    count = max(config.log.num_sample_images, config.evals.num_layouts)
    layouts = loaders.val_layouts(config.data, config.model.image_size, config.model.num_classes,
                                  count, with_masks=config.gt_masks)
    _warn_few_layouts(len(layouts['labels']), config.log.num_sample_images,
                      config.evals.num_layouts)
    self.grid_layouts = {k: v[:config.log.num_sample_images] for k, v in layouts.items()}
    self.eval_layouts = {k: v[:config.evals.num_layouts] for k, v in layouts.items()}

  def __call__(self, state: TrainState, step: int) -> dict[str, float]:
    """Writes the grids (TensorBoard and samples/STEP.png) and returns the evaluators' scalars."""
    if self.grid_layouts is None:
      self._read_layouts()
    gen = self.trainer.layout_generator(state, self.vocab)
    pictures = sample_grids.grids(gen, self.grid_layouts, self.vocab.id_to_name)
    scalars = self._scores(gen) if self.config.evals.num_layouts else {}
    if jax.process_index() == 0:
      self.writer.write_images(step, {f'samples/{k}': v[None] for k, v in pictures.items()})
      if scalars:
        self.writer.write_scalars(step, scalars)
      os.makedirs(self.folder, exist_ok=True)
      files.write_png(os.path.join(self.folder, f'{step:06d}.png'), pictures['samples'])
    return scalars

  def _scores(self, gen) -> dict[str, float]:
    """The evaluators' results as TensorBoard scalars, e.g. 'eval/alignment', 'eval/alignment_disk'."""
    results = evaluation.evaluate_layouts(gen, self.eval_layouts, self.config.evals.metrics,
                                          seed=sample_grids.GRID_SEED, batch_size=EVAL_CHUNK)
    scalars: dict[str, float] = {}
    for name, result in results.items():
      _flatten(f'eval/{name}', result, scalars)
    return scalars


def _warn_few_layouts(available: int, num_sample_images: int, num_layouts: int) -> None:
  """Says when the val split is smaller than the grids or the evaluators ask: their scores would
  otherwise be reported as if on `num_layouts` layouts."""
  if available >= max(num_sample_images, num_layouts):
    return
  asked = {'log.num_sample_images': num_sample_images, 'evals.num_layouts': num_layouts}
  short = ' and '.join(f'config.{field}={n}' for field, n in asked.items() if n > available)
  logging.warning('The val split holds only %d layouts, fewer than %s asks: all %d are used.',
                  available, short, available)


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
  """Finite numbers of a nested result; 'overall' is the metric itself, 'per_category' a level
  that adds nothing to the names."""
  if isinstance(value, dict):
    for k, v in value.items():
      _flatten(prefix if k in ('overall', 'per_category') else f'{prefix}_{k}', v, out)
  elif isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
    out[prefix] = float(value)


class Progress:
  """One short console line per log step: step, steps/s, ETA, the losses, the latest scores.

  Steps/s and the ETA leave out the time spent scoring (`scoring`): the final scores, counted in,
  made the last line say e.g. 0.08 steps/s and ETA 9h01m for a run going at 1 step/s. An interval
  shorter than the one before (a stop between two log steps) is measured together with that one:
  alone, one step and its checkpoint save said 0.81 steps/s for a run going at 2.1.
  """

  def __init__(self, num_steps: int, start_step: int, headlines: tuple[str, ...] = ()):
    self.num_steps = num_steps
    self.headlines = headlines  # the evaluators whose score the line shows
    self.last = (start_step, time.monotonic())
    self.first = True  # the first interval includes compiling the step
    self.scores: dict[str, float] = {}
    self.scoring_s = 0.0  # time spent scoring since the last line
    self.previous = (0, 0.0)  # the last interval measured: steps, seconds (none after compiling)

  @contextlib.contextmanager
  def scoring(self) -> Iterator[None]:
    started = time.monotonic()
    try:
      yield
    finally:
      self.scoring_s += time.monotonic() - started

  def __call__(self, step: int, summary: dict[str, float]) -> None:
    (step0, t0), now = self.last, time.monotonic()
    steps, seconds = step - step0, now - t0 - self.scoring_s
    self.last, self.scoring_s = (step, now), 0.0
    if not self.first:
      self.previous, (steps, seconds) = (steps, seconds), (
          (steps + self.previous[0], seconds + self.previous[1]) if steps < self.previous[0]
          else (steps, seconds))
    rate = steps / max(seconds, 1e-9)
    eta = (self.num_steps - step) / max(rate, 1e-9)
    scores = ''.join(f'  {name} {self.scores[f"eval/{name}"]:.3f}' for name in self.headlines
                     if f'eval/{name}' in self.scores)
    note = ' (incl. compiling)' if self.first else ''
    self.first = False
    _say(f'step {step}/{self.num_steps}  {rate:.2f} steps/s{note}  ETA {_duration(eta)}  '
         f'D {summary["D/d_loss"]:.3f}  G {summary["G/g_loss"]:.3f}{scores}')


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


def _scalar_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The config's scalar fields as {'model.ch': 64, ...}, for TensorBoard's hyperparameters."""
  flat = flax.traverse_util.flatten_dict(config.to_dict(), sep='.')
  return {k: v for k, v in flat.items() if isinstance(v, (int, float, str, bool))}


def _restore_or_init(trainer: Trainer, manager) -> TrainState:
  state = checkpointing.restore_latest(manager, trainer.abstract_state)
  if state is not None:
    _say(f'Resumed from step {int(to_host(state.step))}.')
    return state
  state = trainer.init_state()
  parameter_overview.log_parameter_overview(to_host(state.g_params), msg='Generator')
  parameter_overview.log_parameter_overview(to_host(state.d_params), msg='Discriminator')
  return state


def _batches(config, start_step: int) -> Iterator[dict[str, np.ndarray]]:
  """This process's batches; the seed depends on the start step, so a resumed run draws a fresh
  (deterministic) order instead of replaying the first batches."""
  seed = config.seed + 1000003 * start_step + 7919 * jax.process_index()
  return loaders.train_batches(config.data, config.model.image_size, config.model.num_classes,
                               config.batch_size, seed, with_masks=config.gt_masks)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains (or resumes) in `workdir` until `config.num_train_steps`; returns the final state."""
  started = time.monotonic()
  cache = compilation_cache.configure(config.compilation_cache_dir)
  # A new workdir that a failure or Ctrl-C leaves without a checkpoint is removed again.
  with StopRequests() as stop, files.output_dir(
      workdir, keep=lambda: jax.process_index() != 0 or checkpointing.has_checkpoint(workdir)):
    loaders.ensure_prepared(config.data, config.model.image_size)
    spe = loaders.steps_per_epoch(config.data, config.batch_size, config.model.image_size)
    num_steps = config.num_train_steps if config.num_train_steps > 0 else config.num_epochs * spe
    # A local cache folder also keeps the exported step: restarts neither trace nor lower it.
    trainer = Trainer(config, spe, step_cache_dir=cache if '://' not in cache else '')
    vocab = loaders.load_vocabulary(config.data, config.model.num_classes)
    is_main = jax.process_index() == 0
    manager = checkpointing.make_manager(workdir, config.log.keep_checkpoints, owner=True)
    state = _restore_or_init(trainer, manager)
    start_step = int(to_host(state.step))
    # The step loads (or compiles) while the run files, the evaluation and tf.data start. Not
    # before the restore: an error there exits at once, not after a compile it cannot stop. Not
    # when there is no step to take: the process would wait for the compile to exit.
    pool = concurrent.futures.ThreadPoolExecutor(1, cli.UNWAITED_THREAD_PREFIX + 'compile_step')
    compiling = pool.submit(trainer.compile_step) if start_step < num_steps else None
    pool.shutdown(wait=False)
    # After the restore: a config that does not fit the checkpoints leaves the run as it was.
    if is_main:
      write_run_files(workdir, config, trainer, vocab)
    writer = (metric_writers.AsyncWriter(metric_writers.SummaryWriter(workdir)) if is_main
              else metric_writers.MultiWriter([]))
    if start_step == 0 and is_main:
      writer.write_hparams(_scalar_fields(config))
    _say(f'{spe} steps per epoch; training to step {num_steps} on {jax.device_count()} '
         f'device(s); logs and checkpoints in {workdir}; compilation cache '
         f"{'in ' + cache if cache else 'off'}.")
    evaluation = Evaluation(config, trainer, vocab, workdir, writer)
    if start_step >= num_steps:
      _say(f'The run is already at step {start_step}: nothing to train (raise '
           '--config.num_train_steps, or num_epochs, to train further).')

    def should_stop() -> str:
      budget = config.time_budget_minutes
      over = bool(budget) and time.monotonic() - started > 60 * budget
      local = stop.reason or (f'time budget of {budget:g} min' if over else '')
      return local or ('another process stopping' if _agreed(bool(local)) else '')

    stop.arm()
    try:
      state = _loop(config, trainer, compiling, state, num_steps, manager, writer, evaluation,
                    should_stop, signalled=lambda: _agreed(bool(stop.reason)))
    finally:
      manager.wait_until_finished()  # a save in flight completes: never a half-written step
      checkpointing.remove_partial_saves(manager)
  manager.wait_until_finished()
  manager.close()
  writer.flush()
  return state


def _loop(config, trainer: Trainer, compiling: concurrent.futures.Future | None, state: TrainState,
          num_steps: int, manager, writer, evaluation: Evaluation, should_stop,
          signalled=lambda: False) -> TrainState:
  """Steps until `num_steps` or a stop; logs, samples and checkpoints on the way and at the end.

  `compiling` yields the compiled step (started in the background after the restore). A stop saves
  before anything else; one asked for by a signal (Ctrl-C, SIGTERM: perhaps a preemption with a
  short grace period) skips the final sample grid and scores.
  """
  step = start_step = int(to_host(state.step))
  log = config.log
  report = periodic_actions.ReportProgress(num_train_steps=num_steps, writer=writer)
  progress = Progress(num_steps, start_step, tuple(config.evals.metrics))
  batches = _batches(config, start_step)
  pending: list[tuple[int, dict]] = []
  step_fn = None
  with jax.set_mesh(trainer.mesh):
    while step < num_steps:
      batch = trainer.global_batch(next(batches))
      if step_fn is None:
        step_fn = compiling.result()
      state, metrics = step_fn(state, batch, trainer.key)
      step += 1
      pending.append((step, metrics))
      report(step)
      # One process checks every step; several agree at the logging steps, which all reach together.
      reason = should_stop() if jax.process_count() == 1 or step % log.every_steps == 0 else ''
      is_last = step == num_steps or bool(reason)
      logged = step % log.every_steps == 0 or is_last
      if logged:
        fetched = _check_finite(pending)
        pending = []
        summary = {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}
        if jax.process_index() == 0:
          writer.write_scalars(step, summary)
      if step % log.checkpoint_every_steps == 0 or is_last:
        _check_finite(pending)
        pending = []
        checkpointing.save(manager, state)
      # Scored after the save (an evaluation that fails or is cut short loses no training) and
      # before the step's console line, so that the line shows this step's scores.
      scored = step % log.sample_every_steps == 0 or (is_last and not (reason and signalled()))
      if scored:
        with progress.scoring():
          progress.scores = evaluation(state, step)
      if logged:
        progress(step, summary)
      if is_last and scored and progress.scores:
        _say(json.dumps({'step': step, **progress.scores}))
      if reason:
        _say(f'Stopped at step {step} ({reason}); saved a checkpoint.')
        break
  return state
