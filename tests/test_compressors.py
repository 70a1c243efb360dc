"""Compressors on hand-built videos (T=4, H'=W'=2, D=3 unless said): masks and merged values written out by hand."""

import hashlib
import math

import pytest
import torch

from score_lit.compressors import REGISTRY, apply_selection, build_compressor
from score_lit.compressors.dycoke import DyCoke, ttm_similarity
from score_lit.compressors.score import ScoreCompressor
from score_lit.compressors.simple import RandomTokens, SpatialPool, UniformFrames
from score_lit.compressors.surprise import SurpriseTopK
from score_lit.compressors.visionzip import VisionZip
from score_lit.config import PolicyConfig, keep_count
from score_lit.mllm.sequence import PromptBatch
from score_lit.rl.policy import build_policy, topk_mask
from score_lit.rl.state import surprise_state
from score_lit.training.checkpoint import save_policy
from score_lit.types import VisualTokens

IDENT = {"family": "qwen2_5_vl", "hidden_size": 3, "path": "tiny-random"}


class FakeMLLM:
    def __init__(self, ident=IDENT):
        self.ident = ident

    def identity(self):
        return dict(self.ident)


def vt(x, grid=None):
    """x [B, T, N, D] (or [T, N, D]) -> VisualTokens with a 2x2 grid by default."""
    x = x if x.dim() == 4 else x[None]
    b, t, n, _ = x.shape
    grid = grid or (t, 2, n // 2)
    return VisualTokens(tokens=x, grid=grid, positions=torch.zeros(b, 3, t * n, dtype=torch.long))


def kept(sel, b=0):
    return set(sel.keep[b].nonzero().squeeze(-1).tolist())


def _policy(seed=0):
    torch.manual_seed(seed)
    pol = build_policy(6, PolicyConfig(name="mlp", hidden=4))
    with torch.no_grad():
        for p in pol.parameters():
            p.normal_()  # distinct logits, no ties
    return pol


def _all():
    policy = ScoreCompressor(_policy())
    return [UniformFrames(), SpatialPool(), RandomTokens(seed=1), SurpriseTopK(), VisionZip(), DyCoke(), policy]


# ---- shared contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 1.0])
def test_every_method_returns_bool_masks_of_the_documented_size(ratio):
    torch.manual_seed(0)
    v = vt(torch.randn(2, 4, 4, 3))
    k = keep_count(ratio, 16)
    for comp in _all():
        sel = comp.select(v, ratio)
        assert sel.keep.dtype == torch.bool and sel.keep.shape == (2, 16), comp.name
        assert sel.tokens is None or sel.tokens.shape == (2, 16, 3), comp.name
        counts = sel.keep.sum(-1).tolist()
        if comp.name == "uniform":  # whole units: max(1, round(k / N)) of them
            assert counts == [4 * max(1, math.floor(k / 4 + 0.5))] * 2
        elif comp.name == "pool":  # 2 tokens at 10% is below one per unit: T = 4 (documented excess)
            assert counts == [{2: 4, 4: 4, 8: 4, 16: 16}[k]] * 2
        else:
            assert counts == [k, k], comp.name
        assert not comp.needs_prompts


def test_build_compressor_builds_every_registered_method(tmp_path):
    path = save_policy(tmp_path / "policy.pt", _policy(), PolicyConfig(name="mlp", hidden=4), IDENT)
    kw = dict(mllm=FakeMLLM(), policy_path=path, selection="per_frame", seed=3, layer=2)  # the shared context
    v = vt(torch.randn(1, 4, 4, 3))
    for name in sorted(set(REGISTRY) - {"fastv"}):
        if name.startswith("score_prevision"):  # it runs the vision tower itself: tests/test_prevision.py
            with pytest.raises(ValueError, match="global top-k only"):
                build_compressor(name, **kw)
            continue
        comp = build_compressor(name, **kw)
        assert comp.name == name
        assert comp.select(v, 0.5).keep.shape == (1, 16)
    assert build_compressor("random", seed=3).seed == 3
    assert build_compressor("score", **kw).selection == "per_frame"
    with pytest.raises(ValueError, match=r"build_compressor\('score'\): unknown argument\(s\) \['selction'\]"):
        build_compressor("score", policy_path=path, selction="per_frame")  # a misspelling is not silently dropped


# ---- uniform / pool / random ---------------------------------------------------------------------


def test_uniform_picks_segment_centres():
    v = vt(torch.randn(1, 4, 4, 3))
    assert kept(UniformFrames().select(v, 0.5)) == set(range(4, 8)) | set(range(12, 16))  # u=2: units 1, 3
    assert kept(UniformFrames().select(v, 0.25)) == set(range(8, 12))  # u=1: unit 2
    assert kept(UniformFrames().select(v, 0.05)) == set(range(8, 12))  # k=1 < N: one whole unit (over budget)
    assert UniformFrames.units(8, 24, 8) == [1, 4, 6]


def test_pool_window_means_sit_at_the_top_left_slot():
    # one unit, 3x3 grid, k = 4 -> s = 2, windows {0,1,3,4} {2,5} {6,7} {8} at slots 0, 2, 6, 8
    x = torch.arange(27, dtype=torch.float32).reshape(1, 1, 9, 3)
    v = vt(x, grid=(1, 3, 3))
    sel = SpatialPool().select(v, 4 / 9)
    assert kept(sel) == {0, 2, 6, 8}
    f = x[0, 0]
    for slot, group in {0: [0, 1, 3, 4], 2: [2, 5], 6: [6, 7], 8: [8]}.items():
        torch.testing.assert_close(sel.tokens[0, slot], f[group].mean(0))
    merged, keep = apply_selection(v, sel)
    assert keep.shape == (1, 1, 9) and merged.tokens.shape == (1, 1, 9, 3) and merged.grid == v.grid
    torch.testing.assert_close(merged.tokens[0, 0, 0], f[[0, 1, 3, 4]].mean(0))
    # 4 units, 2x2 grid, k = 4: s = 2, one mean per unit at slot t*4
    y = torch.randn(1, 4, 4, 3)
    sel = SpatialPool().select(vt(y), 0.25)
    assert kept(sel) == {0, 4, 8, 12}
    torch.testing.assert_close(sel.tokens[0, 8], y[0, 2].mean(0))


def test_random_is_seed_reproducible():
    v = vt(torch.randn(2, 4, 4, 3))
    a, b = RandomTokens(seed=0).select(v, 0.25).keep, RandomTokens(seed=0).select(v, 0.25).keep
    assert torch.equal(a, b)
    assert not torch.equal(a, RandomTokens(seed=1).select(v, 0.25).keep)
    assert not torch.equal(a[0], a[1])  # samples of a batch differ


def _prompts(ids):
    """A PromptBatch of len(ids) one-token prompts carrying the sample ids."""
    n = len(ids)
    return PromptBatch([[1]] * n, [[2]] * n, [0] * n, [1] * n, torch.zeros(n, 0, dtype=torch.long), sample_ids=ids)


def test_random_masks_differ_across_batches_and_follow_the_question():
    # The sweep ranks once per batch: row j of every batch must not get the same mask (the old generator, reseeded
    # at every call, gave 8 masks to a whole benchmark at batch size 8).
    v4, v2 = vt(torch.randn(4, 4, 4, 3)), vt(torch.randn(2, 4, 4, 3))
    comp = RandomTokens(seed=3)
    first, second = comp.rank(v4, _prompts(["a", "b", "c", "d"])), comp.rank(v4, _prompts(["e", "f", "g", "h"]))
    for j in range(4):
        assert not torch.equal(first[j], second[j]), j
    # A question's scores are its own generator's, seeded from SHA-256("3:c")'s first 63 bits: the same in another
    # run, in another batch, at another batch size (a resumed sweep's batches hold other questions).
    seed_c = int.from_bytes(hashlib.sha256(b"3:c").digest()[:8], "big") >> 1
    want = torch.rand(16, generator=torch.Generator().manual_seed(seed_c))
    assert torch.equal(first[2], want)
    assert torch.equal(RandomTokens(seed=3).rank(v2, _prompts(["c", "z"]))[0], want)
    assert torch.equal(RandomTokens(seed=3).rank(vt(torch.randn(1, 4, 4, 3)), _prompts(["c"]))[0], want)
    assert torch.equal(comp.rank(v4, _prompts(["a", "b", "c", "d"])), first)  # calls in between change nothing
    assert not torch.equal(RandomTokens(seed=4).rank(v2, _prompts(["c", "z"]))[0], want)
    # the masks at 25 %: the top 4 of the same scores, so the same for "c" wherever it is
    keep = RandomTokens(seed=3).select(v2, 0.25, _prompts(["z", "c"])).keep
    assert torch.equal(keep[1], comp.select(v4, 0.25, _prompts(["a", "b", "c", "d"])).keep[2])
    assert int(keep[1].sum()) == 4


# ---- surprise ---------------------------------------------------------------------------------------


def _first_unit_video(differs: bool):
    """Units 1..3 static b = [10, 0, 0]; unit 0 = b + [d_i, 0, 0] with d = [1, 3, 2, 4] (or = b)."""
    x = torch.zeros(4, 4, 3)
    x[..., 0] = 10.0
    if differs:
        x[0, :, 0] += torch.tensor([1.0, 3.0, 2.0, 4.0])
    return vt(x)


def test_surprise_ranks_the_changing_token_first():
    x = torch.zeros(4, 4, 3)
    x[..., 0] = 10.0
    x[2:, 1, 1] = 5.0  # token 1 changes in unit 2 and stays
    for rule in ("next", "zero"):
        assert kept(SurpriseTopK(rule).select(vt(x), 1 / 16)) == {2 * 4 + 1}
    assert kept(SurpriseTopK("self").select(vt(x), 1 / 16)) == {0}  # ||x_0|| = 10 > 5: unit 0 eats the budget


@pytest.mark.parametrize(
    "rule,differs,k,expected",
    [
        ("next", True, 4, {3, 7, 1, 5}),  # ||x0 - x1|| ties with unit 1's change; the earlier wins
        ("next", True, 2, {3, 7}),
        ("self", True, 4, {0, 1, 2, 3}),
        ("zero", True, 4, {4, 5, 6, 7}),
        ("zero", True, 2, {7, 5}),
        ("next", False, 4, {0, 1, 2, 3}),  # static: all ties, earliest first
        ("self", False, 4, {0, 1, 2, 3}),
        ("zero", False, 4, {4, 5, 6, 7}),
    ],
)
def test_surprise_first_unit_rules(rule, differs, k, expected):
    assert kept(SurpriseTopK(rule).select(_first_unit_video(differs), k / 16)) == expected


def test_surprise_rejects_unknown_rule():
    with pytest.raises(ValueError, match="first_unit"):
        SurpriseTopK("first")


# ---- visionzip --------------------------------------------------------------------------------------


def test_visionzip_dominant_by_norm_and_contextual_group_means():
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(16, 3)
    a = [0, 1, 2, 3, 4, 6, 7]  # group of centre 0: along e_x
    c = [8, 9, 11, 12, 13, 14, 15]  # group of centre 8: along e_z
    x[a] = torch.tensor([2.0, 0.0, 0.0]) + 0.1 * torch.rand(7, 3, generator=g)
    x[c] = torch.tensor([0.0, 0.0, 2.0]) + 0.1 * torch.rand(7, 3, generator=g)
    x[5], x[10] = torch.tensor([100.0, 0.0, 0.0]), torch.tensor([0.0, 100.0, 0.0])  # dominant
    # k = 4, share 0.5: k_d = 2 -> {5, 10}; remaining M = 14, step 7 -> centres rest[0] = 0, rest[7] = 8
    sel = VisionZip(dominant_share=0.5).select(vt(x.reshape(4, 4, 3)), 0.25)
    assert kept(sel) == {5, 10, 0, 8}
    torch.testing.assert_close(sel.tokens[0, 0], x[a].mean(0))
    torch.testing.assert_close(sel.tokens[0, 8], x[c].mean(0))
    torch.testing.assert_close(sel.tokens[0, 5], x[5])


def test_visionzip_default_share_keeps_the_largest_norms():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 5, 3)
    sel = VisionZip().select(vt(x, grid=(4, 1, 5)), 0.5)  # k = 10, k_d = round(8.5) = 9, k_c = 1
    top = set(x.reshape(20, 3).norm(dim=-1).topk(9).indices.tolist())
    assert top <= kept(sel) and len(kept(sel)) == 10
    # the single contextual token carries the mean of all 11 non-dominant tokens
    (ctx,) = kept(sel) - top
    rest = sorted(set(range(20)) - top)
    assert ctx == rest[0]
    torch.testing.assert_close(sel.tokens[0, ctx], x.reshape(20, 3)[rest].mean(0))


