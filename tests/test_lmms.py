"""score_lit.lmms: SCORE-compressed models for lmms-eval (make test-lmms).

* ScoreHooks (no lmms-eval needed, default suite): `generate` on a hooked tiny Qwen2.5-VL equals, step by step,
  the stock forward on the FULL sequence with the dropped video tokens masked out as keys (same position ids).
* lmms-eval's real CLI (marker `lmms`, needs .venv-lmms from tools/lmms/setup_venv.sh; `make test` builds it and
  sets REQUIRE_LMMS=1, so there a missing venv fails; plain pytest skips without it):
  `lmms-eval --model score_qwen2_5_vl ... --tasks score_toy` prints the same accuracy as `python -m score_lit eval`
  on the same questions at the same retention ratio (equal counts, not approximately), on a tiny random checkpoint
  (always) and on the trained toy model (when artifacts/toy-mllm and runs/stage2/policy.pt exist: make test-lmms).
  The stock wrapper loads the model in bfloat16 (lmms-eval hard-codes it), so score_lit eval runs with
  mllm.dtype=bfloat16; min/max_pixels are passed so both use score_lit's pixel budget (the stock defaults would
  upsample the 64 px toy frames to 200k pixels).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import lmms_env, need_lmms

ROOT = Path(__file__).resolve().parents[1]
LMMS_VENV = ROOT / ".venv-lmms"
TOY, BENCH, POLICY = ROOT / "artifacts/toy-mllm", ROOT / "artifacts/toy-bench/test.jsonl", ROOT / "runs/stage2/policy.pt"
N_QUESTIONS, RATIO = 100, 0.1  # the first 100 toy questions (the toy model misses 6 of them at 10%: not a trivial 1.0)


# ------------------------------------------------------------------------------------------------ hooks


def _prompt_inputs(adapter, frames):
    """input_ids with <|video_pad|> placeholders + the stock forward's video inputs, built without a processor."""
    pixels, grid_thw = adapter.preprocessor(frames)
    t, h, w = grid_thw[0].tolist()
    v = t * (h // adapter.merge) * (w // adapter.merge)
    before, after = adapter.cfg.prompt_template.split("{video}")
    pre = adapter._ids([before.replace("{question}", "which digit appeared ?")])[0]
    post = adapter._ids([after.replace("{question}", "which digit appeared ?")])[0]
    ids = torch.tensor([pre + [adapter.video_token_id] * v + post])
    mm = (ids == adapter.video_token_id).long() * 2
    extra = dict(pixel_values_videos=pixels, video_grid_thw=grid_thw, mm_token_type_ids=mm, second_per_grid_ts=torch.tensor([0.5]))
    return ids, extra, len(pre), v


def test_hooks_generate_equals_masked_full_sequence():
    from score_lit.config import MLLMConfig
    from score_lit.lmms.hooks import ScoreHooks
    from score_lit.mllm.qwen_vl import Qwen25VLAdapter

    adapter = Qwen25VLAdapter(MLLMConfig())  # tiny random Qwen2.5-VL (real transformers class)
    model = adapter.model
    frames = torch.randint(0, 256, (1, 8, 3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ids, extra, p, v = _prompt_inputs(adapter, frames)
    chosen = torch.zeros(v, dtype=torch.bool)
    chosen[torch.randperm(v, generator=torch.Generator().manual_seed(1))[: v // 5]] = True
    seen = []

    def select(visual):
        assert visual.tokens.shape[:2] == (1, visual.grid[0]) and visual.num_tokens == v
        seen.append(visual.tokens.clone())
        return chosen[None]

    hooks = ScoreHooks(model, select).attach()
    gen = dict(max_new_tokens=4, do_sample=False, output_logits=True, return_dict_in_generate=True)
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **gen, **extra)
    hooks.remove()
    assert len(seen) == 1 and torch.equal(hooks.last_keep[0], chosen)
    # The hook saw the projector output, in VisualTokens layout.
    vis = model.model.get_video_features(extra["pixel_values_videos"], extra["video_grid_thw"]).pooler_output
    assert torch.allclose(seen[0].reshape(v, -1), torch.cat(list(vis)), atol=1e-6)

    # Reference: the stock forward on the full sequence, dropped video tokens masked as keys, the model's own
    # full-sequence positions; greedy, one full forward per step.
    seq, ref = ids.clone(), []
    for _ in range(4):
        mm = (seq == adapter.video_token_id).long() * 2
        pos, _ = model.model.get_rope_index(seq, video_grid_thw=extra["video_grid_thw"], attention_mask=torch.ones_like(seq),
                                            second_per_grid_ts=extra["second_per_grid_ts"], mm_token_type_ids=mm)  # fmt: skip
        attn = torch.ones_like(seq)
        attn[0, p : p + v] = chosen.long()
        logits = model(input_ids=seq, attention_mask=attn, position_ids=pos, pixel_values_videos=extra["pixel_values_videos"],
                       video_grid_thw=extra["video_grid_thw"], mm_token_type_ids=mm).logits[0, -1]  # fmt: skip
        ref.append(logits)
        seq = torch.cat([seq, logits.argmax()[None, None]], dim=1)
    assert torch.equal(out.sequences, seq)
    for step, (a, b) in enumerate(zip(out.logits, ref)):
        assert torch.allclose(a[0], b, atol=1e-4), f"decode step {step}: max |diff| {float((a[0] - b).abs().max()):.2e}"

    # Removed hooks leave the stock model: the first generated step is the plain full-sequence forward's.
    plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **gen, **extra)
    full = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0, -1]
    assert torch.allclose(plain.logits[0][0], full, atol=1e-4)
    assert not torch.allclose(plain.logits[0][0], out.logits[0][0], atol=1e-3)  # pruning changed the prediction's logits


# ------------------------------------------------------------------------------------------------ lmms-eval CLI


@pytest.mark.lmms
def test_lmms_registry_entry_point_and_legacy_plugin(tmp_path):
    need_lmms()
    code = ("from lmms_eval.models import get_model, get_model_manifest; m = get_model_manifest('score_llava_onevision'); "
            "print(m.chat_class_path, m.simple_class_path, get_model('score_llava_onevision').__name__, "
            "get_model('score_llava_onevision', force_simple=True).__name__, "
            "get_model('score_qwen2_5_vl').__name__, get_model('score_qwen2_5_vl', force_simple=True).__name__)")  # fmt: skip
    py = str(LMMS_VENV / "bin/python")
    legacy_env = {**lmms_env(tmp_path), "LMMS_EVAL_PLUGINS": "score_lit.lmms"}
    # the entry point (pyproject) and the legacy plugin route, both at once (two processes on 2 cores); both
    # families (score_qwen2_5_vl, score_llava_onevision) through each
    procs = [subprocess.Popen([py, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for env in (lmms_env(tmp_path), legacy_env)]  # fmt: skip
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-3000:]
        assert stdout.split()[-6:] == [
            "score_lit.lmms.models.score_llava_onevision.ScoreLlavaOnevision",
            "score_lit.lmms.models.score_llava_onevision.ScoreLlavaOnevisionSimple",
            "ScoreLlavaOnevision", "ScoreLlavaOnevisionSimple", "ScoreQwen2_5_VL", "ScoreQwen2_5_VLSimple",
        ]  # fmt: skip


def _tiny_qwen_and_policy(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny RANDOM Qwen2.5-VL checkpoint and a RANDOM policy for it, built in seconds (no trained artifacts)."""
    from score_lit.checkpoint import save_policy
    from score_lit.config import MLLMConfig, PolicyConfig
    from score_lit.mllm.qwen_vl import Qwen25VLAdapter
    from score_lit.mllm.tiny import save_tiny
    from score_lit.policy import build_policy

    ckpt = save_tiny(tmp_path / "tiny-qwen2_5_vl", "qwen2_5_vl")
    identity = Qwen25VLAdapter(MLLMConfig(path=str(ckpt))).identity()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = build_policy(2 * identity["hidden_size"], PolicyConfig(hidden=16))
    return ckpt, save_policy(tmp_path / "policy.pt", policy, PolicyConfig(hidden=16), identity)


@pytest.mark.lmms
@pytest.mark.slow
@pytest.mark.parametrize("model", ["tiny_random", "trained_toy"])
def test_lmms_eval_cli_accuracy_equals_score_lit_eval(tmp_path, model):
    """tiny_random (runs in `make test`): a tiny random Qwen2.5-VL + random policy, the first 20 questions: the two
    paths count the same correct answers (near chance). trained_toy (`make test-lmms` trains what it needs; skipped
    without artifacts/toy-mllm and runs/stage2/policy.pt): the trained toy model + stage-2 policy, 100 questions,
    a non-trivial accuracy."""
    if model == "trained_toy":
        missing = [str(p.relative_to(ROOT)) for p in (TOY, POLICY) if not p.exists()]
        if missing:  # a skip even under REQUIRE_LMMS=1: `make test` does not train (the tiny_random case runs instead)
            pytest.skip(f"missing {missing}: `make test-lmms` makes them (copies the committed toy, trains stage 1 and 2)")
        need_lmms(BENCH)
        ckpt, pol, n_questions = TOY.relative_to(ROOT), POLICY.relative_to(ROOT), N_QUESTIONS
    else:
        need_lmms(BENCH)
        (ckpt, pol), n_questions = _tiny_qwen_and_policy(tmp_path), 20
    model_args = (f"pretrained={ckpt},policy={pol},retention_ratio={RATIO},"
                  "max_num_frames=16,frame_size=64,min_pixels=256,max_pixels=200704,device_map=cpu")  # fmt: skip
    cmd = [str(LMMS_VENV / "bin/lmms-eval"), "--model", "score_qwen2_5_vl", "--model_args", model_args,
           "--include_path", "tools/lmms/tasks", "--tasks", "score_toy", "--limit", str(n_questions),
           "--batch_size", "1", "--device", "cpu", "--force_simple", "--output_path", str(tmp_path / "lmms")]  # fmt: skip
    # --force_simple: lmms-eval 0.7.3 builds chat-message requests (generation only) for chat classes, so a
    # multiple_choice task needs the simple class, for the stock qwen2_5_vl as for ours.
    out = tmp_path / "score_lit"
    # The toy bench and the task's frames / size given explicitly: independent of conf/eval.yaml's default benchmark.
    sl_cmd = [sys.executable, "-m", "score_lit", "eval", "conf/eval.yaml", f"mllm.path={ckpt}", f"eval.limit={n_questions}",
              "eval.benchmark=toy", f"eval.root={BENCH.parent.relative_to(ROOT)}", "eval.frames=16", "eval.size=64",
              "eval.methods=[score]", f"eval.ratios=[{RATIO}]", f"eval.policy={pol}",
              "eval.batch_size=1", "mllm.dtype=bfloat16", "eval.viz_samples=0", f"eval.out_dir={out}",
              f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]  # fmt: skip
    # Both runs at once (two processes on 2 cores).
    logs = [tmp_path / "lmms-eval.out", tmp_path / "lmms-eval.err", tmp_path / "score_lit-eval.log"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=lmms_env(tmp_path), stdout=open(logs[0], "w"), stderr=open(logs[1], "w")),
             subprocess.Popen(sl_cmd, cwd=ROOT, stdout=open(logs[2], "w"), stderr=subprocess.STDOUT)]  # fmt: skip
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
    correct_sl = sum(round(float(r["accuracy"]) * int(r["n"])) for r in rows)  # per family: the 'all' row is a mean of families
    assert n == n_sl == n_questions
    assert round(acc * n) == correct_sl, f"lmms-eval acc {acc} ({round(acc * n)}/{n}) != score_lit eval {correct_sl}/{n}"
    if model == "trained_toy":
        assert 0 < correct_sl < n_sl  # a non-trivial accuracy, so the equality says something
