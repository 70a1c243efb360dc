#!/usr/bin/env bash
# The GPU check (score_lit.perf.gpu_check): prefill speedups against the FLOP-ideal, the policy's share, one training step's phases
# and peak memory, for the Qwen2.5-VL-7B and Qwen3-VL-8B architectures with random weights (score_lit/perf/gpu_check.py).
#
#   bash tools/gpu_check.sh OUT            # one GPU, sized for 8 min on an H200: OUT/gpu_check.json, gpu_check.md, gpu_check.log
#   bash tools/gpu_check.sh OUT --tiny     # the tiny architectures on CPU: what the test runs
#   make bench-gpu OUT=runs/gpu-check      # the same through make
#
# Runs from the source tree with the python3 it finds (PYTHON=... to choose): no install. Python packages the GPU
# image lacks (omegaconf, for the training step) travel as wheels in .whl/ (make gpu-wheels); they are installed
# into a temporary folder, never into the image. With none there, the training step is recorded as failed and the
# prefill parts still run.
set -euo pipefail
if [ $# -lt 1 ] || [ "${1#-}" != "$1" ]; then
  echo "usage: bash tools/gpu_check.sh OUT_DIR [--tiny] [--budget-s S]   (OUT_DIR: where gpu_check.json/.md/.log go)" >&2
  exit 2
fi
out=$1; shift
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python3}
if [ -e "$out" ] && [ ! -d "$out" ]; then
  echo "gpu_check: error: $out is a file; give a folder (it is created if missing)" >&2
  exit 2
fi
mkdir -p "$out"
site=
if compgen -G "$root/.whl/*.whl" > /dev/null; then
  site=$(mktemp -d)
  trap 'rm -rf "$site"' EXIT
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$root"/.whl/*.whl
  echo "gpu_check: carried wheels installed into $site: $(cd "$root/.whl" && ls *.whl | tr '\n' ' ')"
fi
export PYTHONPATH="$root/src${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$root"
"$py" -m score_lit.perf.gpu_check "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
