"""FastV: the adapter's one-layer video attention against the STOCK eager model, and the top-k selection.

(a) video_attention(layer) == the stock model's eager attention probabilities (output_attentions=True) at
    [layer, mean over heads, last prompt row, video columns], on the FULL sequence with the answer tokens
    and our position ids, B=2 with different prompt lengths (right padding), both families, every layer
    of a 4-layer tiny model (layer 2, the paper's K, runs layers 0-1 through SDPA first);
(b) FastV keeps exactly k tokens and they are the top-k of that attention; (c) build_compressor("fastv");
(d) video_attention leaves the adapter's score() results unchanged.
"""

import pytest
import torch
from helpers import QWEN_FAMILIES as FAMILIES
from helpers import make_batch, make_masks

from score_lit.compressors import build_compressor
from score_lit.compressors.fastv import FastV
from score_lit.config import MLLMConfig, keep_count
from score_lit.mllm import build_mllm
from score_lit.mllm.positions import sequence_positions
from score_lit.mllm.tiny import _config, build_tiny_tokenizer

LAYERS = 4


def tiny_model(family, attn, layers=LAYERS, seed=0):
    """The tiny random model of `family` with `layers` decoder layers (build_tiny has 2)."""
    cls, config = _config(family, build_tiny_tokenizer(), text_overrides={"num_hidden_layers": layers})
    config._attn_implementation = attn
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config).eval()


@pytest.fixture(scope="module", params=FAMILIES)
def pair(request):
    """(adapter on a 4-layer SDPA model, the same weights as a stock eager model)."""
    adapter = build_mllm(MLLMConfig(family=request.param))
    adapter.model = tiny_model(request.param, "sdpa").requires_grad_(False)
    eager = tiny_model(request.param, "eager")
    eager.load_state_dict(adapter.model.state_dict())
    return adapter, eager


@pytest.fixture(scope="module")
def batch():
    return make_batch()


def stock_attention(adapter, eager, batch, visual, prompts):
    """[layers, B, T*N]: stock eager forward of the full padded batch (input_ids with video placeholders +
    pixel values, answers included), heads-mean attention of each row's last prompt token to its video."""
    pixels, grid_thw = adapter.preprocessor(batch.frames)
    v = visual.num_tokens
    rows = [pre + [adapter.video_token_id] * v + post for pre, post in zip(prompts.pre_ids, prompts.post_ids)]
    length = max(map(len, rows))
    ids = torch.full((len(rows), length), adapter.pad_token_id)
    attn = torch.zeros_like(ids)
    pos = torch.zeros((3, len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)], attn[i, : len(row)] = torch.tensor(row), 1
        pos[:, i, : len(row)] = sequence_positions(
            len(prompts.pre_ids[i]), visual.positions[i], len(prompts.post_ids[i])
        )
    out = eager(
        input_ids=ids,
        pixel_values_videos=pixels,
        video_grid_thw=grid_thw,
        attention_mask=attn,
        position_ids=pos,
        mm_token_type_ids=(ids == adapter.video_token_id).long() * 2,
        output_attentions=True,
    )
    ref = []
    for a in out.attentions:  # [B, H, L, L] per layer
        per = []
        for i in range(len(rows)):
            p = len(prompts.pre_ids[i])
            q = p + v + prompts.answer_start[i] - 1  # the last prompt token: predicts the first answer token
            per.append(a[i, :, q, p : p + v].mean(0))
        ref.append(torch.stack(per))
    return torch.stack(ref)


def test_video_attention_equals_stock_eager(pair, batch):
    # (a)
    adapter, eager = pair
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    assert len({len(p) + s for p, s in zip(prompts.post_ids, prompts.answer_start)}) == 2  # padding in play
    with torch.no_grad():
        ref = stock_attention(adapter, eager, batch, visual, prompts)
    diffs = []
    for layer in range(LAYERS):
        got = adapter.video_attention(visual, prompts, layer)
        assert got.shape == (2, visual.num_tokens) and got.dtype == torch.float32
        diffs.append((got - ref[layer]).abs().max().item())
    print(f"\n{adapter.family} video_attention vs eager: max diff per layer {[f'{d:.1e}' for d in diffs]}")
    assert max(diffs) < 1e-5
    assert ref[2].std(-1).min() > 1e-3  # the attention is far from uniform: the test can see a wrong column or row
    with pytest.raises(ValueError, match="layers 0..3"):
        adapter.video_attention(visual, prompts, LAYERS)


