"""The official LAMA recipe (COCO-Stuff 128×128); the other configs override what differs."""
import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  # Data.
  config.dataset = 'coco_stuff'  # 'coco_stuff' | 'visual_genome' | 'shapes' | 'synthetic' (random)
  config.data_dir = 'data/tfds'  # TFDS data dir written by `python -m lama_jax.prepare`
  config.vocabulary = ''  # vocabulary name or file; '' = the dataset's (VG: DATA_DIR/visual_genome/vocab.json)
  config.image_size = 128
  config.max_objects = 8  # COCO 8, VG 10
  config.num_classes = 184  # including 0 = __image__ (VG 179)
  config.flip = 'official'  # every image also mirrored, doubling the epoch
  config.shuffle_buffer = 2048

  # Models (Table 5 ablations are fields here).
  config.ch = 64  # generator base width
  config.d_ch = 64  # discriminator base width
  config.mask_hidden = 128  # MaskRegressNet width
  config.mask_adaption = True  # LAMA
  config.lama_local_blocks = 2
  config.norm = 'bgn'  # 'bgn' | 'bn' | 'gn'
  config.noise = True
  config.gt_masks = False  # train mask-to-image on ground-truth masks (Sec. 3; mask_clarity)
  config.dtype = 'float32'  # computation dtype: 'bfloat16' on accelerators; parameters stay float32

  # Optimisation (official train.py).
  config.batch_size = 20  # global; the paper's 128×128 batch (one GPU)
  config.num_epochs = 200
  config.num_train_steps = -1  # -1: num_epochs × steps_per_epoch
  config.g_lr = 1e-4
  config.d_lr = 3e-4
  config.g_slow_mult = 0.1  # parameters named *mapping* or *rho*
  config.d_alpha_mult = 0.2  # discriminator parameters named *alpha*
  config.adam_b1 = 0.0
  config.adam_b2 = 0.999
  config.adam_eps = 1e-8
  config.lr_milestone_epochs = (120, 160)
  config.lr_gamma = 0.1
  config.d_only_iters = 31  # the first 31 iterations of every epoch update D only (idx > 30)
  config.lambda_obj = 1.0
  config.lambda_img = 0.1
  config.seed = 0

  # Logging and checkpoints.
  config.log_every_steps = 100
  config.checkpoint_every_steps = 5000
  config.sample_every_steps = 2000
  config.keep_checkpoints = 3
  config.time_budget_minutes = 0.0  # stop (saving) after this wall time from start; 0 = none
  config.num_sample_images = 16  # val layouts shown in the sample grids

  # Shapes only: prepared on first use, and the box/colour alignment of samples on val layouts.
  config.shapes_manual_dir = 'data/shapes'
  config.shapes_num_train = 10000
  config.shapes_num_val = 500
  config.alignment_layouts = 0  # val layouts scored at each sample step (0 = off)
  return config
