"""score_lit.mllm.sequence: the batched layout's position rule by hand, and one layout reused across `score` calls."""

from __future__ import annotations

import numpy as np
import torch

from score_lit.config import MLLMConfig
from score_lit.data.common import Sample, collate
from score_lit.mllm.positions import sequence_positions as one_sequence
from score_lit.mllm.qwen_vl import Qwen25VLAdapter
from score_lit.mllm.sequence import sequence_positions
from score_lit.types import VisualTokens


def test_batched_positions_by_hand():
    """Two rows: pre 2 | a 1x2x2 video (M-RoPE t, h, w) | 3 text, and pre 1 | the same video | 1 text | 2 pads."""
    video = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]])  # [3, 4] (t, h, w) relative to the video start
    pos = sequence_positions(
        torch.tensor([2, 1]), video.expand(2, -1, -1), torch.tensor([4, 4]), torch.tensor([9, 6]), 9
    )
    assert pos[0].tolist() == [[0, 1, 2, 2, 2, 2, 4, 5, 6], [0, 1, 2, 2, 3, 3, 4, 5, 6], [0, 1, 2, 3, 2, 3, 4, 5, 6]]
    assert pos[1].tolist() == [[0, 1, 1, 1, 1, 3, 0, 0, 0], [0, 1, 1, 2, 2, 3, 0, 0, 0], [0, 1, 2, 1, 2, 3, 0, 0, 0]]
    # the one-sequence form (positions.sequence_positions, what the tests of the Qwen rule check) agrees
    assert torch.equal(pos[0], one_sequence(2, video, 3))
    # 1-D ids (LLaVA): the slot index, the suffix and text after the video continuing it
    one_d = sequence_positions(
        torch.tensor([3]), torch.arange(5)[None, None], torch.tensor([5]), torch.tensor([11]), 11
    )
    assert one_d[0, 0].tolist() == list(range(11))


def test_one_layout_serves_every_score_of_a_batch():
    """score(..., layout=adapter.layout(visual, prompts)) equals score without it, for another mask and for merged
    token values (a merging compressor's visual tokens, same positions)."""
    adapter = Qwen25VLAdapter(MLLMConfig())
    rng = np.random.default_rng(0)
    qs = ["which digit appeared ?", "what colour was the first object in the video ?"]
    batch = collate(
        [
            Sample(f"s{i}", rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8), q, "3", ["3", "5"])
            for i, q in enumerate(qs)
        ]
    )
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    layout = adapter.layout(visual, prompts)
    masks = torch.rand(2, 3, visual.num_tokens, generator=torch.Generator().manual_seed(0)) < 0.4
    merged = VisualTokens(visual.tokens.flip(1), visual.grid, visual.positions)  # other values at the same slots
    for vis in (visual, merged):
        a, b = adapter.score(vis, prompts, masks), adapter.score(vis, prompts, masks, layout=layout)
        assert torch.equal(a.ce, b.ce) and torch.equal(a.option_logits, b.option_logits)
    assert not torch.equal(adapter.score(merged, prompts, masks).ce, adapter.score(visual, prompts, masks).ce)
