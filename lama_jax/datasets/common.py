"""What the dataset builders share: the example format, the error type, image checks, object masks.

Each builder has one config per image size S (`SizeConfig`, named '64px', '128px', '256px', or any
other size on request): `DATA_DIR/DATASET/{S}px/VERSION/`. Stored example (builders' VERSION 2.0.0):
  image     uint8 [S, S, 3]: the image already resized the official way (square, aspect ignored;
            bilinear with antialiasing, rounded to 8 bits, as PIL's BILINEAR resize does; see
            `resize_image`), stored raw, so training only scales it to [-1, 1];
  image_id  the dataset's original image id;
  boxes     float32 [N, 4] normalised (x, y, w, h);
  labels    int64 [N] category ids;
  masks     uint8 [N, 32, 32] in {0, 1}: each object's ground-truth segmentation sampled (nearest
            pixel) at the box-local grid that `lama_jax.models.mask.masks_to_layout` uses: cell (r, c)
            sits at normalised (x0 + w·c/31, y0 + h·r/31), i.e. full-resolution pixel
            (x·(W − 1), y·(H − 1)) rounded and clipped. Objects without a segmentation (Visual Genome,
            empty COCO segmentations) get a full box (all ones). Stored zlib-compressed.
"""
import dataclasses
import io
import os

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
import tensorflow as tf
import tensorflow_datasets as tfds

from lama_jax.datasets import vocabulary as vocabulary_lib
from lama_jax.errors import LamaError


MASK_SIZE = 32  # side of the stored box-local object masks (the generator's mask resolution)
STANDARD_SIZES = (64, 128, 256)  # the paper's resolutions: named configs, what `prepare` makes
DEFAULT_SIZE = 128
# Largest stored size: the models draw at most 256x256; a 1024x1024 copy is 3 MB per image (230 GB
# for COCO-Stuff), and far larger sizes exhaust the memory of the resize itself.
MAX_SIZE = 1024
INT64_MIN, INT64_MAX = -2**63, 2**63 - 1  # the range of the stored image ids


@dataclasses.dataclass(eq=False)
class SizeConfig(tfds.core.BuilderConfig):
  """One prepared copy of a dataset, its images stored at `image_size` × `image_size`."""
  image_size: int = DEFAULT_SIZE


RESIZED_NOTE = ('One config per image size (64px, 128px, 256px or any other): images stored '
                'resized (uint8 SxSx3, the official square bilinear resize, antialiased and '
                'rounded), so the pipeline no longer decodes and resizes them at every read.')


def size_config(image_size: int) -> SizeConfig:
  """The builder config of images stored at `image_size` (named '{S}px')."""
  return SizeConfig(name=f'{image_size}px', image_size=image_size,
                    description=f'Images stored resized to {image_size}x{image_size}.')


class DatasetError(LamaError):
  """Bad input files: the message names the file or annotation and the problem."""


class DatasetNotPreparedError(DatasetError, FileNotFoundError):
  """The prepared TFRecords of a dataset are not in the data dir (run `prepare`)."""


@dataclasses.dataclass
class ImageRecord:
  """One image that passed the filters, ready to be written.

  Attributes:
    image_id: the dataset's original image id (COCO / VG id), kept for the YOLO score.
    path: the image file.
    pixel_boxes: float [N, 4], (x, y, w, h) in pixels of the original image, top-left origin.
    labels: int64 [N] category ids.
    width: original width as the annotations state it; None to trust the file (Visual Genome).
    height: original height, likewise.
    segmentations: per object, its COCO segmentation (polygon list or RLE dict) or None; None for
      the whole record (Visual Genome) means no segmentation: full-box masks.
  """
  image_id: int
  path: str
  pixel_boxes: np.ndarray
  labels: np.ndarray
  width: int | None = None
  height: int | None = None
  segmentations: list | None = None