# ---- dycoke -----------------------------------------------------------------------------------------


def _angles(deg):
    """[T, N] angles in degrees -> unit vectors [T, N, 3] in the xy plane."""
    r = torch.tensor(deg, dtype=torch.float64).deg2rad()
    return torch.stack([r.cos(), r.sin(), torch.zeros_like(r)], -1).float()


def test_dycoke_static_video_keeps_unit_zero():
    torch.manual_seed(0)
    x = torch.randn(1, 4, 3).expand(4, 4, 3).clone()
    sel = DyCoke().select(vt(x), 0.25)  # k = N
    assert kept(sel) == {0, 1, 2, 3}
    torch.testing.assert_close(sel.tokens[0, :4], x[0])  # mean of four identical tokens


def test_dycoke_changing_video_keeps_by_dissimilarity_and_merges_into_earlier_slots():
    steps = torch.tensor([[30, 40, 50, 60], [70, 80, 90, 100], [35, 45, 55, 65]], dtype=torch.float64)
    deg = torch.cat([torch.zeros(1, 4, dtype=torch.float64), steps.cumsum(0)])
    x = _angles(deg.tolist()) * torch.tensor([1.0, 2.0, 3.0, 4.0])[None, :, None]
    _, pruned = ttm_similarity(x[None], 0.9)
    assert not pruned.any()  # every step > 25.8 degrees: all TTM survivors
    sel = DyCoke().select(vt(x), 0.5)  # k = 8: unit 0, then unit 2 (70..100 degrees)
    assert kept(sel) == {0, 1, 2, 3, 8, 9, 10, 11}
    sel = DyCoke().select(vt(x), 6 / 16)  # k = 6: unit 0, then 100 (t2 i3), 90 (t2 i2)
    assert kept(sel) == {0, 1, 2, 3, 11, 10}
    f = x.reshape(16, 3)
    torch.testing.assert_close(sel.tokens[0, 0], f[[0, 4, 8, 12]].mean(0))  # position 0: all into unit 0
    torch.testing.assert_close(sel.tokens[0, 3], f[[3, 7]].mean(0))  # t1 i3 into unit 0
    torch.testing.assert_close(sel.tokens[0, 11], f[[11, 15]].mean(0))  # t3 i3 into t2 i3


