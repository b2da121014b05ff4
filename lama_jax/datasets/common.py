"""What the dataset builders share: the example format, the error type, image checks."""
import dataclasses
import io
import os

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from lama_jax import vocabulary as vocabulary_lib


class DatasetError(Exception):
  """Bad input files: the message names the file or annotation and the problem."""


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
  """
  image_id: int
  path: str
  pixel_boxes: np.ndarray
  labels: np.ndarray
  width: int | None = None
  height: int | None = None


def features() -> tfds.features.FeaturesDict:
  """The stored example: encoded image at its original size, its id, its objects."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3)),
      'image_id': tfds.features.Scalar(np.int64),
      'boxes': tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
      'labels': tfds.features.Tensor(shape=(None,), dtype=np.int64),
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

  JPEG and PNG files in RGB or grayscale are passed through unchanged; other modes (CMYK, palette,
  alpha) are re-encoded as RGB PNG, as the official loader's `convert('RGB')` sees them.

  Raises:
    DatasetError: unreadable or corrupt file, or a size that differs from the annotations'.
  """
  try:
    with open(record.path, 'rb') as f:
      data = f.read()
    with Image.open(io.BytesIO(data)) as image:
      image.load()  # a full decode: truncated files fail here, not during training
      fmt, mode, size = image.format, image.mode, image.size
      if fmt not in ('JPEG', 'PNG') or mode not in ('RGB', 'L'):
        buf = io.BytesIO()
        image.convert('RGB').save(buf, format='PNG')
        data = buf.getvalue()
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


def to_example(record: ImageRecord) -> dict:
  """The stored example; boxes are normalised by the image file's size (the official loader's)."""
  data, (width, height) = read_image(record)
  boxes = record.pixel_boxes.astype(np.float64) / np.array([width, height, width, height])
  return {'image': data, 'image_id': record.image_id,
          'boxes': boxes.astype(np.float32).reshape(-1, 4), 'labels': record.labels.astype(np.int64)}
