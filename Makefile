# score_lit: `make help` lists every target. Each target creates .venv first if it is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
LOCK := requirements/lock-venv.txt
LMMS_LOCK := requirements/lock-lmms.txt
LMMS_VENV := .venv-lmms
LMMS_STAMP := $(LMMS_VENV)/.installed-stamp
MLFLOW_PORT ?= 5000
TOY := artifacts/toy-mllm/accuracy.json
TOYBENCH := artifacts/toy-bench/test.jsonl
EVTOY := artifacts/toy-mllm-evidence4/accuracy.json
EVBENCH := artifacts/evidence-bench/test.jsonl
EVBENCH_LONG := artifacts/evidence-bench-long/test.jsonl
FIRST_POLICY2 := runs/first-toy-stage2/policy.pt
POLICY1 := runs/stage1/policy.pt
POLICY2 := runs/stage2/policy.pt

.DEFAULT_GOAL := help
.PHONY: help venv lock slurm-binaries test test-all test-integration test-fast test-resume test-slurm test-distributed test-mlflow test-lmms lint format bench-gpu gpu-wheels toy-mllm train-stage1 train-stage2 train-curriculum data-check eval viz bench mlflow-ui clean first-toy-mllm first-toy-policy ablation export-evidence eval-long seeds

help: ## list every target with one line
	@grep -E '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

# Every install is constrained by its lock (exact versions of every package, transitive ones included).
$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(LOCK) -e '.[dev]'
	@touch $@

venv: $(STAMP) ## create .venv with the locked dependencies (about 2-3 min the first time; no-op after)

lock: $(STAMP) $(LMMS_STAMP) ## rewrite requirements/lock-*.txt from the current .venv and .venv-lmms (pip freeze; after a pin change + green tests)
	bash tools/freeze_lock.sh $(VENV) $(LOCK)
	bash tools/freeze_lock.sh $(LMMS_VENV) $(LMMS_LOCK)
	@touch $(STAMP) $(LMMS_STAMP)  # the venvs are what the new locks say: no rebuild

# Two tiers. `make test` (CI, .ci/run): EVERY test, the integration tier included (marker `integration`: lmms-eval's
# real CLI, the local one- and two-node SLURM clusters, 2-process DDP / ZeRO-3, kill -9 and resume, a Ctrl-C'd CLI
# sweep, concurrent trainings, a real MLflow tracking server). It builds what those need first: .venv-lmms, the first
# toy's benchmark split and its stage-2 policy (the trained-toy lmms-eval case), slurm-wlm. REQUIRE_LMMS=1: an
# lmms-eval test fails instead of skipping when something it needs is missing. `make test-fast`: the edit loop,
# every test except the integration tier, under 5 min on 2 cores.
test: $(STAMP) $(LMMS_STAMP) $(TOYBENCH) slurm-binaries | $(FIRST_POLICY2) ## EVERY test (CI runs this; builds .venv, .venv-lmms, the toy bench and policy, slurm-wlm if missing)
	REQUIRE_LMMS=1 $(PY) -m pytest -q --durations=25 $(ARGS)

test-all: test ## the same as make test (every test)

test-fast: $(STAMP) ## the edit loop: every test except the integration tier (builds .venv if missing; under 5 min)
	$(PY) -m pytest -q -m "not integration" --durations=10 $(ARGS)

test-integration: $(STAMP) $(LMMS_STAMP) $(TOYBENCH) slurm-binaries | $(FIRST_POLICY2) ## only the integration tier: lmms-eval CLI, SLURM clusters, DDP / ZeRO-3, kill -9, MLflow server
	REQUIRE_LMMS=1 $(PY) -m pytest -q -m integration --durations=25 $(ARGS)

test-resume: $(STAMP) ## kill -9 a real training run, resume it, compare with an uninterrupted run
	$(PY) -m pytest -q -m resume $(ARGS)

slurm-binaries: ## install slurm-wlm + munge with apt-get where missing (root, Debian; no-op when present)
	bash tools/slurm/install_slurm.sh

test-slurm: $(STAMP) slurm-binaries ## one- and two-node SLURM clusters on localhost: submit, DDP / ZeRO-3 across nodes, USR1, requeue, resume (installs slurm-wlm if missing)
	$(PY) -m pytest -q -m slurm $(ARGS)

test-distributed: $(STAMP) ## 2-process DDP and DeepSpeed ZeRO-3 fits on CPU
	$(PY) -m pytest -q -m distributed $(ARGS)

test-mlflow: $(STAMP) ## train against a real mlflow server on loopback; kill it mid-run, check no metric is lost
	$(PY) -m pytest -q -m mlflow_server $(ARGS)

lint: $(STAMP) ## ruff check + ruff format --check over src tests tools (what tests/test_lint.py checks)
	$(VENV)/bin/ruff check src tests tools
	$(VENV)/bin/ruff format --check src tests tools

