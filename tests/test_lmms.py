"""score_lit.lmms: SCORE-compressed models for lmms-eval (make test-lmms).

* ScoreHooks (no lmms-eval needed, default suite): `generate` on a hooked tiny Qwen2.5-VL equals, step by step,
  the stock forward on the FULL sequence with the dropped video tokens masked out as keys (same position ids).
* lmms-eval's real CLI (marker `lmms`, needs .venv-lmms from tools/lmms/setup_venv.sh; `make test` builds it and
  sets REQUIRE_LMMS=1, so there a missing venv fails; plain pytest skips without it):
  `lmms-eval --model score_qwen2_5_vl ... --tasks score_toy` prints the same accuracy as `python -m score_lit eval`
  on the same questions at the same retention ratio (equal counts, not approximately), on a tiny random checkpoint
  (always) and on the trained toy model (when artifacts/toy-mllm and runs/first-toy-stage2/policy.pt exist: make test-lmms).
  The stock wrapper loads the model in bfloat16 (lmms-eval hard-codes it), so score_lit eval runs with
  mllm.dtype=bfloat16; min/max_pixels are passed so both use score_lit's pixel budget (the stock defaults would
  upsample the 64 px toy frames to 200k pixels).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from helpers import lmms_env, need_lmms

ROOT = Path(__file__).resolve().parents[1]
LMMS_VENV = ROOT / ".venv-lmms"


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
    extra = dict(
        pixel_values_videos=pixels,
        video_grid_thw=grid_thw,
        mm_token_type_ids=mm,
        second_per_grid_ts=torch.tensor([0.5]),
    )
    return ids, extra, len(pre), v


def test_hooks_generate_equals_masked_full_sequence():
    from score_lit.config import MLLMConfig
    from score_lit.inference.hooks import ScoreHooks
    from score_lit.mllm.qwen_vl import Qwen25VLAdapter

    adapter = Qwen25VLAdapter(MLLMConfig())  # tiny random Qwen2.5-VL (real transformers class)
    model = adapter.model
    frames = torch.randint(0, 256, (1, 8, 3, 64, 64), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ids, extra, p, v = _prompt_inputs(adapter, frames)
    chosen = torch.zeros(v, dtype=torch.bool)
    chosen[torch.randperm(v, generator=torch.Generator().manual_seed(1))[: v // 5]] = True
    seen = []

    def select(visual, rows):
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
        pos, _ = model.model.get_rope_index(
            seq,
            video_grid_thw=extra["video_grid_thw"],
            attention_mask=torch.ones_like(seq),
            second_per_grid_ts=extra["second_per_grid_ts"],
            mm_token_type_ids=mm,
        )
        attn = torch.ones_like(seq)
        attn[0, p : p + v] = chosen.long()
        logits = model(
            input_ids=seq,
            attention_mask=attn,
            position_ids=pos,
            pixel_values_videos=extra["pixel_values_videos"],
            video_grid_thw=extra["video_grid_thw"],
            mm_token_type_ids=mm,
        ).logits[0, -1]
        ref.append(logits)
        seq = torch.cat([seq, logits.argmax()[None, None]], dim=1)
    assert torch.equal(out.sequences, seq)
    for step, (a, b) in enumerate(zip(out.logits, ref)):
        assert torch.allclose(a[0], b, atol=1e-4), f"decode step {step}: max |diff| {float((a[0] - b).abs().max()):.2e}"

    # Removed hooks leave the stock model: the first generated step is the plain full-sequence forward's.
    plain = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **gen, **extra)
    full = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0, -1]
    assert torch.allclose(plain.logits[0][0], full, atol=1e-4)
    assert not torch.allclose(
        plain.logits[0][0], out.logits[0][0], atol=1e-3
    )  # pruning changed the prediction's logits


# ------------------------------------------------------------------------------------------------ lmms-eval CLI


@pytest.mark.lmms
def test_lmms_registry_entry_point_and_legacy_plugin(tmp_path):
    need_lmms()
    code = (
        "from lmms_eval.models import get_model, get_model_manifest; m = get_model_manifest('score_llava_onevision'); "
        "print(m.chat_class_path, m.simple_class_path, get_model('score_llava_onevision').__name__, "
        "get_model('score_llava_onevision', force_simple=True).__name__, "
        "get_model('score_qwen2_5_vl').__name__, get_model('score_qwen2_5_vl', force_simple=True).__name__, "
        "get_model('score_qwen3_vl').__name__, get_model('score_qwen3_vl', force_simple=True).__name__, "
        "get_model('score_qwen3_5').__name__, get_model('score_qwen3_5', force_simple=True).__name__)"
    )
    py = str(LMMS_VENV / "bin/python")
    legacy_env = {**lmms_env(tmp_path), "LMMS_EVAL_PLUGINS": "score_lit.lmms"}
    # the entry point (pyproject) and the legacy plugin route, both at once (two processes on 2 cores); both
    # families (score_qwen2_5_vl, score_llava_onevision, score_qwen3_vl, score_qwen3_5) through each
    procs = [
        subprocess.Popen([py, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for env in (lmms_env(tmp_path), legacy_env)
    ]
    for p in procs:
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, stderr[-3000:]
        assert stdout.split()[-10:] == [
            "score_lit.lmms.models.score_llava_onevision.ScoreLlavaOnevision",
            "score_lit.lmms.models.score_llava_onevision.ScoreLlavaOnevisionSimple",
            "ScoreLlavaOnevision",
            "ScoreLlavaOnevisionSimple",
            "ScoreQwen2_5_VL",
            "ScoreQwen2_5_VLSimple",
            "ScoreQwen3_VL",
            "ScoreQwen3_VLSimple",
            "ScoreQwen3_5",
            "ScoreQwen3_5Simple",
        ]


def test_generate_until_groups_equal_generation_arguments_wherever_they_are():
    from score_lit.lmms.generate import generate_calls

    short, long, seeded = {"max_new_tokens": 8}, {"max_new_tokens": 64, "until": ["\n"]}, {"temperature": 0.7}
    kwargs = [short, long, short, dict(short), long, seeded, short, {"until": ["\n"], "max_new_tokens": 64}]
    assert generate_calls(kwargs, 2) == [[0, 2], [3, 6], [1, 4], [7], [5]]  # key order does not split a group
    assert generate_calls(kwargs, 1) == [[0], [2], [3], [6], [1], [4], [7], [5]]
    assert generate_calls([], 4) == []
