"""The Qwen3-VL and Qwen3.5 adapters against the STOCK transformers models (tiny random, real classes).

Equivalences (max abs differences are printed with -s):
(a) keep-all rows == the stock full forward (stock timestamps text, stock vision path with DeepStack, stock
    get_rope_index positions);
(b) partial masks == Qwen3-VL: the stock full sequence with dropped video tokens masked as keys (DeepStack
    added by the stock forward); both families: the stock model on the PRUNED sequence with the kept tokens'
    full-sequence positions (the only valid reference for Qwen3.5's linear-attention layers);
(c) one padded B*K batch == each row alone: tests/test_adapters.py (every family) and (f) here for Qwen3.5's
    recurrent layers with very different row lengths;
(d) positions, timestamps and DeepStack indexing by value on a hand-computed 4 x 2 x 2 grid;
(e) FastV's video_attention == the stock eager attention probabilities (4-layer models);
(g) a saved tiny checkpoint loads through build_mllm; a policy of another family is refused in one line.
"""

import pytest
import torch
from helpers import make_batch, make_masks, select
from reference import qwen3_reference_scores, qwen3_stock_ids

from score_lit.config import ConfigError, MLLMConfig, PolicyConfig
from score_lit.mllm import build_mllm
from score_lit.mllm.sequence import VIDEO
from score_lit.mllm.tiny import save_tiny
from score_lit.rl.policy import build_policy
from score_lit.training.checkpoint import load_policy, save_policy

FAMILIES = ["qwen3_vl", "qwen3_5"]
SPF = [1.0, 2.0]  # seconds between sampled frames, per sample: unit times 0.5, 2.5, ... and 1.0, 5.0, ...


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request):
    return build_mllm(MLLMConfig(family=request.param))


@pytest.fixture(scope="module")
def batch():
    return make_batch(seconds_per_frame=SPF)


def test_block_positions_and_timestamps_by_hand(adapter, batch):
    # 8 frames of 32 px, patch 8, merge 2, temporal patch 2: T=4 units of 2x2 tokens. Sample 0 (1 s per frame):
    # units at (0 + 1)/2 * 1 = 0.5 s, 2.5, 4.5, 6.5. A unit is "<", d, ".", d, "seconds", ">", <|vision_start|>
    # (7 text slots), 4 video slots, <|vision_end|>: 12 slots. Unit 0's text ids 0..6; its grid at s = 7:
    # t = 7, h = 7 + (0, 0, 1, 1), w = 7 + (0, 1, 0, 1); <|vision_end|> at max + 1 = 9; unit 1 starts at 10.
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    assert visual.grid == (4, 2, 2) and visual.tokens.shape == (2, 4, 4, 64)
    assert visual.positions[0, :, :4].tolist() == [[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]]  # (0, r, c) per unit
    ids, pos = adapter.video_block(visual, prompts, 0)
    toks = adapter.tokenizer.convert_ids_to_tokens([t for t in ids[:12] if t >= 0])
    assert toks == ["<", "0", ".", "5", "seconds", ">", "<|vision_start|>", "<|vision_end|>"]
    assert adapter.tokenizer.convert_ids_to_tokens(ids[12:18]) == ["<", "2", ".", "5", "seconds", ">"]
    assert len(ids) == 48 and [i for i, t in enumerate(ids) if t < 0][:5] == [7, 8, 9, 10, 19]
    assert pos[:, :12].tolist() == [
        [0, 1, 2, 3, 4, 5, 6, 7, 7, 7, 7, 9],
        [0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 8, 9],
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 7, 8, 9],
    ]
    assert pos[:, 12].tolist() == [10, 10, 10] and pos[:, -1].tolist() == [39, 39, 39]
    # The whole laid-out sequence == the stock processor text + the stock get_rope_index, for both samples.
    lay = adapter.layout(visual, prompts, [len(p) for p in prompts.post_ids])
    for i in range(2):
        ids = qwen3_stock_ids(adapter, batch, prompts, i)
        mm = (ids == adapter.video_token_id).long()[None] * 2
        grid = torch.tensor([[4, 4, 4]])
        stock, _ = adapter.model.model.get_rope_index(ids[None], mm_token_type_ids=mm, video_grid_thw=grid)
        n = ids.shape[0]
        assert torch.equal(lay.positions[i, :, :n], stock[:, 0]), i
        assert torch.equal(lay.kind[i, :n] == VIDEO, ids == adapter.video_token_id)
    assert lay.n_block_text.tolist() == [32, 33]  # sample 1 at 1.0, 5.0, 9.0, 13.0 s: "13.0" is one digit longer


