"""Times the official LAMA code (github:ZejianLi/LAMA, PyTorch) on request for cpu_side_by_side.py.

Runs in a Python with torch and torchvision (not this package's venv) and reads one JSON command per
line on stdin, answering one JSON line on stdout:

  {"cmd": "train", "steps": 2}   -> {"train_s": [...]}   official train.py iteration: D step, G step
  {"cmd": "sample", "repeats": 3} -> {"sample_s": [...]} eval-mode G forward under no_grad
  {"cmd": "quit"}

  python official_worker.py --official_dir DIR --size 64 --batch 8 --batches FILE.npz

DIR is a checkout or `git archive` of the official repository; nothing in it is edited. At import
time this worker stands in for what does not load on a CPU: the compiled CUDA `model/roi_layers`
(replaced by torchvision's roi_align with the legacy aligned=False rule, as the official kernel),
`utils/__init__.py` (imports seaborn for drawing only; skipped), and `.cuda()` (returns self).
The batches (official layout: boxes x, y, w, h; label 0 = padding) come from FILE.npz, so both
codes see the same layouts.
"""
import argparse
import contextlib
import json
import os
import sys
import time
import types

import numpy as np
import torch
import torch.nn.functional as F
import torchvision


class _ROIAlign(torch.nn.Module):
  """The legacy maskrcnn-benchmark ROIAlign (aligned=False) through torchvision's kernel."""

  def __init__(self, output_size, spatial_scale, sampling_ratio):
    super().__init__()
    self.output_size, self.spatial_scale = output_size, spatial_scale
    self.sampling_ratio = sampling_ratio

  def forward(self, features, rois):
    return torchvision.ops.roi_align(features, rois, self.output_size, self.spatial_scale,
                                     self.sampling_ratio, aligned=False)


def _import_official(official_dir: str):
  """Imports the official models without running the parts that need CUDA or seaborn."""
  sys.path.insert(0, official_dir)
  utils = types.ModuleType('utils')
  utils.__path__ = [os.path.join(official_dir, 'utils')]
  sys.modules['utils'] = utils
  roi = types.ModuleType('model.roi_layers')
  roi.ROIAlign, roi.ROIPool = _ROIAlign, None
  sys.modules['model.roi_layers'] = roi
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  from model import rcnn_discriminator, resnet_generator  # pylint: disable=import-outside-toplevel
  return rcnn_discriminator, resnet_generator


class Official:
  """The official G, D and Adam optimizers of one resolution, and its train iteration."""

  def __init__(self, official_dir: str, size: int, batches: str, num_classes: int = 184):
    disc, gen = _import_official(official_dir)
    self.G = getattr(gen, f'ResnetGenerator{size}')(num_classes=num_classes, output_dim=3)
    self.D = getattr(disc, f'CombineDiscriminator{size}')(num_classes=num_classes)
    self.g_opt = torch.optim.Adam(self.G.parameters(), lr=1e-4, betas=(0.0, 0.999))
    self.d_opt = torch.optim.Adam(self.D.parameters(), lr=1e-4, betas=(0.0, 0.999))
    data = np.load(batches)
    self.batches = [(torch.from_numpy(data[f'image{i}']).permute(0, 3, 1, 2).contiguous(),
                     torch.from_numpy(data[f'labels{i}'].astype(np.int64)).unsqueeze(-1),
                     torch.from_numpy(data[f'boxes{i}'])) for i in range(int(data['count']))]
    self.calls = 0

  def train_step(self) -> None:
    """train.py's iteration (D step, then G step on the same fakes), on the next batch."""
    images, label, bbox = self.batches[self.calls % len(self.batches)]
    self.calls += 1
    self.G.train()
    self.D.train()
    self.D.zero_grad()
    # The official D edits its bbox argument in place after .cpu(): on a CPU that is ours.
    d_real, d_robj = self.D(images, bbox.clone(), label)
    z = torch.randn(images.size(0), bbox.size(1), 128)
    fake = self.G(z, bbox, y=label.squeeze(-1))
    d_fake, d_fobj = self.D(fake.detach(), bbox.clone(), label)
    d_loss = (F.relu(1.0 - d_robj).mean() + F.relu(1.0 + d_fobj).mean()) + 0.1 * (
        F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean())
    d_loss.backward()
    self.d_opt.step()
    self.G.zero_grad()
    g_fake, g_obj = self.D(fake, bbox.clone(), label)
    g_loss = -g_obj.mean() - 0.1 * g_fake.mean()
    g_loss.backward()
    self.g_opt.step()
    d_loss.item(), g_loss.item()  # pylint: disable=expression-not-assigned

  def sample(self) -> None:
    """Eval-mode generator forward on the next batch's layouts (outputs left as tensors)."""
    _, label, bbox = self.batches[self.calls % len(self.batches)]
    self.calls += 1
    self.G.eval()
    with torch.no_grad():
      self.G(torch.randn(bbox.size(0), bbox.size(1), 128), bbox, y=label.squeeze(-1))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--official_dir', required=True)
  parser.add_argument('--size', type=int, required=True)
  parser.add_argument('--batches', required=True)
  parser.add_argument('--threads', type=int, default=2)
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  answers = sys.stdout
  with contextlib.redirect_stdout(sys.stderr):  # the official code prints; answers stay clean
    official = Official(args.official_dir, args.size, args.batches)
    answers.write(json.dumps({'ready': True, 'torch': torch.__version__}) + '\n')
    answers.flush()
    for line in sys.stdin:
      cmd = json.loads(line)
      if cmd['cmd'] == 'quit':
        break
      if cmd['cmd'] == 'train':
        fn, n, key = official.train_step, cmd.get('steps', 1), 'train_s'
      else:
        fn, n, key = official.sample, cmd.get('repeats', 1), 'sample_s'
      times = []
      for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
      answers.write(json.dumps({key: times}) + '\n')
      answers.flush()


if __name__ == '__main__':
  main()