def features(image_size: int) -> tfds.features.FeaturesDict:
  """The stored example: the image resized to `image_size`, its id, its objects."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Tensor(shape=(image_size, image_size, 3), dtype=np.uint8,
                                    encoding=tfds.features.Encoding.BYTES),
      'image_id': tfds.features.Scalar(np.int64),
      'boxes': tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
      'labels': tfds.features.Tensor(shape=(None,), dtype=np.int64),
      'masks': tfds.features.Tensor(shape=(None, MASK_SIZE, MASK_SIZE), dtype=np.uint8,
                                    encoding=tfds.features.Encoding.ZLIB),
  })


def check_files_exist(records: list[ImageRecord], what: str) -> None:
  """Raises DatasetError naming the first missing image files (checked before any writing)."""
  missing = [r for r in records if not os.path.isfile(r.path)]
  if missing:
    names = ', '.join(f'{r.path} (image id {r.image_id})' for r in missing[:5])
    more = f' and {len(missing) - 5} more' if len(missing) > 5 else ''
    raise DatasetError(f'{what}: {len(missing)} annotated image(s) missing: {names}{more}.')


def read_image(record: ImageRecord) -> tuple[bytes, tuple[int, int]]:
  """Reads and fully decodes an image, returning bytes TensorFlow decodes to RGB and (W, H).

  JPEG and PNG files in RGB or grayscale (16-bit PNGs too) are passed through unchanged; other
  modes (CMYK, palette, alpha) are re-encoded as RGB PNG, as the official loader's
  `convert('RGB')` sees them. (PIL's `convert('RGB')` clips 16-bit grayscale to white; TensorFlow
  scales it to 8 bits.)

  Raises:
    DatasetError: unreadable, corrupt or too large file, or a size that differs from the
      annotations'.
  """
  try:
    with open(record.path, 'rb') as f:
      data = f.read()
    with Image.open(io.BytesIO(data)) as image:
      image.load()  # a full decode: truncated files fail here, not during training
      fmt, mode, size = image.format, image.mode, image.size
      if not (fmt == 'JPEG' and mode in ('RGB', 'L')
              or fmt == 'PNG' and mode in ('RGB', 'L', 'I;16')):
        buf = io.BytesIO()
        image.convert('RGB').save(buf, format='PNG')
        data = buf.getvalue()
  except Image.DecompressionBombError as e:  # PIL refuses more than ~179 million pixels
    raise DatasetError(f'Image {record.path} (image id {record.image_id}) is too large: {e}') from e
  except (OSError, SyntaxError, ValueError) as e:
    raise DatasetError(f'Corrupt or unreadable image {record.path} (image id {record.image_id}): '
                       f'{e}') from e
  if record.width is not None and size != (record.width, record.height):
    raise DatasetError(f'Image {record.path} (image id {record.image_id}) is {size[0]}x{size[1]} '
                       f'but its annotations say {record.width}x{record.height}.')
  return data, size


def check_labels(records: list[ImageRecord], vocab: vocabulary_lib.Vocabulary, what: str) -> None:
  """Raises DatasetError when a label lies outside the vocabulary."""
  for r in records:
    bad = [int(l) for l in r.labels if int(l) not in vocab.id_to_name or int(l) == 0]
    if bad:
      raise DatasetError(f'{what}: image id {r.image_id} has category ids {bad} that are not in '
                         f'the {vocab.dataset} vocabulary (1..{vocab.num_classes - 1}).')


def has_segmentation(segmentation) -> bool:
  """Whether a COCO segmentation field holds a usable polygon list or RLE."""
  if isinstance(segmentation, dict):
    return 'counts' in segmentation and 'size' in segmentation
  return isinstance(segmentation, list) and any(len(p) >= 6 for p in segmentation)


def decode_segmentation(segmentation, width: int, height: int) -> np.ndarray:
  """A COCO segmentation (polygons, uncompressed or compressed RLE) as a bool [height, width] mask
  (what pycocotools' `annToMask` returns)."""
  if isinstance(segmentation, list):  # polygons
    polygons = [p for p in segmentation if len(p) >= 6]
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
  elif isinstance(segmentation.get('counts'), list):  # uncompressed RLE
    rle = mask_utils.frPyObjects(segmentation, height, width)
  else:
    rle = segmentation
  return mask_utils.decode(rle).astype(bool)


def box_grid(boxes: np.ndarray, size: int, extent: int, axis: int) -> np.ndarray:
  """Nearest full-resolution pixel index of the box-local grid along one axis.

  boxes [N, 4] normalised; axis 0 = x, 1 = y; extent = W or H. Returns int [N, size]: index
  round((b0 + bw·k/(size − 1))·(extent − 1)), clipped to the image.
  """
  pos = boxes[:, axis, None] + boxes[:, axis + 2, None] * np.linspace(0.0, 1.0, size)[None]
  return np.clip(np.rint(pos * (extent - 1)), 0, extent - 1).astype(np.int64)


def sample_box_masks(full_masks: list[np.ndarray | None], boxes: np.ndarray, width: int,
                     height: int, size: int = MASK_SIZE) -> np.ndarray:
  """uint8 [N, size, size] {0, 1}: each full-resolution mask sampled at its box-local grid.

  A None mask gives a full box (all ones).
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  out = np.ones((len(boxes), size, size), np.uint8)
  if not len(boxes):
    return out
  cols, rows = box_grid(boxes, size, width, 0), box_grid(boxes, size, height, 1)
  for i, full in enumerate(full_masks):
    if full is not None:
      out[i] = full[rows[i][:, None], cols[i][None, :]]
  return out


def object_masks(record: ImageRecord, boxes: np.ndarray, width: int, height: int) -> np.ndarray:
  """The record's stored 'masks' (see the module docstring); boxes normalised [N, 4]."""
  if record.segmentations is None:
    return np.ones((len(boxes), MASK_SIZE, MASK_SIZE), np.uint8)
  full = []
  for j, seg in enumerate(record.segmentations):
    if not has_segmentation(seg):
      full.append(None)
      continue
    try:
      full.append(decode_segmentation(seg, width, height))
    except (TypeError, ValueError, KeyError) as e:
      raise DatasetError(f'Image {record.path} (image id {record.image_id}): object {j} has a '
                         f'malformed segmentation: {e!r}') from e
  return sample_box_masks(full, boxes, width, height)


def resize_image(data: bytes, image_size: int) -> np.ndarray:
  """uint8 [S, S, 3]: an encoded image resized the official way, what training reads.

  Square (aspect ignored) and bilinear like the official loader's PIL resize, with antialiasing and
  rounding to 8 bits as PIL's BILINEAR does; decoded by TensorFlow. Until builders' version 2.0.0
  the pipeline computed exactly this at every read (the same ops), so batches are unchanged.
  """
  image = tf.io.decode_image(data, channels=3, expand_animations=False)
  image = tf.image.resize(tf.cast(image, tf.float32), (image_size, image_size), method='bilinear',
                          antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8).numpy()


def to_example(record: ImageRecord, image_size: int) -> dict:
  """The stored example; boxes are normalised by the image file's size (the official loader's)."""
  data, (width, height) = read_image(record)
  boxes = record.pixel_boxes.astype(np.float64) / np.array([width, height, width, height])
  boxes = boxes.reshape(-1, 4)
  return {'image': resize_image(data, image_size), 'image_id': record.image_id,
          'boxes': boxes.astype(np.float32), 'labels': record.labels.astype(np.int64),
          'masks': object_masks(record, boxes, width, height)}