def test_fastv_keeps_topk(pair, batch):
    # (b) exactly k tokens per row, and they are the top-k of the layer-2 attention.
    adapter, _ = pair
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    fastv = FastV(adapter)
    assert fastv.layer == fastv.layer_used == 2 and fastv.name == "fastv" and fastv.needs_prompts
    scores = adapter.video_attention(visual, prompts, 2)
    for ratio in (0.1, 0.25, 0.5, 1.0):
        sel = fastv.select(visual, ratio, prompts)
        k = keep_count(ratio, visual.num_tokens)
        assert sel.keep.dtype == torch.bool and sel.keep.shape == (2, visual.num_tokens) and sel.tokens is None
        assert sel.keep.sum(-1).tolist() == [k, k]
        kept_min = scores.masked_fill(~sel.keep, float("inf")).min(-1).values
        dropped_max = scores.masked_fill(sel.keep, float("-inf")).max(-1).values
        assert (kept_min >= dropped_max).all()
    with pytest.raises(ValueError, match="needs the tokenized prompts"):
        fastv.select(visual, 0.5)


def test_build_compressor_and_layer_clamp(batch):
    # (c) through the registry, with the sweep's layer argument; a 2-layer model ranks by its last layer.
    adapter = build_mllm(MLLMConfig(family="qwen2_vl"))  # build_tiny: 2 decoder layers
    comp = build_compressor("fastv", mllm=adapter, layer=1, seed=0)
    assert isinstance(comp, FastV) and comp.layer_used == 1
    with pytest.warns(UserWarning, match="ranking by layer 1"):
        assert build_compressor("fastv", mllm=adapter).layer_used == 1
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    assert comp.select(visual, 0.25, prompts).keep.sum(-1).tolist() == [4, 4]


def test_score_unchanged_by_video_attention(pair, batch):
    # (d) the existing path is untouched: score() before and after video_attention, bit for bit.
    adapter, _ = pair
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    masks = make_masks(2, 3, visual.num_tokens)
    before = adapter.score(visual, prompts, masks)
    adapter.video_attention(visual, prompts, 2)
    after = adapter.score(visual, prompts, masks)
    assert torch.equal(before.ce, after.ce) and torch.equal(before.option_logits, after.option_logits)


def test_fastv_selection_flops_in_deployment():
    # (e) FastV's FLOPs: its first K layers over every token + the ranking (score_lit.compressors.flops). On a 2-layer LLM at
    # the paper's K = 2 no layer sees the pruned sequence: more than vanilla at every ratio, by the ranking.
    from types import SimpleNamespace

    from score_lit.compressors.flops import fastv_rank_flops, prefill_flops, question_flops

    text = SimpleNamespace(
        hidden_size=8,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=16,
        num_hidden_layers=2,
        vocab_size=32,
    )
    mllm = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(text_config=text)))
    with pytest.warns(UserWarning, match="ranking by layer 1"):
        fastv = FastV(mllm, layer=2)
    # T = 2, N = 4 (V = 8), 4 text tokens, r = 0.25 (k = 2): 2 (layer(12) - layer(6)) + rank(12) = 18560 (test_flops)
    assert fastv.selection_flops((2, 4, 8), 0.25, 4) == 18560 == fastv.selection_flops((2, 4, 8), 0.25, 4, text)
    vanilla = prefill_flops(text, 12)
    for ratio in (0.1, 0.25, 0.5, 1.0):
        k = keep_count(ratio, 8)
        assert question_flops(text, 4, k, fastv.selection_flops((2, 4, 8), ratio, 4)) == vanilla + fastv_rank_flops(
            text, 12
        )