def test_dycoke_compares_with_the_last_kept_token():
    # position 0 drifts 20 degrees a unit: t1 is pruned (cos 0.94 to unit 0), t2 is 40 degrees from unit 0
    # (its reference, cos 0.77) and survives, t3 is 20 degrees from t2 and is pruned
    deg = [[0, 0, 0, 0], [20, 0, 0, 0], [40, 0, 0, 0], [60, 0, 0, 0]]
    c, pruned = ttm_similarity(_angles(deg)[None], 0.9)
    assert pruned[0, :, 0].tolist() == [False, True, False, True]
    assert pruned[0, 1:, 1:].all()
    assert c[0, 2, 0].item() == pytest.approx(math.cos(math.radians(40)), abs=1e-6)
    sel = DyCoke().select(vt(_angles(deg)), 5 / 16)  # unit 0, then the survivor t2 i0
    assert kept(sel) == {0, 1, 2, 3, 8}


# ---- score ------------------------------------------------------------------------------------------


def _preferring_policy():
    """logit = GELU(LN(x)_0): prefers tokens whose first feature dominates."""
    pol = build_policy(6, PolicyConfig(name="mlp", hidden=4))
    with torch.no_grad():
        for p in pol.parameters():
            p.zero_()
        pol.net[0].weight[0, 0] = 1.0
        pol.net[2].weight[0, 0] = 1.0
    return pol


