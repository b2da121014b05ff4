"""YOLO score: COCO bbox AP of a detector's boxes on generated images.

The paper runs YOLOv4 on one sample per val layout and scores its detections
with pycocotools against instances_val2017, restricted to the evaluated image
ids. This module is detector-agnostic: it takes detections in the COCO results
format ([{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}, ...]).

Boxes must be in the pixel frame of the *original* COCO image, because that is
where the ground truth lives. The official pipeline upsamples each generated
image to 512×512 before detection, so detections come back in a 512×512 frame:
map them with `rescale_detections(dets, (512, 512), image_sizes)` first.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from typing import Any, Iterable, Mapping, Sequence



def _load_json(obj: Any) -> Any:
  if isinstance(obj, (str, os.PathLike)):
    with open(obj) as f:
      return json.load(f)
  return obj


def rescale_detections(dets: Sequence[Mapping[str, Any]], from_size: tuple[int, int],
                       image_sizes: Mapping[int, tuple[int, int]]) -> list[dict]:
  """Maps detection boxes from the detector's frame to each original image's frame.

  Args:
    dets: COCO-format detections, boxes [x, y, w, h] in pixels of the image the
      detector saw.
    from_size: (height, width) of that image, e.g. (512, 512).
    image_sizes: image_id → (height, width) of the original COCO image (the
      'height'/'width' fields of the annotation file's 'images').

  Returns:
    New detection dicts with rescaled boxes (the inputs are not modified).
  """
  from_h, from_w = from_size
  out = []
  for det in dets:
    h, w = image_sizes[det['image_id']]
    sx, sy = w / from_w, h / from_h
    x, y, bw, bh = det['bbox']
    new = dict(det)
    new['bbox'] = [x * sx, y * sy, bw * sx, bh * sy]
    out.append(new)
  return out


def image_sizes_from_instances(instances: str | Mapping[str, Any]) -> dict[int, tuple[int, int]]:
  """image_id → (height, width) from a COCO instances file or dict."""
  data = _load_json(instances)
  return {im['id']: (im['height'], im['width']) for im in data['images']}


def coco_ap(instances: str | Mapping[str, Any], detections: str | Sequence[Mapping[str, Any]],
            image_ids: Iterable[int], verbose: bool = False) -> dict[str, float]:
  """COCO bbox AP, AP50 and AP75 of detections, on the given images only.

  Args:
    instances: path to, or dict of, a COCO instances annotation file.
    detections: path to, or list of, COCO-format detections (original frame).
    image_ids: the evaluated images (COCOeval params.imgIds); other images'
      annotations and detections are ignored.
    verbose: print pycocotools' summary table.

  Returns:
    {'AP': ..., 'AP50': ..., 'AP75': ...} in [0, 1] (-1 where undefined, as
    pycocotools reports it).
  """
  # Imported here so the rest of the metrics work without pycocotools.
  from pycocotools.coco import COCO  # pylint: disable=import-outside-toplevel
  from pycocotools.cocoeval import COCOeval  # pylint: disable=import-outside-toplevel

  # COCOeval writes 'ignore' flags into the ground-truth annotations: copy a caller's dict.
  data = _load_json(instances) if isinstance(instances, (str, os.PathLike)) else \
      copy.deepcopy(instances)
  dets = list(_load_json(detections))
  image_ids = sorted(int(i) for i in image_ids)
  quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
  with quiet:
    gt = COCO()
    gt.dataset = data
    gt.createIndex()
    keep = set(image_ids)
    dets = [d for d in dets if d['image_id'] in keep]
    if not dets:
      return {'AP': 0.0, 'AP50': 0.0, 'AP75': 0.0}
    dt = gt.loadRes(dets)
    evaluator = COCOeval(gt, dt, iouType='bbox')
    evaluator.params.imgIds = image_ids
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  stats = evaluator.stats
  return {'AP': float(stats[0]), 'AP50': float(stats[1]), 'AP75': float(stats[2])}
