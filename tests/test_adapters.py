"""What every adapter family must do the same way (score_lit.mllm.adapter.VideoMLLM), one parametrised test per
property over every registered family (LLaVA-OneVision in both position-id modes). The per-family equivalences
against each stock model are in tests/test_qwen_adapter.py and tests/test_llava_adapter.py."""

import pytest
from helpers import make_batch, make_masks, select

from score_lit.config import MLLMConfig
from score_lit.evaluation.sweep import prompt_text_tokens
from score_lit.mllm import REGISTRY, build_mllm
from score_lit.mllm.sequence import PAD, VIDEO

VARIANTS = [(f, "original") for f in REGISTRY] + [
    (f, "compacted") for f in REGISTRY if "compacted" in REGISTRY[f].position_ids
]


@pytest.mark.parametrize("family,position_ids", VARIANTS, ids=[f"{f}-{p}" for f, p in VARIANTS])
def test_batched_rows_equal_single_rows(family, position_ids):
    # B=2 samples with different question lengths, K=3 masks with different keep counts, one padded batch, versus
    # every (sample, rollout) row scored alone (no padding at all).
    adapter = build_mllm(MLLMConfig(family=family, position_ids=position_ids))
    shape = dict(f=4, size=48) if family == "llava_onevision" else {}  # LLaVA frames are resized to its tower anyway
    sec = [0.5, 1.0] if family in ("qwen2_5_vl", "qwen3_vl", "qwen3_5") else None  # per-sample time scale or timestamps
    batch = make_batch(seed=1, seconds_per_frame=sec, **shape)
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    masks = make_masks(2, 3, visual.num_tokens, seed=1)
    assert len({int(c) for c in masks.sum(-1).flatten()}) >= 4 and len(set(map(len, prompts.post_ids))) == 2
    got = adapter.score(visual, prompts, masks)
    diffs = []
    for i in range(2):
        one = select(batch, i)
        v1, p1 = adapter.encode(one), adapter.tokenize(one)
        for j in range(3):
            alone = adapter.score(v1, p1, masks[i : i + 1, j : j + 1])
            diffs.append((alone.ce[0, 0] - got.ce[i, j]).abs().item())
            diffs.append((alone.option_logits[0, 0] - got.option_logits[i, j]).abs().max().item())
    print(f"\n{family} {position_ids} batched vs alone: max diff {max(diffs):.2e}")
    assert max(diffs) < 1e-5


@pytest.mark.parametrize("family", list(REGISTRY))
def test_flops_text_tokens_are_the_non_video_slots_up_to_the_answer(family):
    # The sweep's FLOPs count L_text + kept: L_text must be every non-video token of the real LLM input up to the
    # answer, the tokens the adapter adds with the video included (LLaVA's newline, Qwen3's timestamps).
    adapter = build_mllm(MLLMConfig(family=family))
    shape = dict(f=4, size=48) if family == "llava_onevision" else {}
    batch = make_batch(seed=1, seconds_per_frame=[0.5, 1.0] if family in ("qwen3_vl", "qwen3_5") else None, **shape)
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    assert prompts.sample_ids == batch.ids
    text = prompt_text_tokens(prompts, adapter.layout(visual, prompts))
    upto = adapter.layout(visual, prompts, prompts.answer_start)  # the sequence up to the answer
    real = ((upto.kind != PAD) & (upto.kind != VIDEO)).sum(-1).tolist()
    assert text == real
    assert ((upto.kind == VIDEO).sum(-1) == visual.num_tokens).all()
    prompt = [len(p) + s for p, s in zip(prompts.pre_ids, prompts.answer_start)]
    if family == "llava_onevision":  # + the one image_newline after the video
        assert [t - p for t, p in zip(text, prompt)] == [1, 1]
    if family in ("qwen2_vl", "qwen2_5_vl"):  # vision start / end are in the prompt text: nothing added
        assert text == prompt
