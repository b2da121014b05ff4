"""The models, the device mesh, the replicated train state and the jitted step of one config."""
import functools
from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np

from lama_jax import models
from lama_jax.datasets.vocabulary import Vocabulary
from lama_jax.errors import LamaError
from lama_jax.inference.generator import LayoutGenerator
from lama_jax.training import optimizers
from lama_jax.training import state as state_lib
from lama_jax.training import step as step_lib
from lama_jax.training import step_cache

GT_MASK_SIZE = 32  # side of the ground-truth object masks in `gt_masks` batches


def create_mesh(devices=None) -> Mesh:
  """A 1-D mesh named 'data' over every device of every process (or the given devices)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ('data',))


def to_host(tree):
  """Replicated (possibly multi-process) arrays to NumPy, from this process's first shard."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array)
                      else np.asarray(x), tree)


class Trainer:
  """Builds the models, the mesh-sharded state and the jitted step of one config.

  With `step_cache_dir` (the compilation cache folder), the step comes from `step_cache`: traced and
  lowered once, then loaded at every later start together with the abstract state.
  """

  def __init__(self, config: ml_collections.ConfigDict, steps_per_epoch: int, devices=None,
               step_cache_dir: str = ''):
    self.config = config
    self.generator, self.discriminator = models.make_models(**config.model)
    self.g_tx, self.d_tx = optimizers.make_optimizers(**config.optim)
    self.mesh = create_mesh(devices)
    if config.batch_size % self.mesh.size:
      raise LamaError(f'batch_size {config.batch_size} is not divisible by the '
                      f'{self.mesh.size} devices.')
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P('data'))
    self.batch_keys = ('image', 'boxes', 'labels') + (('masks',) if config.gt_masks else ())
    self.key = jax.random.key(config.seed)
    self._init = jax.jit(self._init_fn, out_shardings=self.replicated)
    step_fn = step_lib.make_train_step(
        self.generator, self.discriminator, self.g_tx, self.d_tx, steps_per_epoch,
        config.schedule, config.loss, optimizers.group_learning_rates(**config.optim),
        self.batch_sharding)
    shardings = dict(in_shardings=(self.replicated, self.batch_sharding, self.replicated),
                     out_shardings=(self.replicated, self.replicated))
    self.step_fn = jax.jit(step_fn, donate_argnums=0, **shardings)
    if step_cache_dir:
      self.step_fn, abstract = step_cache.load_or_export(
          step_cache_dir, step_cache.fingerprint(config, steps_per_epoch, self.mesh),
          self.step_fn, self._abstract_args, **shardings)
      if abstract is not None and 'abstract_state' not in self.__dict__:
        self.abstract_state = self._replicated_spec(abstract)

  def _init_fn(self, rng: jax.Array) -> state_lib.TrainState:
    return state_lib.init_state(self.generator, self.discriminator, self.g_tx, self.d_tx, rng,
                                self.config.model.image_size, self.config.data.max_objects)

  def _replicated_spec(self, tree):
    """`tree`'s shapes and dtypes as ShapeDtypeStructs replicated over the mesh."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.replicated), tree)

  @functools.cached_property
  def abstract_state(self) -> state_lib.TrainState:
    """The train state's shapes, dtypes and shardings (traced from `init`, nothing computed)."""
    return self._replicated_spec(jax.eval_shape(self._init_fn, self.key))

  def abstract_batch(self) -> dict[str, jax.ShapeDtypeStruct]:
    """The global batch's shapes, dtypes and sharding (the contract of DESIGN.md)."""
    b, s, o = self.config.batch_size, self.config.model.image_size, self.config.data.max_objects
    spec = {'image': ((b, s, s, 3), np.float32), 'boxes': ((b, o, 4), np.float32),
            'labels': ((b, o), np.int32),
            'masks': ((b, o, GT_MASK_SIZE, GT_MASK_SIZE), np.float32)}
    return {k: jax.ShapeDtypeStruct(*spec[k], sharding=self.batch_sharding)
            for k in self.batch_keys}

  def _abstract_args(self) -> tuple:
    """(abstract state, abstract batch, abstract key): the step's arguments, nothing computed."""
    key = jax.ShapeDtypeStruct(self.key.shape, self.key.dtype, sharding=self.replicated)
    return self.abstract_state, self.abstract_batch(), key

  def compile_step(self) -> jax.stages.Compiled:
    """The step compiled for the abstract arguments (from JAX's persistent cache when it is there).

    The loop calls it in a background thread, so that loading the compiled program overlaps the
    restore and the input pipeline's start.
    """
    return self.step_fn.lower(*self._abstract_args()).compile()

  def init_state(self) -> state_lib.TrainState:
    return self._init(jax.random.fold_in(self.key, 1))

  def global_batch(self, local_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
    """Assembles the processes' local batches into one global array sharded over 'data'."""
    return {k: jax.make_array_from_process_local_data(self.batch_sharding, local_batch[k])
            for k in self.batch_keys}

  def layout_generator(self, state: state_lib.TrainState, vocabulary: Vocabulary,
                       **kwargs: Any) -> LayoutGenerator:
    """The state's generator for eval-mode sampling, on this process's first device."""
    return LayoutGenerator(self.generator, to_host(state.generator_variables()), vocabulary,
                           self.config.data.max_objects, dataset=self.config.data.dataset,
                           step=int(to_host(state.step)), **kwargs)
