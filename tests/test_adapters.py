"""What every adapter family must do the same way (score_lit.mllm.adapter.VideoMLLM), one parametrised test per
property over every registered family (LLaVA-OneVision in both position-id modes). The per-family equivalences
against each stock model are in tests/test_qwen_adapter.py and tests/test_llava_adapter.py."""

import pytest
from helpers import make_batch, make_masks, select

from score_lit.config import MLLMConfig
from score_lit.mllm import REGISTRY, build_mllm

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