@pytest.mark.parametrize("partial", [False, True], ids=["keep_all", "partial"])
def test_score_equals_stock_model(adapter, batch, partial):
    # (a) keep-all, (b) partial. Qwen3-VL: the masked-keys reference (the stock forward adds DeepStack only from pixel
    # values over the full sequence; the stock forward on pruned inputs_embeds would run without DeepStack: CE off by
    # ~0.1 here, which shows DeepStack matters). Qwen3.5: the pruned sequence (linear attention).
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    masks = make_masks(2, 4, visual.num_tokens) if partial else torch.ones(2, 1, visual.num_tokens, dtype=torch.bool)
    got = adapter.score(visual, prompts, masks)
    for pruned in [adapter.family == "qwen3_5"]:
        ref = qwen3_reference_scores(adapter, batch, masks, pruned=pruned)
        d_ce = (got.ce - ref.ce).abs().max().item()
        d_opt = (got.option_logits - ref.option_logits).abs().max().item()
        kind = "pruned sequence" if pruned else "masked keys"
        print(
            f"\n{adapter.family} {'partial' if partial else 'keep-all'} vs {kind}: max|dCE|={d_ce:.2e} max|dopt|={d_opt:.2e}"
        )
        assert d_ce < 1e-4 and d_opt < 1e-4
    if partial:  # the test can see pruning: dropping tokens moves CE far beyond the tolerance
        assert (got.ce[:, 1:] - got.ce[:, :1]).abs().max() > 1e-2


def test_deepstack_gathered_with_the_keep_mask():
    # (d) Qwen3-VL: rows keep tokens {1, 6, 15} and {0, 15} of sample 0; the DeepStack inputs are the features of
    # exactly those tokens, in row-major order, at exactly the kept video slots of the compacted rows.
    from score_lit.mllm.sequence import compact

    adapter = build_mllm(MLLMConfig(family="qwen3_vl"))
    one = select(make_batch(seconds_per_frame=SPF), 0)
    visual, prompts = adapter.encode(one), adapter.tokenize(one)
    assert visual.deepstack.shape == (1, 2, 16, 64)  # DeepStack after vision blocks 0 and 1
    masks = torch.zeros(1, 2, 16, dtype=torch.bool)
    masks[0, 0, [1, 6, 15]] = True
    masks[0, 1, [0, 15]] = True
    lay = adapter.layout(visual, prompts, [len(prompts.post_ids[0])])
    _, order, attn = compact(lay.embeds, lay.keep(masks))
    extra = adapter.llm_inputs(visual, lay, order, attn)
    pre = len(prompts.pre_ids[0])
    # Row 0: unit 0 = 7 text slots then tokens 0..3 (1 kept) -> slot pre + 7; token 6 is unit 1's 3rd: unit 1 starts
    # after unit 0's 7 + 1 (kept) + 1 (<|vision_end|>) = 9 slots, its tokens after 7 more -> pre + 16; token 15 is
    # unit 3's 4th (only kept token of units 2, 3): units 0, 1, 2 take 9, 9 and 8 slots -> pre + 26 + 7 = pre + 33.
    # Row 1 (tokens 0 and 15): units take 9, 8, 8 slots -> token 15 at pre + 25 + 7 = pre + 32.
    assert torch.nonzero(extra["visual_pos_masks"][0])[:, 0].tolist() == [pre + 7, pre + 16, pre + 33]
    assert torch.nonzero(extra["visual_pos_masks"][1])[:, 0].tolist() == [pre + 7, pre + 32]
    for s in range(2):
        want = visual.deepstack[0, s, [1, 6, 15, 0, 15]]
        assert torch.equal(extra["deepstack_visual_embeds"][s], want)


@pytest.mark.parametrize("family", FAMILIES)
def test_video_attention_equals_stock_eager(family, batch):
    # (e) 4-layer models: the adapter on SDPA vs the stock eager forward's attention probabilities (full sequence
    # with the answers, stock ids and positions), at every full-attention layer; layers before it run with their
    # DeepStack additions (Qwen3-VL) and linear-attention layers (Qwen3.5).
    adapter = build_mllm(MLLMConfig(family=family))
    cls = type(adapter)

    def model(attn):
        model_cls, config = cls.tiny_config(cls.tiny_tokenizer(), {"num_hidden_layers": 4})
        config._attn_implementation = attn
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return model_cls(config).eval().requires_grad_(False)

    adapter.model, eager = model("sdpa"), model("eager")
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    pixels, grid_thw = adapter.preprocessor(batch.frames)
    rows = [qwen3_stock_ids(adapter, batch, prompts, i) for i in range(2)]
    length = max(map(len, rows))
    ids = torch.full((2, length), adapter.pad_token_id)
    attn = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], attn[i, : len(row)] = row, 1
    mm = (ids == adapter.video_token_id).long() * 2
    pos, _ = eager.model.get_rope_index(ids, mm_token_type_ids=mm, video_grid_thw=grid_thw, attention_mask=attn)
    with torch.no_grad():
        out = eager(
            input_ids=ids,
            pixel_values_videos=pixels,
            video_grid_thw=grid_thw,
            mm_token_type_ids=mm,
            attention_mask=attn,
            position_ids=pos,
            output_attentions=True,
        )
    types = getattr(eager.config.text_config, "layer_types", None) or ["full_attention"] * 4  # Qwen3-VL: none
    full = [i for i, t in enumerate(types) if t == "full_attention"]
    assert len(out.attentions) == len(full) and (family == "qwen3_vl" or full == [1, 3])
    diffs = []
    for layer, att in zip(full, out.attentions):
        ref = []
        for i in range(2):
            last = len(rows[i]) - len(prompts.post_ids[i]) + prompts.answer_start[i] - 1
            ref.append(att[i, :, last, ids[i] == adapter.video_token_id].mean(0))
        got = adapter.video_attention(visual, prompts, layer)
        diffs.append((got - torch.stack(ref)).abs().max().item())
    print(f"\n{family} video_attention vs eager: max diff per full-attention layer {[f'{d:.1e}' for d in diffs]}")
    assert max(diffs) < 1e-5 and torch.stack(ref).std(-1).min() > 1e-3


