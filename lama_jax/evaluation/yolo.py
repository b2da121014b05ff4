"""The YOLO score, detector-agnostic: the detector is yours (YOLOv4 in the paper).

Two runs (`python -m lama_jax.evaluate --help` has the how-to): with a YOLO folder, sample 0 of each
layout is written there at 512×512 with a manifest of the evaluated ids; with detections (a COCO
results JSON in that 512×512 frame) and the instances file, the boxes are rescaled to each image's
original size and scored with COCO AP, AP50 and AP75 on the evaluated ids only.
"""
import contextlib
import json
import os
from typing import Any, Sequence

import numpy as np
from PIL import Image

from lama_jax import files
from lama_jax.cli import one_line
from lama_jax.evaluation.common import EvalError, Evaluator, SampleBatch, Settings, Target
from lama_jax.metrics import yolo_score
from lama_jax.number_checks import is_number

YOLO_SIZE = 512
MANIFEST = 'manifest.json'


def _read_json(path: str, flag: str) -> Any:
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    raise EvalError(f'{flag} {path}: not valid JSON: {one_line(e)}') from None


def _is_detection(det: Any) -> bool:
  """Whether `det` is a COCO result dict, with the fields scoring reads."""
  return (isinstance(det, dict) and is_number(det.get('score'))
          and 'image_id' in det and 'category_id' in det and isinstance(det.get('bbox'), list)
          and len(det['bbox']) == 4 and all(is_number(v) for v in det['bbox']))


class Yolo(Evaluator):
  """Writes sample 0 of every layout for a detector, or scores the detector's boxes."""
  name = 'yolo'

  def __init__(self, settings: Settings, target: Target):
    super().__init__()
    self.settings, self.target = settings, target
    self.scoring = bool(settings.detections)
    self.repeats = 0 if self.scoring else 1  # scoring needs the evaluated ids only
    self.ids: list[int] = []

  @classmethod
  def missing(cls, settings: Settings) -> str | None:
    if not settings.yolo_dir and not settings.detections:
      return ('needs --yolo_dir DIR (writes images for your detector) or --detections F with '
              '--instances F (scores its boxes)')
    return None

  @classmethod
  def input_files(cls, settings: Settings) -> dict[str, str]:
    if not settings.detections:
      return {}
    given = {'detections': settings.detections, 'instances': settings.instances}
    if settings.yolo_dir:  # its manifest names the ids to score: a wrong folder is no fallback
      given['yolo_dir'] = os.path.join(settings.yolo_dir, MANIFEST)
    return given

  @classmethod
  def create(cls, settings: Settings, target: Target) -> 'Yolo':
    return cls(settings, target)

  def add(self, samples: SampleBatch) -> None:
    if samples.repeat != 0:
      return
    ids = [int(i) for i in samples.image_ids]
    if not self.scoring and not self.ids:  # the images change now: an old manifest would vouch
      with contextlib.suppress(FileNotFoundError):  # for them until the new one is written
        os.remove(os.path.join(self.settings.yolo_dir, MANIFEST))
    self.ids += ids
    if not self.scoring:
      os.makedirs(self.settings.yolo_dir, exist_ok=True)
      for image, image_id in zip(samples.images, ids):
        big = Image.fromarray(image).resize((YOLO_SIZE, YOLO_SIZE), Image.BILINEAR)
        files.write_png(os.path.join(self.settings.yolo_dir, f'{image_id}.png'), np.asarray(big))

  def result(self) -> dict[str, float] | None:
    if self.scoring:
      return self._score(self._manifest_ids() or self.ids)
    s = self.settings
    files.write_json(os.path.join(s.yolo_dir, MANIFEST), {
        'dataset': self.target.dataset, 'step': self.target.step,
        'generated_size': self.target.image_size, 'seed': s.seed, 'image_ids': self.ids,
        'images': [{'id': i, 'file_name': f'{i}.png', 'height': YOLO_SIZE, 'width': YOLO_SIZE}
                   for i in self.ids]})
    self.notes.append(f'yolo: wrote {len(self.ids)} images and {MANIFEST} to {s.yolo_dir}; run '
                      'your detector on them, then score with --detections F --instances F')
    return None

  def _manifest_ids(self) -> list[int] | None:
    """The ids of the images written to the YOLO folder, when it holds a manifest."""
    if not self.settings.yolo_dir:
      return None
    path = os.path.join(self.settings.yolo_dir, MANIFEST)
    if not os.path.isfile(path):
      return None
    manifest = _read_json(path, '--yolo_dir')
    ids = manifest.get('image_ids') if isinstance(manifest, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
      raise EvalError(f'--yolo_dir {path}: not a manifest of evaluate (a list "image_ids" of the '
                      'written images); write the images again with --yolo_dir alone')
    return ids

  def _score(self, ids: Sequence[int]) -> dict[str, float]:
    s = self.settings
    instances = _read_json(s.instances, '--instances')
    dets: Any = _read_json(s.detections, '--detections')
    try:
      sizes = yolo_score.image_sizes_from_instances(instances)
    except (KeyError, TypeError) as e:
      raise EvalError(f'--instances {s.instances}: not a COCO instances file (images with id, '
                      f'height, width): {one_line(e)}') from None
    if not isinstance(dets, list):
      raise EvalError(f'--detections {s.detections}: not a COCO results list')
    bad = next((d for d in dets if not _is_detection(d)), None)
    if bad is not None:
      raise EvalError(f'--detections {s.detections}: {json.dumps(bad)[:80]} is not a COCO result '
                      '{"image_id", "category_id", "bbox": [x, y, w, h], "score"}')
    keep = set(ids)
    missing = sorted(keep - set(sizes))
    if missing:
      raise EvalError(f'--instances {s.instances} lacks {len(missing)} evaluated image ids '
                      f'(e.g. {missing[:3]}); is it the right split?')
    dets = yolo_score.rescale_detections([d for d in dets if d.get('image_id') in keep],
                                         (YOLO_SIZE, YOLO_SIZE), sizes)
    return yolo_score.coco_ap(instances, dets, ids)
