"""score_lit.lmms: SCORE-compressed models for lmms-eval (make test-lmms).

* ScoreHooks (no lmms-eval needed, default suite): `generate` on a hooked tiny Qwen2.5-VL equals, step by step,
  the stock forward on the FULL sequence with the dropped video tokens masked out as keys (same position ids).
* lmms-eval's real CLI (marker `lmms`, needs .venv-lmms from tools/lmms/setup_venv.sh, skipped without it):
  `lmms-eval --model score_qwen2_5_vl ... --tasks score_toy` on the toy model prints the same accuracy as
  `python -m score_lit eval` on the same questions at the same retention ratio (equal counts, not approximately).
  The stock wrapper loads the model in bfloat16 (lmms-eval hard-codes it), so score_lit eval runs with
  mllm.dtype=bfloat16; min/max_pixels are passed so both use score_lit's pixel budget (the stock defaults would
  upsample the 64 px toy frames to 200k pixels).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def _need_lmms():
    if not (LMMS_VENV / "bin/lmms-eval").is_file():
        pytest.skip("no .venv-lmms: `make test-lmms` (or tools/lmms/setup_venv.sh) creates it")
    missing = [str(p.relative_to(ROOT)) for p in (TOY, BENCH, POLICY) if not p.exists()]
    if missing:
        pytest.skip(f"missing {missing}: make toy-mllm, make eval's export and make train-stage2 build them")


def _env(tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LMMS_EVAL_PLUGINS", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"))
    return env


@pytest.mark.lmms
def test_lmms_registry_entry_point_and_legacy_plugin(tmp_path):
    _need_lmms()
    code = ("from lmms_eval.models import get_model; "
            "print(get_model('score_qwen2_5_vl').__name__, get_model('score_qwen2_5_vl', force_simple=True).__name__)")  # fmt: skip
    py = str(LMMS_VENV / "bin/python")
    out = subprocess.run([py, "-c", code], cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-2:] == ["ScoreQwen2_5_VL", "ScoreQwen2_5_VLSimple"]  # the entry point (pyproject)
    legacy_env = {**_env(tmp_path), "LMMS_EVAL_PLUGINS": "score_lit.lmms"}
    legacy = subprocess.run([py, "-c", code], cwd=ROOT, env=legacy_env, capture_output=True, text=True, timeout=120)
    assert legacy.returncode == 0, legacy.stderr[-3000:]
    assert legacy.stdout.split()[-2:] == ["ScoreQwen2_5_VL", "ScoreQwen2_5_VLSimple"]  # the legacy route agrees


@pytest.mark.lmms
@pytest.mark.slow
def test_lmms_eval_cli_accuracy_equals_score_lit_eval(tmp_path):
    _need_lmms()
    model_args = (f"pretrained={TOY.relative_to(ROOT)},policy={POLICY.relative_to(ROOT)},retention_ratio={RATIO},"
                  "max_num_frames=16,frame_size=64,min_pixels=256,max_pixels=200704,device_map=cpu")  # fmt: skip
    cmd = [str(LMMS_VENV / "bin/lmms-eval"), "--model", "score_qwen2_5_vl", "--model_args", model_args,
           "--include_path", "tools/lmms/tasks", "--tasks", "score_toy", "--limit", str(N_QUESTIONS),
           "--batch_size", "1", "--device", "cpu", "--force_simple", "--output_path", str(tmp_path / "lmms")]  # fmt: skip
    # --force_simple: lmms-eval 0.7.3 builds chat-message requests (generation only) for chat classes, so a
    # multiple_choice task needs the simple class, for the stock qwen2_5_vl as for ours.
    run = subprocess.run(cmd, cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    log = run.stdout + run.stderr
    assert run.returncode == 0 and "Error during evaluation" not in log, log[-5000:]  # lmms-eval exits 0 on errors
    files = sorted((tmp_path / "lmms").rglob("*_results.json"))
    assert files, f"no results json under {tmp_path / 'lmms'}:\n{log[-3000:]}"
    res = json.loads(files[-1].read_text())
    acc = res["results"]["score_toy"]["acc,none"]
    n = res["n-samples"]["score_toy"]["effective"]
    printed = re.search(r"^\|score_toy\s*\|none\s*\|\s*0\|acc\s*\|.\s*\|\s*([0-9.]+)\|", run.stdout, re.M)
    assert printed and float(printed.group(1)) == pytest.approx(acc, abs=5e-5), run.stdout[-2000:]

    out = tmp_path / "score_lit"
    sl = subprocess.run([sys.executable, "-m", "score_lit", "eval", "conf/eval.yaml", f"eval.limit={N_QUESTIONS}",
                         "eval.methods=[score]", f"eval.ratios=[{RATIO}]", f"eval.policy={POLICY.relative_to(ROOT)}",
                         "eval.batch_size=1", "mllm.dtype=bfloat16", "eval.viz_samples=0", f"eval.out_dir={out}",
                         f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"],
                        cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert sl.returncode == 0, (sl.stdout + sl.stderr)[-5000:]
    rows = [r for r in csv.DictReader(open(out / "results.csv")) if r["method"] == "score" and r["family"] != "all"]
    n_sl = sum(int(r["n"]) for r in rows)
    correct_sl = sum(round(float(r["accuracy"]) * int(r["n"])) for r in rows)  # per family: the 'all' row is a mean of families
    assert n == n_sl == N_QUESTIONS
    assert round(acc * n) == correct_sl, f"lmms-eval acc {acc} ({round(acc * n)}/{n}) != score_lit eval {correct_sl}/{n}"
    assert 0 < correct_sl < n_sl  # a non-trivial accuracy, so the equality says something
