"""YOLO score wiring: pycocotools COCOeval on the evaluated image ids."""
import json

import numpy as np
import pytest

from lama_jax.metrics import yolo_score


def _instances():
  rng = np.random.default_rng(0)
  images = [{'id': i, 'height': 480, 'width': 640, 'file_name': f'{i}.jpg'} for i in (1, 2, 3)]
  annotations = []
  for img in images:
    for k in range(3):
      x, y = rng.uniform(0, 400), rng.uniform(0, 250)
      w, h = rng.uniform(60, 200), rng.uniform(60, 200)
      annotations.append({'id': len(annotations) + 1, 'image_id': img['id'], 'category_id': 1 + k,
                          'bbox': [x, y, w, h], 'area': w * h, 'iscrowd': 0})
  categories = [{'id': c, 'name': f'c{c}'} for c in (1, 2, 3)]
  return {'images': images, 'annotations': annotations, 'categories': categories}


def _perfect(instances, ids):
  return [{'image_id': a['image_id'], 'category_id': a['category_id'], 'bbox': list(a['bbox']),
           'score': 0.9} for a in instances['annotations'] if a['image_id'] in ids]


def test_perfect_detections_give_ap_one(tmp_path):
  instances = _instances()
  path = tmp_path / 'instances.json'
  path.write_text(json.dumps(instances))
  scores = yolo_score.coco_ap(str(path), _perfect(instances, {1, 2}), image_ids=[1, 2])
  assert scores == pytest.approx({'AP': 1.0, 'AP50': 1.0, 'AP75': 1.0})


def test_shifted_boxes_score_lower():
  instances = _instances()
  dets = _perfect(instances, {1, 2, 3})
  for d in dets:
    d['bbox'][0] += 0.3 * d['bbox'][2]  # IoU ≈ 0.54: counts at 0.5, fails at 0.75
  scores = yolo_score.coco_ap(instances, dets, image_ids=[1, 2, 3])
  assert scores['AP'] < 0.5 and scores['AP75'] == pytest.approx(0.0)
  assert scores['AP50'] == pytest.approx(1.0)


def test_restricted_to_image_ids():
  instances = _instances()
  # Image 3 has no detections: scoring all images would penalise the misses.
  dets = _perfect(instances, {1, 2})
  assert yolo_score.coco_ap(instances, dets, image_ids=[1, 2])['AP'] == pytest.approx(1.0)
  assert yolo_score.coco_ap(instances, dets, image_ids=[1, 2, 3])['AP'] < 0.9


def test_rescale_detections_round_trip():
  instances = _instances()
  sizes = yolo_score.image_sizes_from_instances(instances)
  dets = _perfect(instances, {1, 2})
  at512 = [dict(d, bbox=[d['bbox'][0] * 512 / 640, d['bbox'][1] * 512 / 480,
                         d['bbox'][2] * 512 / 640, d['bbox'][3] * 512 / 480]) for d in dets]
  back = yolo_score.rescale_detections(at512, (512, 512), sizes)
  np.testing.assert_allclose([d['bbox'] for d in back], [d['bbox'] for d in dets], rtol=1e-9)
  assert yolo_score.coco_ap(instances, back, image_ids=[1, 2])['AP'] == pytest.approx(1.0)
