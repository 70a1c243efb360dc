#!/usr/bin/env bash
# tools/lmms/setup_venv.sh [VENV]   (make test-lmms runs it when VENV/bin/lmms-eval is missing)
# A separate virtualenv for lmms-eval (default .venv-lmms): score_lit with its pins (`pip install -e '.[lmms]'`,
# the torch CPU wheel from pip's find-links), then lmms-eval 0.7.3 WITHOUT its declared dependencies, which cannot
# be met on this stack (torchvision: no CPU build for torch 2.13; av<16: we pin av 18.1.0). The `lmms` extra holds
# what lmms-eval's import path for `lmms-eval --model score_qwen2_5_vl ... --tasks <multiple_choice task>` needs.
# Separate from .venv on purpose: lmms-eval --no-deps leaves `pip check` reporting its unmet declarations, and .venv
# stays `pip check` clean. Measured here (2 cores): 84 s with a warm pip cache (about 2.5 min cold), 2.2 GB.
set -euo pipefail
VENV=${1:-.venv-lmms}
PYTHON=${PYTHON:-python3}
LMMS_EVAL_VERSION=0.7.3
cd "$(dirname "$0")/../.."
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -e '.[lmms]'
"$VENV/bin/python" -m pip install --quiet --no-deps "lmms-eval==$LMMS_EVAL_VERSION"
# What pip check reports beyond lmms-eval's own unmet declarations is a real conflict: fail on it.
if "$VENV/bin/python" -m pip check 2>/dev/null | grep -v -e '^lmms-eval ' -e 'is not supported on this platform' | grep .; then
    echo "setup_venv.sh: dependency conflicts above (besides lmms-eval's declared torchvision/av<16/...)" >&2
    exit 1
fi
"$VENV/bin/python" - <<'PY'
from lmms_eval.models import get_model_manifest
m = get_model_manifest("score_qwen2_5_vl")  # ValueError if the lmms_eval.models entry point is not installed
print(f"lmms-eval registry: score_qwen2_5_vl -> chat {m.chat_class_path}, simple {m.simple_class_path}")
PY
