"""The official LAMA recipe (COCO-Stuff 128×128); the other configs override what differs.

Nested by role: `data` (what the input pipeline reads), `model` (G and D, built by
`lama_jax.models.make_models(**config.model)`), `optim` (Adam and its parameter groups), `schedule`
(learning-rate steps and D-only iterations), `loss`, `log` (logging, checkpoints, sample grids) and
`evals` (evaluators run at every sample step). Override any field on the command line:
`--config.model.dtype=bfloat16`, `--config.optim.g_lr=2e-4`, `--config.batch_size=8`.
"""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.batch_size = 20  # global; the paper's 128×128 batch (one GPU)
  config.num_epochs = 200
  config.num_train_steps = -1  # -1: num_epochs × steps_per_epoch
  config.time_budget_minutes = 0.0  # stop (saving) after this wall time from start; 0 = none
  config.gt_masks = False  # train mask-to-image on ground-truth masks (Sec. 3; mask_clarity)
  # Compiled programs kept on disk, so a restart skips compiling: 'auto' = the folder in
  # $JAX_COMPILATION_CACHE_DIR, else ~/.cache/lama_jax/xla; a folder; '' = off
  # (lama_jax/training/compilation_cache.py).
  config.compilation_cache_dir = 'auto'

  config.data = ml_collections.ConfigDict()
  config.data.dataset = 'coco_stuff'  # 'coco_stuff' | 'visual_genome' | 'shapes' | 'synthetic'
  config.data.data_dir = 'data/tfds'  # TFDS data dir written by `python -m lama_jax.prepare`
  # Vocabulary name or file; '' = the dataset's (VG: DATA_DIR/visual_genome/vocab.json).
  config.data.vocabulary = ''
  config.data.max_objects = 8  # COCO 8, VG 10
  config.data.flip = 'official'  # every image also mirrored, doubling the epoch
  config.data.shuffle_buffer = 2048
  # The shapes set only: generated and prepared on first use.
  config.data.shapes = ml_collections.ConfigDict()
  config.data.shapes.manual_dir = 'data/shapes'
  config.data.shapes.num_train = 10000
  config.data.shapes.num_val = 500

  # Models (Table 5's ablations are fields here).
  config.model = ml_collections.ConfigDict()
  config.model.image_size = 128
  config.model.num_classes = 184  # including 0 = __image__ (VG 179)
  config.model.ch = 64  # generator base width
  config.model.d_ch = 64  # discriminator base width
  config.model.mask_hidden = 128  # MaskRegressNet width
  config.model.mask_adaption = True  # LAMA
  config.model.lama_local_blocks = 2
  config.model.norm = 'bgn'  # 'bgn' | 'bn' | 'gn'
  config.model.noise = True
  config.model.dtype = 'float32'  # computation: 'bfloat16' on accelerators; parameters stay float32

  # Adam (official train.py).
  config.optim = ml_collections.ConfigDict()
  config.optim.g_lr = 1e-4
  config.optim.d_lr = 3e-4
  config.optim.g_slow_mult = 0.1  # generator parameters named *mapping* or *rho*
  config.optim.d_alpha_mult = 0.2  # discriminator parameters named *alpha*
  config.optim.b1 = 0.0
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8

  config.schedule = ml_collections.ConfigDict()
  config.schedule.milestone_epochs = (120, 160)  # learning rates ×gamma at these epochs
  config.schedule.gamma = 0.1
  config.schedule.d_only_iters = 31  # the first 31 iterations of every epoch update D only

  config.loss = ml_collections.ConfigDict()
  config.loss.lambda_obj = 1.0
  config.loss.lambda_img = 0.1

  config.log = ml_collections.ConfigDict()
  config.log.every_steps = 100  # one progress line and the TensorBoard scalars
  config.log.checkpoint_every_steps = 5000
  config.log.keep_checkpoints = 3
  config.log.sample_every_steps = 2000  # sample grids and the evaluators below
  config.log.num_sample_images = 16  # val layouts shown in the sample grids

  # Evaluators run on val layouts at every sample step (names from lama_jax.evaluation).
  config.evals = ml_collections.ConfigDict()
  config.evals.metrics = ()  # e.g. ('alignment',) for the shapes set
  config.evals.num_layouts = 0  # val layouts scored (0 = off)
  return config
