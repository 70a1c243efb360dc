"""Prefill FLOPs of one video question per method: the LLM over text + kept visual tokens, plus what the
method's selection costs. Pure functions of shapes and config numbers (no torch), so that methods are
compared at equal compute (../docs/METHOD.md "What the paper reports", as HoliTom and FastVID report).

Convention: a multiply-add is 2 FLOPs; an elementwise add, subtract, multiply, divide, square root or
activation is 1 FLOP per element; comparisons, sorting, top-k, gathers and random numbers are 0. The
vision encoder and projector are left out: every method pays them alike (compression comes after them).

LLM (`prefill_flops`): a decoder layer over L tokens of width d, query width d_q = heads * head_dim,
key/value width d_kv = kv_heads * head_dim (GQA), SwiGLU width d_ff:

    linear(L)    = 2 L (d d_q + 2 d d_kv + d_q d + 3 d d_ff)       q, k, v, o projections; gate, up, down
    attention(L) = 2 d_q L (L + 1)                                  QK^T and AV, causal: query i sees i + 1 keys
    layer(L)     = linear(L) + attention(L)
    prefill_flops(L) = layers * layer(L) + 2 d vocab                lm_head on the last position only

Norms, RoPE, softmax, residual adds and the embedding lookup (O(L d)) are left out of the LLM. L is the
prompt up to the answer: L_text text tokens (before the video, after it up to the answer, and the non-video
tokens the model always adds with the video, kept by every method: Qwen3-VL / Qwen3.5's per-unit timestamp text
and vision start / end tokens, LLaVA-OneVision's newline after the video; none for Qwen2-VL / Qwen2.5-VL, whose
vision start / end are in the prompt text; the sweep's prompt_text_tokens) + the kept visual tokens. A question's
prefill FLOPs = prefill_flops(L_text + kept) + selection FLOPs, with V = T N visual tokens of width D (= d),
budget k = ceil(r V) (config.keep_count):

    vanilla, uniform, random   0                                    (indices only, no arithmetic)
    pool                       V D                                  window sums ((V - kept) D adds) and
                                                                    means (kept D divisions)
    surprise                   (T-1) N D + [next] N D               residuals x_t - x_{t-1} (+ unit 0 - unit 1)
                               + 2 D per scored token               ||.||: D squares, D - 1 adds, 1 sqrt
    score (MLP policy)         (T-1) N D + 10 V D                   dX, then LN(x) and LN(dx): 5 D each
                               + V (4 D h + 4 h + 1)                Linear 2D->h (+bias), activation,
                                                                    Linear h->1 (+bias)
    visionzip                  2 V D                                norms of all tokens (dominant = top k_d)
                               + 2 M D + 2 D (M - k_c) k_c          M = V - k_d remaining: normalise (M D),
                                                                    cosine to k_c centres, group sums and
                                                                    means (M D); nothing past the norms if k_c = 0
    dycoke                     3 V D + [T > 1] 2 V D + V D          normalise all, cosine of each token to its
                                                                    reference (unit 0: to unit 1), merge (at
                                                                    most (V - k) D adds + k D divisions)
    fastv                      K (layer(L_text + V) - layer(L_text + k)) + rank(L_text + V)

FastV (Chen et al., ECCV 2024) in deployment runs layers 0..K-1 over ALL L_text + V tokens, ranks the
visual tokens by the attention of the last prompt token at layer K, and runs layers K.. over the kept
ones; its selection cost is what that costs beyond a prefill of the kept tokens, plus the ranking:

    rank(L) = 2 d d_q + 2 L d d_kv + 2 d_q L                        layer K's q for the last row, k for all
                                                                    L rows, one row of QK^T (softmax left out)

K is min(fastv layer, layers): with K >= layers (the 2-layer toy at the paper's K = 2) no layer ever sees
the pruned sequence, so FastV costs vanilla's prefill plus the ranking, more than vanilla at any ratio.
This column is what FastV costs in deployment (the paper's schedule). The sweep's own implementation
(compressors/fastv.py) executes something else: the ranking's partial forward (layers 0..K'-1 over all
tokens, K' = min(K, layers - 1), plus rank) and then a pruned prefill through ALL layers, i.e.
K' layer(L_text + V) + rank(L_text + V) + prefill_flops(L_text + k); its accuracy is that of pruning
before layer 0, ranked by layer K'. The deployment count is reported because it is the cost of the method
the sweep stands in for. For K < layers it is lower than what the sweep executes by K layer(L_text + k);
for K >= layers it differs by layer(L_text + V) - layers * layer(L_text + k), either sign (on the 2-layer
toy it is higher below about half the tokens kept).
"""

from __future__ import annotations

import math
from typing import Any

TERA = 1e12