format: $(STAMP) ## rewrite src tests tools in the project's style: ruff check --fix, then ruff format
	$(VENV)/bin/ruff check --fix src tests tools
	$(VENV)/bin/ruff format src tests tools

$(LMMS_STAMP): pyproject.toml $(LMMS_LOCK) tools/lmms/setup_venv.sh
	bash tools/lmms/setup_venv.sh $(LMMS_VENV) $(LMMS_LOCK)
	@touch $@

test-lmms: $(STAMP) $(LMMS_STAMP) $(TOY) $(TOYBENCH) | $(FIRST_POLICY2) ## lmms-eval's CLI == score_lit eval, also on the trained toy model (trains it first if missing) + the lock checks
	REQUIRE_LMMS=1 $(PY) -m pytest -q tests/test_lmms.py tests/test_lmms_llava.py tests/test_lmms_cli.py tests/test_lmms_generate.py tests/test_locks.py $(ARGS)

# The main path: the evidence benchmark (score_lit.toy.evidence, version 2) and its frozen toy, committed in
# models/toy-mllm-evidence4 (5.3 MB): a fresh clone copies it in seconds. `make toy-mllm` retrains it (about 3 h on
# 2 cores: the `evidence` preset to joint step 1,250, 46 min, then the `evidence4` preset, 2 h 12 min).
$(EVTOY): | $(STAMP)
	@if [ -f models/toy-mllm-evidence4/model.safetensors ]; then mkdir -p artifacts && rm -rf artifacts/toy-mllm-evidence4 && cp -r models/toy-mllm-evidence4 artifacts/toy-mllm-evidence4 && echo "artifacts/toy-mllm-evidence4: copied from the committed models/toy-mllm-evidence4"; \
	else $(MAKE) toy-mllm; fi

toy-mllm: $(STAMP) ## retrain the committed evidence toy into artifacts/toy-mllm-evidence4 (about 3 h on 2 cores; run again to continue)
	$(PY) -m score_lit toy-mllm --preset evidence --out artifacts/toy-mllm-evidence --resume --stop-after 1250
	$(PY) -m score_lit toy-mllm --preset evidence4 --out artifacts/toy-mllm-evidence4 --resume

train-stage1: $(STAMP) $(EVTOY) ## stage 1: static pseudo-videos, against the evidence toy (CPU, about 2 min); ARGS='key=value ...'
	$(PY) -m score_lit train conf/stage1.yaml $(ARGS)

train-stage2: $(STAMP) $(EVTOY) ## stage 2: the evidence families, from runs/stage1/policy.pt (CPU, about 4 min); ARGS='key=value ...'
	$(PY) -m score_lit train conf/stage2.yaml $(ARGS)

train-curriculum: $(STAMP) $(EVTOY) ## both phases in one run (conf/curriculum.yaml); ARGS='key=value ...'
	$(PY) -m score_lit train conf/curriculum.yaml $(ARGS)

$(EVBENCH): | $(STAMP)
	$(PY) -m score_lit export-split --benchmark evidence --setting default --out artifacts/evidence-bench --n 200

$(EVBENCH_LONG): | $(STAMP)
	$(PY) -m score_lit export-split --benchmark evidence --setting long --out artifacts/evidence-bench-long --n 50

export-evidence: $(EVBENCH) $(EVBENCH_LONG) ## write the evidence benchmark's test split (200/family at 576 tokens; long: 50/family at 2,048)

$(POLICY1): | $(STAMP) $(EVTOY)
	$(PY) -m score_lit train conf/stage1.yaml

$(POLICY2): | $(POLICY1)
	$(PY) -m score_lit train conf/stage2.yaml

eval: $(STAMP) $(EVTOY) $(EVBENCH) | $(POLICY2) ## retention sweep, every method x ratio on the evidence benchmark, ending with the matched-compute table (trains stage 1+2 first if missing)
	$(PY) -m score_lit eval conf/eval.yaml $(ARGS)

eval-long: $(STAMP) $(EVTOY) $(EVBENCH_LONG) | $(POLICY2) ## the same on its long setting (2,048 tokens)
	$(PY) -m score_lit eval conf/eval_long.yaml $(ARGS)

viz: $(STAMP) $(EVTOY) $(EVBENCH) | $(POLICY2) ## kept-token PNG + GIFs of a video: make viz VIDEO=x.mp4 [ARGS='--method score,surprise']
	$(PY) -m score_lit viz $(or $(VIDEO),artifacts/evidence-bench/videos/colour_00000.mp4) $(ARGS)

