#!/usr/bin/env bash
# The stage-2 mix was chosen on tools/seeds_evidence.sh's 1,000 test questions; this checks the choice on questions
# that played no part in it: a second export of the evidence benchmark (same generators and version, export seed 1,
# 200 per family), every rule once, and the default recipe's seeds against the with-move variant's (the policies
# tools/seeds_evidence.sh trained), then the seeds table. Each step is skipped when its output is there.
set -euo pipefail
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-runs/seeds/heldout}
BENCH=${BENCH:-artifacts/evidence-bench-seed1}
RULES="[uniform,pool,random,surprise,fastv,visionzip,dycoke]"
[ -f "$BENCH/test.jsonl" ] || $PY -m score_lit export-split --benchmark evidence --setting default --out "$BENCH" --n 200 --seed 1
[ -f "$OUT/rules/results.csv" ] || $PY -m score_lit eval conf/eval.yaml eval.root="$BENCH" eval.methods="$RULES" eval.out_dir="$OUT/rules"
for v in score move; do
  for s in $SEEDS; do
    [ -f "$OUT/$v-$s/results.csv" ] || $PY -m score_lit eval conf/eval.yaml eval.root="$BENCH" eval.methods="[score]" eval.policy="runs/seeds-$v-$s/policy.pt" eval.out_dir="$OUT/$v-$s"
  done
done
$PY -m score_lit seeds-table --rules "$OUT/rules" --out "$OUT" score="$(ls -d "$OUT"/score-* | paste -sd,)" score-with-move="$(ls -d "$OUT"/move-* | paste -sd,)"