def _widths(cfg: Any) -> tuple[int, int, int, int]:
    """(d, d_q, d_kv, d_ff) of a text config with hidden_size, num_attention_heads, num_key_value_heads,
    intermediate_size (head_dim optional: d // heads)."""
    d, heads = int(cfg.hidden_size), int(cfg.num_attention_heads)
    head_dim = int(getattr(cfg, "head_dim", None) or d // heads)
    return d, heads * head_dim, int(cfg.num_key_value_heads) * head_dim, int(cfg.intermediate_size)


def layer_flops(cfg: Any, seq_len: int) -> int:
    """One decoder layer over `seq_len` tokens, causal: linear(L) + attention(L) (module docstring)."""
    d, d_q, d_kv, d_ff = _widths(cfg)
    n = int(seq_len)
    return 2 * n * (d * d_q + 2 * d * d_kv + d_q * d + 3 * d * d_ff) + 2 * d_q * n * (n + 1)


def prefill_flops(cfg: Any, seq_len: int) -> int:
    """FLOPs of one prefill over `seq_len` tokens to the first output token: layers * layer(L) + 2 d vocab.
    `cfg` is the LLM's text config (hidden_size, num_attention_heads, num_key_value_heads, intermediate_size,
    num_hidden_layers, vocab_size; head_dim optional)."""
    return int(cfg.num_hidden_layers) * layer_flops(cfg, seq_len) + 2 * int(cfg.hidden_size) * int(cfg.vocab_size)


def fastv_rank_flops(cfg: Any, seq_len: int) -> int:
    """FastV's ranking at layer K over `seq_len` keys: 2 d d_q + 2 L d d_kv + 2 d_q L (q of the last row, k of
    every row, one row of QK^T; what the adapters' video_attention computes past the layers before K)."""
    d, d_q, d_kv, _ = _widths(cfg)
    n = int(seq_len)
    return 2 * d * d_q + 2 * n * d * d_kv + 2 * d_q * n


def fastv_flops(cfg: Any, text: int, visual: int, kept: int, layer: int) -> int:
    """FastV's selection cost in deployment: K (layer(text + V) - layer(text + kept)) + rank(text + V),
    K = min(layer, layers): its first K layers see every token, the rest only the kept ones."""
    k_layers = min(int(layer), int(cfg.num_hidden_layers))
    full, pruned = text + visual, text + kept
    return k_layers * (layer_flops(cfg, full) - layer_flops(cfg, pruned)) + fastv_rank_flops(cfg, full)


def pool_flops(visual: int, d: int) -> int:
    """s x s average pooling: V D ((V - kept) D adds into the window sums, kept D divisions)."""
    return visual * d


def surprise_flops(t: int, n: int, d: int, first_unit: str = "next") -> int:
    """||x_t - x_{t-1}|| per token: (T-1) N D subtractions (+ N D for unit 0 against unit 1 with "next"),
    2 D per norm (D squares, D - 1 adds, 1 sqrt) over all V tokens ("zero": unit 0 is not scored)."""
    residual = (t - 1) * n * d + (n * d if first_unit == "next" and t > 1 else 0)
    scored = (t - 1) * n if first_unit == "zero" else t * n
    return residual + 2 * d * scored


def policy_flops(t: int, n: int, d: int, hidden: int) -> int:
    """SCORE's state and MLP policy over all V = T N tokens:
    (T-1) N D (dX; dX_1 = X_1 is a copy) + 10 V D (two layer norms of 5 D: mean, centre, square, sum, scale)
    + V (2 (2D) h + h [bias] + h [activation] + 2 h [Linear h->1] + 1 [bias]) = ... + V (4 D h + 4 h + 1)."""
    v = t * n
    return (t - 1) * n * d + 10 * v * d + v * (4 * d * hidden + 4 * hidden + 1)


def temporal_policy_flops(t: int, n: int, d: int, hidden: int, kernel: int = 3) -> int:
    """policy_flops + the temporal variant's depthwise convolution over T: per token and hidden unit, `kernel`
    multiply-adds (2 kernel; the zero padding's products counted too), its bias and the residual add:
    V h (2 kernel + 2)."""
    return policy_flops(t, n, d, hidden) + t * n * hidden * (2 * kernel + 2)


def visionzip_flops(visual: int, k: int, d: int, dominant_share: float) -> int:
    """VisionZip at budget k: 2 V D (norms; dominant = top k_d, k_d = round(share k) half up) and, with
    k_c = k - k_d contextual centres among the M = V - k_d others: M D (normalise with the known norms)
    + 2 D (M - k_c) k_c (cosine of every member to every centre) + M D (group sums and means)."""
    k_d = min(k, max(0, math.floor(dominant_share * k + 0.5)))
    k_c, m = k - k_d, visual - k_d
    if k_c == 0:
        return 2 * visual * d
    return 2 * visual * d + 2 * m * d + 2 * d * (m - k_c) * k_c


def dycoke_flops(t: int, n: int, d: int) -> int:
    """DyCoke's TTM: 3 V D (normalise: norm 2 D + D divisions) + [T > 1] 2 V D (cosine of every token to its
    reference; unit 0 to unit 1) + V D (merge: at most (V - k) D adds and k D divisions)."""
    v = t * n
    return 3 * v * d + (2 * v * d if t > 1 else 0) + v * d


def vision_tower_flops(vcfg: Any, windows: list[int], units: list[int]) -> int:
    """Qwen2.5-VL's vision tower over P = sum(windows) patches (= sum(units)) of width w, MLP width d_ff, in
    G = P / m^2 merged groups (vcfg: hidden_size, intermediate_size, depth, fullatt_block_indexes, in_channels,
    temporal_patch_size, patch_size, spatial_merge_size, out_hidden_size). windows / units: the patches of each
    attention segment of the windowed and the full-attention blocks (score_lit.mllm.vision_prune.pruned_segments):

        patch_embed   2 P (C tps p^2) w
        block         2 P (3 w^2 + w^2 + 3 w d_ff)          qkv, proj; SwiGLU gate, up, down
                      + 4 w sum_s L_s^2                       QK^T and AV within each segment (non-causal)
        merger        2 G (m^2 w m^2 w + m^2 w D_out)        two linear layers over the m^2 w concatenation

    Norms, RoPE, softmax, biases and activations are left out, as in the LLM."""
    w, ff, m = int(vcfg.hidden_size), int(vcfg.intermediate_size), int(vcfg.spatial_merge_size)
    p = sum(windows)
    in_dim = int(getattr(vcfg, "in_channels", 3)) * int(vcfg.temporal_patch_size) * int(vcfg.patch_size) ** 2
    full = set(int(i) for i in vcfg.fullatt_block_indexes)
    depth = int(vcfg.depth)
    attn_full, attn_win = 4 * w * sum(L * L for L in units), 4 * w * sum(L * L for L in windows)
    blocks = depth * 2 * p * (4 * w * w + 3 * w * ff) + sum(attn_full if i in full else attn_win for i in range(depth))
    g = p // (m * m)
    return 2 * p * in_dim * w + blocks + 2 * g * (m * m * w * m * m * w + m * m * w * int(vcfg.out_hidden_size))


def question_flops(cfg: Any, text: int, kept: int, select: int) -> int:
    """One question's prefill FLOPs: prefill_flops(text + kept) + the selection's own FLOPs."""
    return prefill_flops(cfg, text + kept) + select


def matched_compute(
    rows: list[dict], reference_method: str = "score", family: str = "all", rtol: float = 1e-9
) -> list[dict]:
    """Per ratio of `reference_method` and per method: that method's best accuracy at prefill FLOPs no higher
    than the reference's at that ratio ("matched compute"). `rows` are results rows (results.csv, strings or
    numbers) with method, retention_ratio, family, accuracy, prefill_tflops. A candidate fits if its FLOPs
    <= reference FLOPs * (1 + rtol); among those the highest accuracy wins, ties to the lower FLOPs, then the
    higher ratio. Returns one dict per (reference ratio, method), the reference method included (a lower ratio
    of it may do better), methods in order of appearance: reference_ratio, reference_tflops, method, and the
    chosen retention_ratio, accuracy, prefill_tflops (all None where no ratio of the method fits)."""
    sel = [r for r in rows if r["family"] == family and not math.isnan(float(r["prefill_tflops"]))]
    refs = sorted(
        ((float(r["retention_ratio"]), float(r["prefill_tflops"])) for r in sel if r["method"] == reference_method),
        reverse=True,
    )
    if not refs:
        raise ValueError(f"matched_compute: no row of reference method {reference_method!r} in family {family!r}")
    out = []
    for ref_ratio, ref_flops in refs:
        for m in dict.fromkeys(r["method"] for r in sel):
            fits = [r for r in sel if r["method"] == m and float(r["prefill_tflops"]) <= ref_flops * (1 + rtol)]
            best = max(
                fits,
                key=lambda r: (float(r["accuracy"]), -float(r["prefill_tflops"]), float(r["retention_ratio"])),
                default=None,
            )
            out.append(
                {
                    "reference_ratio": ref_ratio,
                    "reference_tflops": ref_flops,
                    "method": m,
                    "retention_ratio": None if best is None else float(best["retention_ratio"]),
                    "accuracy": None if best is None else float(best["accuracy"]),
                    "prefill_tflops": None if best is None else float(best["prefill_tflops"]),
                }
            )
    return out
