"""lmms-eval's real CLI through score_lit's model classes against `python -m score_lit eval`, one parametrised test
over the families with an lmms-eval class (score_qwen2_5_vl, score_llava_onevision).

Both run on the same checkpoint, policy, ratio and exported toy questions; they must count the SAME number of
correct answers (same frames, same selection, same scoring). tiny_random: a tiny RANDOM
checkpoint of the family and a RANDOM policy, built in seconds, 20 questions: accuracy near chance, the equality
is the point. trained_toy (`make test` and `make test-lmms` train what it needs; without artifacts/toy-mllm and
runs/first-toy-stage2/policy.pt it fails under REQUIRE_LMMS=1, else skips): the trained toy Qwen2.5-VL + its stage-2 policy, 100 questions, a non-trivial accuracy.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import pytest
from helpers import FAMILY_ARGS, LMMS_VENV, ROOT, lmms_env, need_lmms, tiny_random

TOY, BENCH, POLICY = (
    ROOT / "artifacts/toy-mllm",
    ROOT / "artifacts/toy-bench/test.jsonl",
    ROOT / "runs/first-toy-stage2/policy.pt",
)
RATIO = 0.1
CASES = [("qwen2_5_vl", "tiny_random"), ("qwen2_5_vl", "trained_toy"), ("llava_onevision", "tiny_random")]


@pytest.mark.lmms
@pytest.mark.slow
@pytest.mark.parametrize("family,model", CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_lmms_eval_cli_accuracy_equals_score_lit_eval(tmp_path, family, model):
    if model == "trained_toy":
        missing = [str(p.relative_to(ROOT)) for p in (TOY, POLICY) if not p.exists()]
        if missing:  # `make test` and `make test-lmms` make them first (REQUIRE_LMMS=1: their absence fails)
            msg = (
                f"missing {missing}: `make test` / `make test-lmms` make them (copy the committed toy, train stage 1+2)"
            )
            pytest.fail(msg) if os.environ.get("REQUIRE_LMMS") == "1" else pytest.skip(msg)
        need_lmms(BENCH)
        ckpt, pol, n_questions = TOY.relative_to(ROOT), POLICY.relative_to(ROOT), 100  # the toy misses 6 of them at 10%
    else:
        need_lmms(BENCH)
        (ckpt, pol), n_questions = tiny_random(tmp_path, family), 20
    frame_args, dtype = FAMILY_ARGS[family]
    model_args = f"pretrained={ckpt},policy={pol},retention_ratio={RATIO},{frame_args},device_map=cpu"
    cmd = [
        str(LMMS_VENV / "bin/lmms-eval"),
        "--model",
        f"score_{family}",
        "--model_args",
        model_args,
        "--include_path",
        "tools/lmms/tasks",
        "--tasks",
        "score_toy",
        "--limit",
        str(n_questions),
        "--batch_size",
        "1",
        "--device",
        "cpu",
        "--force_simple",
        "--output_path",
        str(tmp_path / "lmms"),
    ]
    # --force_simple: lmms-eval 0.7.3 builds chat-message requests (generation only) for chat classes, so a
    # multiple_choice task needs the simple class, for the stock wrappers as for ours.
    out = tmp_path / "score_lit"
    # The toy bench and the task's frames / size given explicitly: independent of conf/eval.yaml's default benchmark.
    sl_cmd = [
        sys.executable,
        "-m",
        "score_lit",
        "eval",
        "conf/eval.yaml",
        f"mllm.family={family}",
        f"mllm.path={ckpt}",
        f"eval.limit={n_questions}",
        "eval.benchmark=toy",
        f"eval.root={BENCH.parent.relative_to(ROOT)}",
        "eval.frames=16",
        "eval.size=64",
        "eval.methods=[score]",
        f"eval.ratios=[{RATIO}]",
        f"eval.policy={pol}",
        "eval.batch_size=1",
        f"mllm.dtype={dtype}",
        "eval.viz_samples=0",
        f"eval.out_dir={out}",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
    ]
    # Both runs at once (two processes on 2 cores).
    logs = [tmp_path / "lmms-eval.out", tmp_path / "lmms-eval.err", tmp_path / "score_lit-eval.log"]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=lmms_env(tmp_path), stdout=open(logs[0], "w"), stderr=open(logs[1], "w")),
        subprocess.Popen(sl_cmd, cwd=ROOT, stdout=open(logs[2], "w"), stderr=subprocess.STDOUT),
    ]
    for p in procs:
        p.wait(timeout=600)
    stdout, stderr, sl_log = (f.read_text() for f in logs)
    log = stdout + stderr
    assert procs[0].returncode == 0 and "Error during evaluation" not in log, log[-5000:]  # lmms-eval exits 0 on errors
    files = sorted((tmp_path / "lmms").rglob("*_results.json"))
    assert files, f"no results json under {tmp_path / 'lmms'}:\n{log[-3000:]}"
    res = json.loads(files[-1].read_text())
    acc = res["results"]["score_toy"]["acc,none"]
    n = res["n-samples"]["score_toy"]["effective"]
    printed = re.search(r"^\|score_toy\s*\|none\s*\|\s*0\|acc\s*\|.\s*\|\s*([0-9.]+)\|", stdout, re.M)
    assert printed and float(printed.group(1)) == pytest.approx(acc, abs=5e-5), stdout[-2000:]

    assert procs[1].returncode == 0, sl_log[-5000:]
    rows = [r for r in csv.DictReader(open(out / "results.csv")) if r["method"] == "score" and r["family"] != "all"]
    n_sl = sum(int(r["n"]) for r in rows)
    correct_sl = sum(
        round(float(r["accuracy"]) * int(r["n"])) for r in rows
    )  # per family: the 'all' row is a mean of families
    assert n == n_sl == n_questions
    assert round(acc * n) == correct_sl, (
        f"lmms-eval acc {acc} ({round(acc * n)}/{n}) != score_lit eval {correct_sl}/{n}"
    )
    if model == "trained_toy":
        assert 0 < correct_sl < n_sl  # a non-trivial accuracy, so the equality says something
