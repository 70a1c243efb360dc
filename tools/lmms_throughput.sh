#!/usr/bin/env bash
# Throughput of lmms-eval's generate_until through score_lit's model class at --batch_size 1 and 4 (CPU, one run
# after the other). The first toy (models/toy-mllm), the score_toy_gen task (its first N questions, real mp4 files
# decoded by decord), retention 0.1 with a seeded random question-conditioned policy. Prints the wall time of each
# CLI run (model load included) and questions/s. Needs .venv-lmms and artifacts/toy-bench (make test-lmms builds both).
#   bash tools/lmms_throughput.sh [N]        (N = 64 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-64}
PY=${PY:-.venv/bin/python}
OUT=$(mktemp -d /tmp/lmms-throughput.XXXXXX)
[ -x .venv-lmms/bin/lmms-eval ] || { echo "no .venv-lmms: run make .venv-lmms/.installed-stamp (or make test-lmms) first" >&2; exit 2; }
[ -f artifacts/toy-bench/test.jsonl ] || { echo "no artifacts/toy-bench: run make artifacts/toy-bench/test.jsonl first" >&2; exit 2; }
PYTHONPATH=tests $PY - "$OUT/policy" <<'PYEOF'
import sys
from helpers import question_policy
from score_lit.config import MLLMConfig, PolicyConfig
from score_lit.mllm import build_mllm
from score_lit.training.checkpoint import save_policy_dir
identity = build_mllm(MLLMConfig(family="qwen2_5_vl", path="models/toy-mllm")).identity()
save_policy_dir(sys.argv[1], question_policy(identity["hidden_size"]), PolicyConfig(name="query_mlp", hidden=16), identity)
PYEOF
for BS in 1 4; do
  START=$(date +%s.%N)
  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 HF_DATASETS_CACHE="$OUT/hf" .venv-lmms/bin/lmms-eval --model score_qwen2_5_vl \
    --model_args "pretrained=models/toy-mllm,policy=$OUT/policy,retention_ratio=0.1,max_num_frames=16,frame_size=64,min_pixels=256,max_pixels=200704,device_map=cpu" \
    --include_path tools/lmms/tasks --tasks score_toy_gen --limit "$N" --batch_size "$BS" --device cpu \
    --output_path "$OUT/bs$BS" > "$OUT/bs$BS.log" 2>&1 || { tail -20 "$OUT/bs$BS.log"; exit 1; }
  END=$(date +%s.%N)
  python3 -c "w=$END-$START; print(f'batch_size $BS: {$N} questions in {w:.1f} s = {$N/w:.2f} questions/s (CLI wall time, model load included)')"
done