seeds: $(STAMP) $(EVTOY) ## the headline over 3 training seeds of both recipes, 500 questions/family + the long setting, with bootstrap intervals (about 1 h 45 min)
	PY=$(PY) bash tools/seeds_evidence.sh
	$(PY) -m score_lit seeds-table --rules runs/seeds/default/rules --out runs/seeds/default \
	  score=$$(ls -d runs/seeds/default/score-* | paste -sd,) paper=$$(ls -d runs/seeds/default/paper-? | paste -sd,) \
	  score-with-move=$$(ls -d runs/seeds/default/move-* | paste -sd,)
	$(PY) -m score_lit seeds-table --rules runs/seeds/long/rules --out runs/seeds/long \
	  score=$$(ls -d runs/seeds/long/score-* | paste -sd,) paper=$$(ls -d runs/seeds/long/paper-* | paste -sd,)
	PY=$(PY) bash tools/seeds_heldout.sh

ablation: $(STAMP) $(EVTOY) $(EVBENCH) ## the policy ablation (docs/RESULTS.md): policy variant x sampler, trained and swept on the evidence benchmark, then the matched-compute table (runs/ablation/ablation.md; hours on 2 cores)
	PY=$(PY) ARGS="$(ARGS)" bash tools/ablation_evidence.sh

# The first toy (models/toy-mllm; benchmark: flash / stitched / distracted, 128 tokens, where every good method ties at
# the vanilla ceiling) is kept for the lmms-eval tests, whose tasks read its test split; `make first-toy-mllm`
# retrains it (about 9 min). Its configs: conf/first_toy/.
$(TOY): | $(STAMP)
	@if [ -f models/toy-mllm/model.safetensors ]; then mkdir -p artifacts && rm -rf artifacts/toy-mllm && cp -r models/toy-mllm artifacts/toy-mllm && echo "artifacts/toy-mllm: copied from the committed models/toy-mllm"; \
	else $(PY) -m score_lit toy-mllm --out artifacts/toy-mllm; fi

first-toy-mllm: $(STAMP) ## (re)train the first toy MLLM (the lmms-eval tests') into artifacts/toy-mllm (about 9 min on 2 cores)
	$(PY) -m score_lit toy-mllm --out artifacts/toy-mllm

$(TOYBENCH): | $(STAMP)
	$(PY) -m score_lit export-split --out artifacts/toy-bench --split test --n 200

# The first toy's stage-2 policy (the trained-toy lmms-eval case) is committed in models/first-toy-stage2 (72 KB):
# copied in a second; `make first-toy-policy` retrains it (stage 1 + 2 against the first toy: 18 min in a fresh clone's make test, on 2 cores loaded by other jobs).
$(FIRST_POLICY2): | $(STAMP) $(TOY)
	@if [ -f models/first-toy-stage2/policy.pt ]; then mkdir -p runs/first-toy-stage2 && cp models/first-toy-stage2/policy.pt $@ && echo "$@: copied from the committed models/first-toy-stage2"; \
	else $(MAKE) first-toy-policy; fi

first-toy-policy: $(STAMP) $(TOY) ## retrain the first toy's stage-2 policy into runs/first-toy-stage2 (the lmms-eval tests' trained-toy case; committed in models/first-toy-stage2)
	$(PY) -m score_lit train conf/first_toy/stage1.yaml
	$(PY) -m score_lit train conf/first_toy/stage2.yaml

BENCH ?= conf/bench_cpu.yaml
bench: $(STAMP) ## time decode/vision/policy/prefill and the time to first token per retention ratio (CPU 45 s); GPU: make bench BENCH=conf/bench_qwen2_5_vl_7b.yaml
	$(PY) -m score_lit bench $(BENCH) $(ARGS)

# The GPU check (score_lit.perf.gpu_check): tools/gpu_check.sh with the python3 that has CUDA torch (not .venv's CPU build). On a
# GPU machine without a registry, carry `make gpu-wheels`'s .whl/ along: the script installs it into a temp folder.
GPU_PYTHON ?= python3
bench-gpu: ## one GPU, sized for 8 min on an H200 (never run on one yet): 7B/8B prefill speedups vs FLOP-ideal, policy share, a training step's phases and memory (OUT=runs/gpu-check)
	PYTHON=$(GPU_PYTHON) bash tools/gpu_check.sh $(or $(OUT),runs/gpu-check) $(ARGS)

gpu-wheels: ## download into .whl/ the wheels (Python 3.12, x86-64) the GPU check needs beyond torch, transformers and lightning
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl omegaconf==$$(grep -oP '^omegaconf==\K.*' $(LOCK))
	@ls -l .whl

data-check: $(STAMP) ## list every problem of a dataset file: make data-check FILE=data.jsonl [ARGS='--frames 32']
	@test -n "$(FILE)" || { echo "usage: make data-check FILE=path/to/annotations.jsonl [ARGS='--frames 32']"; exit 2; }
	$(PY) -m score_lit data-check $(FILE) $(ARGS)

mlflow-ui: $(STAMP) ## serve the MLflow UI for ./mlflow.db on http://127.0.0.1:5000 (MLFLOW_PORT=... to change)
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port $(MLFLOW_PORT) --workers 1

clean: ## remove run outputs and caches (keeps .venv and mlflow.db)
	rm -rf runs .pytest_cache
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
