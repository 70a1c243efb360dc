#!/usr/bin/env bash
# make ablation: the policy ablation on the evidence benchmark. For every policy variant x rollout sampler:
# stage 1 and stage 2 against the evidence toy (each an MLflow run whose params hold policy.name and rl.sampler),
# then an eval sweep of that policy; one sweep of every training-free method; then the table
# (runs/ablation/ablation.md: every policy x ratio, and the best against every rule at matched compute).
# VARIANTS / SAMPLERS / TOY / ARGS (extra overrides for every train and eval) can be set from make; TRAIN_ARGS are
# overrides for the two trainings only (e.g. policy.hidden=32: the eval reads the policy's shape from policy.pt), and
# TAG is appended to every run, folder and label of this ablation (e.g. TAG=-h32 beside the default-width runs).
set -euo pipefail
PY=${PY:-.venv/bin/python}
VARIANTS=${VARIANTS:-"mlp query_mlp temporal_mlp"}
SAMPLERS=${SAMPLERS:-"bernoulli budget"}
TOY=${TOY:-artifacts/toy-mllm-evidence4}
OUT=${OUT:-runs/ablation}
ARGS=${ARGS:-}
TRAIN_ARGS=${TRAIN_ARGS:-}
TAG=${TAG:-}
RULES="[uniform,pool,random,surprise,fastv,visionzip,dycoke]"
PAPER=conf/recipe/paper.yaml  # mlp, 256 wide, Bernoulli rollouts, lambda 0.1 (after the stage config: its recipe wins)

[ -d "$OUT/rules" ] || $PY -m score_lit eval conf/eval.yaml mllm.path="$TOY" eval.methods="$RULES" eval.out_dir="$OUT/rules" $ARGS

# one RUN SWEEP ARGS... (key=value overrides or extra YAML files): stage 1 (runs/RUN-s1), stage 2 (runs/RUN) and the score-only sweep (SWEEP), each skipped
# if its output is there
one() {
  local run=$1 sweep=$2
  shift 2
  [ -f "runs/$run-s1/policy.pt" ] || $PY -m score_lit train conf/stage1.yaml name="$run-s1" mllm.path="$TOY" "$@" $ARGS
  [ -f "runs/$run/policy.pt" ] || $PY -m score_lit train conf/stage2.yaml name="$run" init_policy="runs/$run-s1/policy.pt" mllm.path="$TOY" "$@" $ARGS
  [ -d "$sweep" ] || $PY -m score_lit eval conf/eval.yaml mllm.path="$TOY" eval.methods="[score]" eval.policy="runs/$run/policy.pt" eval.out_dir="$sweep" $ARGS
}

# The paper's recipe (conf/recipe/paper.yaml; the defaults are the ablation's winner) beside them
one abl-paper "$OUT/paper" $PAPER
labels=("paper:mlp/bernoulli/256=$OUT/paper")
for v in $VARIANTS; do
  for s in $SAMPLERS; do
    one "abl-$v-$s$TAG" "$OUT/$v-$s$TAG" policy.name="$v" rl.sampler="$s" $TRAIN_ARGS
    labels+=("$v/$s$TAG=$OUT/$v-$s$TAG")
  done
done
$PY -m score_lit ablation-table --rules "$OUT/rules" "${labels[@]}" --out "$OUT"
$PY -m score_lit ablation-table --rules "$OUT/rules" "${labels[@]}" --family colour+order --out "$OUT"  # version 2's families