def test_qwen3_5_padding_does_not_reach_the_answer():
    # (f) Qwen3.5's recurrent layers: a row padded with many slots (its neighbour keeps all tokens, it keeps one)
    # scores as alone; the same rows alone vs together, in both orders.
    adapter = build_mllm(MLLMConfig(family="qwen3_5"))
    one = select(make_batch(seconds_per_frame=SPF), 0)
    visual, prompts = adapter.encode(one), adapter.tokenize(one)
    masks = torch.zeros(1, 2, 16, dtype=torch.bool)
    masks[0, 0] = True
    masks[0, 1, 5] = True
    both = adapter.score(visual, prompts, masks)
    flipped = adapter.score(visual, prompts, masks.flip(1))
    alone = [adapter.score(visual, prompts, masks[:, j : j + 1]) for j in range(2)]
    d = max(
        max((both.ce[0, j] - alone[j].ce[0, 0]).abs().item(), (flipped.ce[0, 1 - j] - alone[j].ce[0, 0]).abs().item())
        for j in range(2)
    )
    print(f"\nqwen3_5 padded (+15 pad slots) vs alone: max|dCE|={d:.2e}")
    assert d < 1e-5 and (alone[0].ce - alone[1].ce).abs().item() > 1e-2


def test_saved_tiny_loads_and_other_family_policy_is_refused(adapter, batch, tmp_path):
    # (g) save_tiny -> stock from_pretrained via build_mllm(path=...) -> identical CE; a policy trained for the
    # other Qwen3 family (the same width 64) is refused with one line naming both.
    path = save_tiny(tmp_path / adapter.family, adapter.family, seed=0)
    loaded = build_mllm(MLLMConfig(family=adapter.family, path=str(path)))
    assert loaded.identity()["path"] == str(path) and loaded.mean == (0.5, 0.5, 0.5)
    # AutoTokenizer alone maps model_type qwen3_5 to Qwen3_5Tokenizer, which rebuilds a byte-level BPE from the saved
    # vocabulary and splits the tiny words apart; the saved tokenizer_config declares PreTrainedTokenizerFast, which
    # load_tokenizer honours: the reloaded tokenizer gives the in-memory one's ids.
    text = "<0.5 seconds> which digit appeared ? 12"
    assert loaded.tokenizer(text)["input_ids"] == adapter.tokenizer(text)["input_ids"]
    masks = make_masks(2, 3, 16)
    a = adapter.score(adapter.encode(batch), adapter.tokenize(batch), masks)
    b = loaded.score(loaded.encode(batch), loaded.tokenize(batch), masks)
    assert torch.allclose(a.ce, b.ce, atol=1e-6) and torch.allclose(a.option_logits, b.option_logits, atol=1e-6)
    other = "qwen3_5" if adapter.family == "qwen3_vl" else "qwen3_vl"
    ident = {"family": other, "hidden_size": 64, "path": "tiny-random"}
    policy = save_policy(
        tmp_path / "p.pt",
        build_policy(128, PolicyConfig(name="mlp", hidden=8)),
        PolicyConfig(name="mlp", hidden=8),
        ident,
    )
    with pytest.raises(
        ConfigError,
        match=f"trained for {other} with width 64, but the configured MLLM is {adapter.family} with width 64",
    ):
        load_policy(policy, expect_mllm=adapter.identity())


def test_cached_rows_carry_deepstack(tmp_path):
    # A batch whose first row comes from the feature cache (written by FeatureCache.save as cache-features does) and
    # whose second is encoded gives the same VisualTokens, DeepStack features included, as encoding both.
    from dataclasses import replace

    from score_lit.data.encode import encode
    from score_lit.data.feature_cache import FeatureCache

    adapter = build_mllm(MLLMConfig(family="qwen3_vl"))
    batch = make_batch(seconds_per_frame=SPF)
    full = adapter.encode(batch)
    cache = FeatureCache(tmp_path, {"m": 1})
    cache.save("k0", full.tokens[0], full.positions[0], full.grid, full.deepstack[0])
    mixed = encode(adapter, replace(batch, frames=batch.frames[1:], features=[cache.load("k0"), None]))
    assert torch.equal(mixed.tokens, full.tokens) and torch.equal(mixed.deepstack, full.deepstack)
