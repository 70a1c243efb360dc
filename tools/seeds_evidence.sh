#!/usr/bin/env bash
# make seeds: the headline comparison over training seeds on the evidence benchmark (version 2).
# For every recipe (the defaults; the paper's, conf/recipe/paper.yaml) and every seed in SEEDS: stage 1 and stage 2
# against the evidence toy, then a score-only sweep of that policy on 500 questions per family (576 tokens) and,
# in the second pass, on 200 per family of the long setting (2,048 tokens). One sweep of every training-free rule
# per setting. Then the seeds table (score_lit seeds-table): mean, std and a 95% bootstrap interval over questions
# and seeds, and the matched-compute margin against every rule. The stage-2 mix measurement (MIX=1, the default):
# the default recipe's stage 2 also trained with `move` (families colour, order, move; conf/stage2.yaml trains colour
# and order), from the same stage-1 policies.
# Every step is skipped when its output is there, so running it again continues where it stopped. About 1 h 45 min on
# 2 cores; progress in each training's and sweep's own bar.
set -euo pipefail
PY=${PY:-.venv/bin/python}
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-runs/seeds}
STAGE1=${STAGE1:-conf/stage1.yaml}
STAGE2=${STAGE2:-conf/stage2.yaml}
EVAL=${EVAL:-conf/eval.yaml}
EVAL_LONG=${EVAL_LONG:-conf/eval_long.yaml}
BENCH=${BENCH:-artifacts/evidence-bench-500}
BENCH_LONG=${BENCH_LONG:-artifacts/evidence-bench-long-200}
MIX=${MIX:-1}
RULES="[uniform,pool,random,surprise,fastv,visionzip,dycoke]"
say() { echo "[seeds $(date +%H:%M:%S)] $*"; }

[ -f "$BENCH/test.jsonl" ] || $PY -m score_lit export-split --benchmark evidence --setting default --out "$BENCH" --n 500
[ -f "$BENCH_LONG/test.jsonl" ] || $PY -m score_lit export-split --benchmark evidence --setting long --out "$BENCH_LONG" --n 200

train() {  # RUN SEED [extra configs / overrides for both stages]
  local run=$1 seed=$2
  shift 2
  [ -f "runs/$run-s1/policy.pt" ] || { say "train $run stage 1"; $PY -m score_lit train "$STAGE1" "$@" name="$run-s1" seed="$seed"; }
  [ -f "runs/$run/policy.pt" ] || { say "train $run stage 2"; $PY -m score_lit train "$STAGE2" "$@" name="$run" seed="$seed" init_policy="runs/$run-s1/policy.pt"; }
}
sweep() {  # CONFIG ROOT POLICY OUT
  [ -f "$4/results.csv" ] || { say "sweep $4"; $PY -m score_lit eval "$1" eval.root="$2" eval.methods="[score]" eval.policy="$3" eval.out_dir="$4"; }
}

[ -f "$OUT/default/rules/results.csv" ] || { say "rules, default setting"; $PY -m score_lit eval "$EVAL" eval.root="$BENCH" eval.methods="$RULES" eval.out_dir="$OUT/default/rules"; }
for recipe in score paper; do
  extra=()
  [ "$recipe" = paper ] && extra=(conf/recipe/paper.yaml)
  for s in $SEEDS; do
    train "seeds-$recipe-$s" "$s" "${extra[@]}"
    sweep "$EVAL" "$BENCH" "runs/seeds-$recipe-$s/policy.pt" "$OUT/default/$recipe-$s"
  done
done
if [ "$MIX" = 1 ]; then
  for s in $SEEDS; do
    run="seeds-move-$s"
    [ -f "runs/$run/policy.pt" ] || { say "train $run stage 2 (colour, order, move)"; $PY -m score_lit train "$STAGE2" name="$run" seed="$s" init_policy="runs/seeds-score-$s-s1/policy.pt" "stage2.data.families=[colour,order,move]"; }
    sweep "$EVAL" "$BENCH" "runs/$run/policy.pt" "$OUT/default/move-$s"
  done
fi
[ -f "$OUT/long/rules/results.csv" ] || { say "rules, long setting"; $PY -m score_lit eval "$EVAL_LONG" eval.root="$BENCH_LONG" eval.methods="$RULES" eval.out_dir="$OUT/long/rules"; }
for recipe in score paper; do
  for s in $SEEDS; do
    sweep "$EVAL_LONG" "$BENCH_LONG" "runs/seeds-$recipe-$s/policy.pt" "$OUT/long/$recipe-$s"
  done
done
say "done"
