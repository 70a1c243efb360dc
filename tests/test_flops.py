"""Prefill FLOPs per method (score_lit.compressors.flops) on a tiny config, every number worked out by hand, and the
matched-compute pick on hand-written rows."""

from types import SimpleNamespace

import pytest

from score_lit.compressors.flops import (
    dycoke_flops,
    fastv_flops,
    fastv_rank_flops,
    layer_flops,
    matched_compute,
    policy_flops,
    pool_flops,
    prefill_flops,
    question_flops,
    surprise_flops,
    visionzip_flops,
)

# d = 8, 2 heads of head_dim 4 (d_q = 8), 1 KV head (d_kv = 4), d_ff = 16, 2 layers, vocab 32.
TINY = SimpleNamespace(
    hidden_size=8,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=16,
    num_hidden_layers=2,
    vocab_size=32,
)
# layer(L) = 2 L (8*8 + 2*8*4 + 8*8 + 3*8*16) + 2*8*L(L+1) = 1152 L + 16 L (L + 1); lm_head 2*8*32 = 512


def test_layer_and_prefill_by_hand():
    assert layer_flops(TINY, 10) == 11520 + 1760  # 1152*10 + 16*10*11
    assert layer_flops(TINY, 12) == 13824 + 2496 == 16320  # 1152*12 + 16*12*13
    assert layer_flops(TINY, 6) == 6912 + 672 == 7584  # 1152*6 + 16*6*7
    assert prefill_flops(TINY, 10) == 2 * 13280 + 512 == 27072
    assert prefill_flops(TINY, 12) == 2 * 16320 + 512 == 33152
    assert question_flops(TINY, 4, 2, 100) == prefill_flops(TINY, 6) + 100 == 2 * 7584 + 512 + 100


def test_fastv_by_hand_and_more_than_vanilla_when_k_covers_every_layer():
    # text 4 + V 8 = 12 tokens in full, text 4 + k 2 = 6 kept.
    # rank(12) = 2*8*8 [q, last row] + 2*12*8*4 [k, every row] + 2*8*12 [one QK^T row] = 128 + 768 + 192 = 1088
    assert fastv_rank_flops(TINY, 12) == 1088
    # K = 2 = layers: both layers over all 12 instead of 6: 2 * (16320 - 7584) + 1088 = 18560
    assert fastv_flops(TINY, 4, 8, 2, layer=2) == 18560
    total, vanilla = question_flops(TINY, 4, 2, 18560), prefill_flops(TINY, 12)
    assert total == 15680 + 18560 == 34240 and vanilla == 33152 and total - vanilla == 1088  # vanilla + the ranking
    assert fastv_flops(TINY, 4, 8, 2, layer=5) == 18560  # K past the last layer: the same (nothing is pruned)
    for k in range(1, 9):  # at every budget, the 2-layer model at K = 2 pays more than vanilla
        assert question_flops(TINY, 4, k, fastv_flops(TINY, 4, 8, k, 2)) > vanilla
    # K = 1: one layer over 12, one over 6: 8736 + 1088 = 9824; total 15680 + 9824 = 25504 < vanilla
    assert fastv_flops(TINY, 4, 8, 2, layer=1) == 9824
    # 4 layers, K = 2: 2 * 8736 + 1088 = 18560 on top of 4 * 7584 + 512 = 30848 -> 49408 < 4 * 16320 + 512 = 65792
    deep = SimpleNamespace(**{**vars(TINY), "num_hidden_layers": 4})
    assert question_flops(deep, 4, 2, fastv_flops(deep, 4, 8, 2, 2)) == 49408 < prefill_flops(deep, 12) == 65792


def test_selection_formulas_by_hand():
    # T = 2 units of N = 4 tokens, D = 8: V = 8.
    # policy, h = 16: dX 1*4*8 = 32; two LNs 10*8*8 = 640; MLP 8 * (4*8*16 + 4*16 + 1) = 8 * 577 = 4616
    assert policy_flops(2, 4, 8, 16) == 32 + 640 + 4616 == 5288
    # surprise "next": residuals 1*4*8 + 4*8 (unit 0 - unit 1) = 64, norms 2*8 * 8 tokens = 128 -> 192 = 3 V D
    assert surprise_flops(2, 4, 8, "next") == 192
    assert surprise_flops(2, 4, 8, "self") == 32 + 128  # unit 0 is its own norm: no subtraction
    assert surprise_flops(2, 4, 8, "zero") == 32 + 2 * 8 * 4  # unit 0 not scored
    assert surprise_flops(1, 4, 8, "next") == 2 * 8 * 4  # T = 1: "next" has nothing to compare with
    assert pool_flops(8, 8) == 64
    # visionzip k = 3, share 0.5: k_d = round(1.5) = 2, k_c = 1, M = 6:
    # norms 2*8*8 = 128 + normalise 6*8 = 48 + cosine 2*8*(6-1)*1 = 80 + sums and means 6*8 = 48 -> 304
    assert visionzip_flops(8, 3, 8, 0.5) == 304
    assert visionzip_flops(8, 3, 8, 1.0) == 128  # no contextual tokens: the norms only
    # dycoke: normalise 3*8*8 = 192, cosine 2*8*8 = 128, merge 8*8 = 64 -> 384; one unit: no cosine
    assert dycoke_flops(2, 4, 8) == 384
    assert dycoke_flops(1, 4, 8) == 3 * 32 + 32


def row(method, ratio, acc, tf, family="all"):
    return {"method": method, "retention_ratio": ratio, "accuracy": acc, "prefill_tflops": tf, "family": family}


def test_matched_compute_by_hand():
    rows = [
        row("vanilla", 1.0, 0.90, 10.0),
        row("score", 0.5, 0.85, 5.0),
        row("score", 0.1, 0.80, 1.0),
        row("fastv", 0.5, 0.88, 6.0),
        row("fastv", 0.1, 0.70, 2.0),
        # from a CSV: strings; 0.5 at exactly SCORE's compute fits, the cheaper 0.1 is more accurate
        row("uniform", "0.5", "0.6", "5.0"),
        row("uniform", "0.1", "0.65", "1.0"),
        row("random", 0.1, 0.99, float("nan")),  # no FLOPs formula: never a candidate
        row("score", 0.5, 0.10, 0.1, family="flash"),  # another family: ignored
    ]
    got = {
        (r["reference_ratio"], r["method"]): (r["retention_ratio"], r["accuracy"])
        for r in matched_compute(rows, "score")
    }
    assert got == {
        (0.5, "vanilla"): (None, None),
        (0.5, "score"): (0.5, 0.85),
        (0.5, "fastv"): (0.1, 0.70),
        (0.5, "uniform"): (0.1, 0.65),
        (0.1, "vanilla"): (None, None),
        (0.1, "score"): (0.1, 0.80),
        (0.1, "fastv"): (None, None),
        (0.1, "uniform"): (0.1, 0.65),
    }
    first = matched_compute(rows, "score")[0]
    assert first["reference_tflops"] == 5.0 and first["method"] == "vanilla"
    with pytest.raises(ValueError, match="no row of reference method 'dycoke'"):
        matched_compute(rows, "dycoke")
