#!/bin/bash
# Fills .devbench/ (git-ignored, carried to the GPU machine) with what benchmarks/gpu_session.py
# needs there: the ml_collections and clu wheels, the clu stand-in (sitecustomize.py), the official
# code's timer (time_official.py) and the official model code it imports, exported from a git
# directory of github:ZejianLi/LAMA with its CUDA-only ROI layers replaced by torchvision's kernels.
#
#   bash benchmarks/prepare_gpu_session.sh DEVBENCH_DIR OFFICIAL_GIT_DIR
#   e.g. bash benchmarks/prepare_gpu_session.sh /work/shared/devbench /work/.mirror/ZejianLi+LAMA/repo
set -euo pipefail
if [ $# -ne 2 ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
devbench=$1
official_git=$2
cd "$(dirname "$0")/.."
rm -rf .devbench
mkdir -p .devbench/official
cp -r "$devbench/whl" "$devbench/sitecustomize.py" "$devbench/time_official.py" .devbench/
for f in $(git --git-dir="$official_git" ls-tree -r --name-only HEAD model utils | grep '\.py$'); do
  mkdir -p ".devbench/official/$(dirname "$f")"
  git --git-dir="$official_git" show "HEAD:$f" > ".devbench/official/$f"
done
cp "$devbench/official_roi_layers_init.py" .devbench/official/model/roi_layers/__init__.py
: > .devbench/official/utils/__init__.py
echo "prepared .devbench/ ($(du -sh .devbench | cut -f1)); carry it: carry=['.devbench']"