def test_score_keeps_what_the_policy_prefers():
    x = torch.tensor([0.0, 1.0, 2.0]).expand(4, 4, 3).clone()
    for i in (2, 9, 14):
        x.view(16, 3)[i] = torch.tensor([5.0, 0.0, 0.0])
    assert kept(ScoreCompressor(_preferring_policy()).select(vt(x), 3 / 16)) == {2, 9, 14}


def test_score_mask_is_topk_of_the_logits_global_and_per_frame():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 4, 3)
    pol = _policy()
    logits = pol(surprise_state(x))
    sel = ScoreCompressor(pol).select(vt(x), 0.3)
    assert torch.equal(sel.keep, topk_mask(logits, 0.3))
    sel = ScoreCompressor(pol, selection="per_frame").select(vt(x), 0.3)
    assert torch.equal(sel.keep, topk_mask(logits, 0.3, (4, 2, 2), per_frame=True))
    assert (sel.keep.reshape(2, 4, 4).sum(-1) == keep_count(0.3, 4)).all()
    with pytest.raises(ValueError, match="selection"):
        ScoreCompressor(pol, selection="frame")


def test_score_loads_a_saved_policy_and_checks_the_width(tmp_path):
    pol = _policy()
    path = save_policy(tmp_path / "policy.pt", pol, PolicyConfig(name="mlp", hidden=4), IDENT)
    v = vt(torch.randn(1, 4, 4, 3))
    loaded = ScoreCompressor(policy_path=path, mllm=FakeMLLM())
    assert torch.equal(loaded.select(v, 0.25).keep, ScoreCompressor(pol).select(v, 0.25).keep)
    other = FakeMLLM({"family": "llava_onevision", "hidden_size": 3584})
    with pytest.raises(ValueError, match=r"trained for qwen2_5_vl with width 3.*llava_onevision with width 3584"):
        ScoreCompressor(policy_path=path, mllm=other)
    with pytest.raises(ValueError, match="needs a policy"):
        ScoreCompressor()


