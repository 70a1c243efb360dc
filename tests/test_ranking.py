"""Rank once, cut per ratio: for every top-k method (score global and per frame, surprise, random, fastv),
select(visual, r) == keep_top(rank(visual), r) == a plain-Python reference of the old selection rule (the
k = ceil(r L) highest scores, ties to the earlier token) at several ratios, ties included; the methods that
choose per ratio say so (ranks = False)."""

import math

import pytest
import torch
from test_qwen_adapter import make_batch

from score_lit.compressors import build_compressor, keep_top, ranks
from score_lit.compressors.fastv import FastV
from score_lit.compressors.score import ScoreCompressor
from score_lit.compressors.simple import RandomTokens
from score_lit.compressors.surprise import SurpriseTopK, surprise_scores
from score_lit.config import MLLMConfig, PolicyConfig
from score_lit.mllm import build_mllm
from score_lit.mllm.sequence import PromptBatch
from score_lit.rl.policy import build_policy
from score_lit.types import VisualTokens

RATIOS = (1.0, 0.5, 0.3, 0.25, 0.1, 0.05)


def vt(x, grid):
    b, t, n, _ = x.shape
    return VisualTokens(tokens=x, grid=grid, positions=torch.zeros(b, 3, t * n, dtype=torch.long))


def reference_keep(scores: list[float], k: int) -> set[int]:
    """The k highest, ties to the earlier index: sorted by (-score, index)."""
    return set(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k])


def reference(scores: torch.Tensor, ratio: float, grid, per_frame=False) -> list[set[int]]:
    """Per row, the kept indices of the old select: k = ceil(r L) over the row, or ceil(r N) per unit."""
    t = grid[0]
    out = []
    for row in scores.tolist():
        if not per_frame:
            out.append(reference_keep(row, max(1, math.ceil(ratio * len(row) - 1e-9))))
            continue
        n = len(row) // t
        k = max(1, math.ceil(ratio * n - 1e-9))
        out.append({u * n + i for u in range(t) for i in reference_keep(row[u * n : (u + 1) * n], k)})
    return out


def kept(mask: torch.Tensor) -> list[set[int]]:
    return [set(row.nonzero().squeeze(-1).tolist()) for row in mask]


def _video():
    """B=2, T=4, N=4, D=3: row 0 random, row 1 static from unit 1 on (surprise ties: residuals 0 in units 2, 3)."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 4, 3)
    x[1, 1:] = x[1, 1]
    return vt(x, (4, 2, 2))


def _policy():
    torch.manual_seed(1)
    pol = build_policy(6, PolicyConfig(name="mlp", hidden=4))
    with torch.no_grad():
        for p in pol.parameters():
            p.normal_()
    return pol


@pytest.mark.parametrize("name", ["score", "score_per_frame", "surprise", "surprise_self", "random"])
def test_select_is_the_shared_cut_of_the_ranking_and_the_old_rule(name):
    v = _video()
    comp = {
        "score": lambda: ScoreCompressor(_policy()),
        "score_per_frame": lambda: ScoreCompressor(_policy(), selection="per_frame"),
        "surprise": lambda: SurpriseTopK(),
        "surprise_self": lambda: SurpriseTopK("self"),
        "random": lambda: RandomTokens(seed=3),
    }[name]()
    assert ranks(comp)
    scores = comp.rank(v)
    assert scores.shape == (2, 16) and scores.dtype == torch.float32
    prompts = None
    if name == "random":  # without ids: one generator seeded once with the seed, advancing across calls
        assert torch.equal(scores, torch.rand(2, 16, generator=torch.Generator().manual_seed(3)))
        assert not torch.equal(comp.rank(v), scores)
        # with ids: each question's own generator, the same scores at every call
        prompts = PromptBatch([[1]] * 2, [[2]] * 2, [0] * 2, [1] * 2, torch.zeros(2, 0).long(), sample_ids=["a", "b"])
        scores = comp.rank(v, prompts)
        assert torch.equal(comp.rank(v, prompts), scores)
    if name.startswith("surprise"):
        assert torch.equal(scores, surprise_scores(v.tokens, comp.first_unit).reshape(2, 16))
        assert (scores[1, 8:] == 0).all() and (scores[1, :8] > 0).all()  # ties: units 2 and 3 repeat unit 1
    for r in RATIOS:
        want = reference(scores, r, v.grid, per_frame=comp.per_frame)
        assert kept(keep_top(scores, r, v.grid, comp.per_frame)) == want, (name, r)
        assert kept(comp.select(v, r, prompts).keep) == want, (name, r)
    if name.startswith("surprise"):  # row 1 at k = 10: units 0 and 1 (8 changes), then the tied zeros' earliest two
        assert kept(comp.select(v, 10 / 16).keep)[1] == set(range(10))


def test_fastv_ranks_once_and_cuts_like_its_select():
    adapter = build_mllm(MLLMConfig(family="qwen2_vl"))  # tiny: 2 decoder layers
    batch = make_batch()
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    comp = build_compressor("fastv", mllm=adapter, layer=1)
    assert isinstance(comp, FastV) and ranks(comp) and comp.needs_prompts
    scores = comp.rank(visual, prompts)
    assert torch.equal(scores, adapter.video_attention(visual, prompts, 1))
    for r in RATIOS:
        want = reference(scores, r, visual.grid)
        assert kept(keep_top(scores, r, visual.grid)) == want == kept(comp.select(visual, r, prompts).keep), r
    with pytest.raises(ValueError, match="needs the tokenized prompts"):
        comp.rank(visual)


def test_structural_and_merging_methods_select_per_ratio():
    for name in ("uniform", "pool", "visionzip", "dycoke"):
        comp = build_compressor(name)
        assert not ranks(comp) and not hasattr(comp, "rank"), name
