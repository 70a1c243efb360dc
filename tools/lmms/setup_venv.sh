#!/usr/bin/env bash
# tools/lmms/setup_venv.sh [VENV] [LOCK]   (make test-lmms / make test run it when VENV's stamp is older than its inputs)
# A separate virtualenv for lmms-eval (default .venv-lmms): score_lit with its pins (`pip install -e '.[lmms]'`,
# the torch CPU wheel from pip's find-links), then lmms-eval 0.7.3 WITHOUT its declared dependencies, which cannot
# be met on this stack (torchvision: no CPU build for torch 2.13; av<16: we pin av 18.1.0). The `lmms` extra holds
# what lmms-eval's import path for `lmms-eval --model score_qwen2_5_vl ... --tasks <multiple_choice task>` needs.
# Every install is constrained by LOCK (default requirements/lock-lmms.txt, `make lock` regenerates it): without it
# pip resolves transitive versions anew, e.g. filelock 4.3.1, which has no `filelock._api` that lmms-eval 0.7.3's
# evaluator imports. The checks at the end fail the build on such a break instead of leaving it to the first eval.
# Separate from .venv on purpose: lmms-eval --no-deps leaves `pip check` reporting its unmet declarations, and .venv
# stays `pip check` clean. Measured here (2 cores, warm pip cache): 84 s on an idle machine, 146 s beside a training run; 2.2 GB.
set -euo pipefail
VENV=${1:-.venv-lmms}
LOCK=${2:-requirements/lock-lmms.txt}
PYTHON=${PYTHON:-python3}
LMMS_EVAL_VERSION=0.7.3
cd "$(dirname "$0")/../.."
test -f "$LOCK" || { echo "setup_venv.sh: no lock file $LOCK" >&2; exit 1; }
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -c "$LOCK" -e '.[lmms]'
"$VENV/bin/python" -m pip install --quiet -c "$LOCK" --no-deps "lmms-eval==$LMMS_EVAL_VERSION"
# What pip check reports beyond lmms-eval's own unmet declarations is a real conflict: fail on it.
if "$VENV/bin/python" -m pip check 2>/dev/null | grep -v -e '^lmms-eval ' -e 'is not supported on this platform' | grep .; then
    echo "setup_venv.sh: dependency conflicts above (besides lmms-eval's declared torchvision/av<16/...)" >&2
    exit 1
fi
"$VENV/bin/python" - <<'PY'
from lmms_eval.models import get_model_manifest
m = get_model_manifest("score_qwen2_5_vl")  # ValueError if the lmms_eval.models entry point is not installed
print(f"lmms-eval registry: score_qwen2_5_vl -> chat {m.chat_class_path}, simple {m.simple_class_path}")
# evaluate() calls this first; it imports filelock._api (gone in filelock 4.3.1), so a bad filelock fails here.
from lmms_eval.evaluator import _enable_reentrant_filelocks
_enable_reentrant_filelocks()
PY
"$VENV/bin/lmms-eval" --help >/dev/null