def test_a_question_conditioned_score_policy_selects_by_the_question(tmp_path):
    class QuestionMLLM(FakeMLLM):
        def question_embedding(self, prompts):  # prompts here: one question vector per video
            return torch.stack(prompts)

    cfg = PolicyConfig(name="query_mlp", hidden=4)
    torch.manual_seed(0)
    pol = build_policy(6, cfg)
    with torch.no_grad():
        pol.film.weight.normal_(std=3.0)  # a trained-looking FiLM: the question changes the ranking
        pol.last.weight.normal_()
    path = save_policy(tmp_path / "q.pt", pol, cfg, IDENT)
    comp = ScoreCompressor(policy_path=path, mllm=QuestionMLLM())
    assert comp.needs_prompts
    v = vt(torch.randn(1, 4, 4, 3))
    a, b = (
        comp.select(v, 0.25, [torch.tensor([3.0, 0.0, 0.0])]).keep,
        comp.select(v, 0.25, [torch.tensor([-3.0, 0.0, 0.0])]).keep,
    )
    assert int(a.sum()) == int(b.sum()) == 4 and not torch.equal(a, b)  # same budget, another question, other tokens
    with pytest.raises(ValueError, match="conditioned on the question: select\\(visual, ratio, prompts="):
        comp.select(v, 0.25)
    with pytest.raises(ValueError, match="is conditioned on the question: build the score compressor with mllm="):
        ScoreCompressor(pol)
    mlp = ScoreCompressor(build_policy(6, PolicyConfig(name="mlp", hidden=4)))
    assert comp.selection_flops((4, 4, 3), 0.25, 10) > mlp.selection_flops((4, 4, 3), 0.25, 10) > 0


# ---- selection FLOPs (score_lit.compressors.flops) --------------------------------------------------------------


def test_selection_flops_of_every_method_by_hand():
    # T = 4 units of N = 4 tokens, D = 3 (V = 16), r = 0.25 (k = 4); the text length and LLM do not matter here.
    got = {c.name: c.selection_flops((4, 4, 3), 0.25, 30, None) for c in _all()}
    assert got == {
        "uniform": 0,
        "random": 0,
        "pool": 16 * 3,  # window sums and means: V D
        "surprise": 3 * 16 * 3,  # residuals V D ("next": unit 0 against unit 1) + norms 2 V D
        # k_d = round(0.85 * 4) = 3, k_c = 1, M = 13: norms 2*16*3 = 96, normalise + merge 2*13*3 = 78,
        # cosine of 12 members to 1 centre 2*3*12 = 72
        "visionzip": 96 + 78 + 72,
        "dycoke": 6 * 16 * 3,  # normalise 3 V D, cosine 2 V D, merge V D
        # hidden 4: dX 3*4*3 = 36, LNs 10*16*3 = 480, MLP 16 * (4*3*4 + 4*4 + 1) = 16 * 65 = 1040
        "score": 36 + 480 + 1040,
    }
    assert SurpriseTopK("zero").selection_flops((4, 4, 3), 0.25, 30) == 3 * 4 * 3 + 2 * 3 * 12  # unit 0 unscored
    with pytest.raises(NotImplementedError, match="Linear"):
        ScoreCompressor(torch.nn.Linear(6, 1)).selection_flops((4, 4, 3), 0.25, 30)
