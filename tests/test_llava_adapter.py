"""The LLaVA-OneVision adapter against the STOCK transformers model (tiny random LlavaOnevisionForConditionalGeneration).

Equivalences (max abs differences are printed with -s):
(a) keep-all rows == the plain stock forward (input_ids + pixel_values_videos, default positions, no mask), both modes;
(b) partial masks, position_ids=original == the stock full sequence with dropped video tokens masked out as keys;
(c) partial masks, position_ids=compacted == the stock model on the pruned inputs_embeds, default positions;
(d) one padded B*K batch == each row alone (tests/test_adapters.py); (e) encode == the stock video features minus the
newline; (f) a saved tiny checkpoint loads through build_mllm; (g) video_attention == stock eager attention;
(h) a Qwen-width policy is refused on LLaVA-OV with load_policy's clear error; (i) token-only eval methods run.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import make_batch, make_masks, select
from reference import llava_reference_scores as reference_scores

from score_lit.compressors import apply_selection, build_compressor
from score_lit.config import ConfigError, MLLMConfig, PolicyConfig
from score_lit.mllm import build_mllm
from score_lit.mllm.adapter import VideoMLLM
from score_lit.mllm.llava_onevision import LLAVA_OV_TEMPLATE, LlavaOnevisionAdapter
from score_lit.mllm.tiny import save_tiny
from score_lit.rl.policy import build_policy
from score_lit.training.checkpoint import load_policy, save_policy
from score_lit.types import VideoBatch

FAMILY = "llava_onevision"
FRAMES, SIZE = 4, 48  # frames are resized to the tiny tower's 40x40: 5x5 patches -> 3x3 pooled tokens per frame


def llava(**kw):
    return build_mllm(MLLMConfig(family=FAMILY, **kw))


@pytest.fixture(scope="module")
def adapter():
    return llava()


@pytest.fixture(scope="module")
def compacted(adapter):
    other = llava(position_ids="compacted")
    other.model = adapter.model  # same weights, no second build
    return other


@pytest.fixture(scope="module")
def batch():
    return make_batch(f=FRAMES, size=SIZE)


def stock_scores(adapter, batch):
    """The plain stock forward per sample: input_ids with T*N + 1 <video> placeholders + pixel_values_videos,
    no attention mask, no position ids -> (ce [B], option logits [B, C])."""
    prompts, pixels, v = adapter.tokenize(batch), adapter.pixels(batch.frames), None
    ce, opts = [], []
    for i, (pre, post) in enumerate(zip(prompts.pre_ids, prompts.post_ids)):
        v = adapter.encode(select(batch, i)).num_tokens
        ids = torch.tensor([pre + [adapter.video_token_id] * (v + 1) + post])
        logits = adapter.model(input_ids=ids, pixel_values_videos=pixels[i : i + 1]).logits[0].float()
        a0, n = len(pre) + v + 1 + prompts.answer_start[i], prompts.answer_len[i]
        ce.append(F.cross_entropy(logits[a0 - 1 : a0 - 1 + n], ids[0, a0 : a0 + n]))
        opts.append(logits[a0 - 1, prompts.option_ids[i]])
    return torch.stack(ce), torch.stack(opts)


def test_encode_pooled_tokens_and_newline(adapter, batch):
    visual = adapter.encode(batch)
    assert visual.grid == (FRAMES, 3, 3) and visual.tokens.shape == (2, FRAMES, 9, adapter.hidden_size)
    assert visual.positions.shape == (2, 1, FRAMES * 9) and visual.positions[1, 0].tolist() == list(range(FRAMES * 9))
    with torch.no_grad():  # the stock video path: [B, F*N + 1, D], the last row is the learned image_newline
        stock = adapter.model.model.get_video_features(adapter.pixels(batch.frames), return_dict=True).pooler_output
    assert stock.shape == (2, FRAMES * 9 + 1, adapter.hidden_size)
    assert torch.equal(visual.flat(), stock[:, :-1])
    assert torch.equal(stock[:, -1], adapter.model.model.image_newline.expand(2, -1))
    assert not any(p.requires_grad for p in adapter.model.parameters()) and not adapter.model.training
    assert isinstance(adapter, VideoMLLM)
    assert adapter.identity() == {"family": FAMILY, "hidden_size": 64, "path": "tiny-random"}
    assert adapter.mean == adapter.std == (0.5, 0.5, 0.5)


def test_tokenize_uses_llava_template(adapter, batch):
    assert adapter.cfg.prompt_template == LLAVA_OV_TEMPLATE  # the Qwen default was swapped for the family's own
    prompts = adapter.tokenize(batch)
    tok = adapter.tokenizer.convert_ids_to_tokens
    assert tok(prompts.pre_ids[0])[-2:] == ["<|im_start|>", "user"] and adapter.video_token_id not in prompts.pre_ids[0]
    for i in range(2):
        s, n = prompts.answer_start[i], prompts.answer_len[i]
        assert tok(prompts.post_ids[i][s : s + n]) == (["red"], ["B", ".", "two"])[i]
        assert tok(prompts.post_ids[i][s - 2 : s]) == ["<|im_start|>", "assistant"]
        assert prompts.option_ids[i, batch.answer_index[i]] == prompts.post_ids[i][s]
    custom = "<|im_start|>user {question} {video}<|im_end|><|im_start|>assistant\n"
    assert llava(prompt_template=custom).cfg.prompt_template == custom


@pytest.mark.parametrize("mode", ["original", "compacted"])
def test_keep_all_equals_plain_stock_forward(adapter, compacted, batch, mode):
    # (a) with nothing dropped both position modes are the stock model's own forward.
    a = adapter if mode == "original" else compacted
    got = a.score(a.encode(batch), a.tokenize(batch), torch.ones(2, 1, FRAMES * 9, dtype=torch.bool))
    with torch.no_grad():
        ce, opts = stock_scores(a, batch)
    d_ce, d_opt = (got.ce[:, 0] - ce).abs().max().item(), (got.option_logits[:, 0] - opts).abs().max().item()
    print(f"\nllava keep-all {mode} vs stock: max|dCE|={d_ce:.2e} max|dopt|={d_opt:.2e}")
    assert d_ce < 1e-5 and d_opt < 1e-5


@pytest.mark.parametrize("mode", ["original", "compacted"])
def test_partial_masks_equal_reference(adapter, compacted, batch, mode):
    # (b) original: stock full sequence, dropped tokens masked as keys; (c) compacted: stock on the pruned
    # embeddings. Masks keep all / ~half / ~15% / none (the newline stays even with no video token).
    a = adapter if mode == "original" else compacted
    visual, prompts = a.encode(batch), a.tokenize(batch)
    masks = make_masks(2, 4, visual.num_tokens)
    got = a.score(visual, prompts, masks)
    ref = reference_scores(a, batch, masks)
    d_ce, d_opt = (got.ce - ref.ce).abs().max().item(), (got.option_logits - ref.option_logits).abs().max().item()
    print(f"\nllava partial {mode}: max|dCE|={d_ce:.2e} max|dopt|={d_opt:.2e}")
    assert got.ce.shape == (2, 4) and got.option_logits.shape == (2, 4, 4)
    assert d_ce < 1e-4 and d_opt < 1e-4
    assert (got.ce[:, 1:] - got.ce[:, :1]).abs().max() > 1e-2  # the test can see pruning


def test_position_modes_differ_when_tokens_are_dropped(adapter, compacted, batch):
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    masks = make_masks(2, 3, visual.num_tokens, seed=3)
    a, b = adapter.score(visual, prompts, masks), compacted.score(visual, prompts, masks)
    assert torch.allclose(a.ce[:, 0], b.ce[:, 0], atol=1e-6)  # keep-all: identical ids
    assert (a.ce[:, 1:] - b.ce[:, 1:]).abs().max() > 1e-3  # gaps vs renumbered: the knob matters
    with pytest.raises(ValueError, match="'original' or 'compacted'"):
        MLLMConfig(family=FAMILY, position_ids="shifted")
    with pytest.raises(ConfigError, match="not implemented for qwen2_5_vl"):
        MLLMConfig(family="qwen2_5_vl", position_ids="compacted")


def test_saved_tiny_loads_through_build_mllm(adapter, batch, tmp_path):
    # (f) save -> stock from_pretrained via build_mllm(path=...) -> mean / std from preprocessor_config.json, same scores.
    loaded = llava(path=str(save_tiny(tmp_path / "llava", FAMILY, seed=0)))
    assert loaded.identity()["path"] == str(tmp_path / "llava") and loaded.mean == (0.5, 0.5, 0.5)
    masks = make_masks(2, 3, FRAMES * 9)
    a = adapter.score(adapter.encode(batch), adapter.tokenize(batch), masks)
    b = loaded.score(loaded.encode(batch), loaded.tokenize(batch), masks)
    assert torch.allclose(a.ce, b.ce, atol=1e-6) and torch.allclose(a.option_logits, b.option_logits, atol=1e-6)


def test_video_attention_equals_stock_eager(adapter, batch):
    # (g) a 4-layer model: adapter on SDPA vs the stock eager forward's attention probabilities.
    from transformers import LlavaOnevisionForConditionalGeneration

    def model(attn):
        _, config = LlavaOnevisionAdapter.tiny_config(LlavaOnevisionAdapter.tiny_tokenizer(), {"num_hidden_layers": 4})
        config._attn_implementation = attn
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return LlavaOnevisionForConditionalGeneration(config).eval().requires_grad_(False)

    deep = llava()
    deep.model, eager = model("sdpa"), model("eager")
    visual, prompts = deep.encode(batch), deep.tokenize(batch)
    v = visual.num_tokens
    rows = [pre + [deep.video_token_id] * (v + 1) + post for pre, post in zip(prompts.pre_ids, prompts.post_ids)]
    ids = torch.full((2, max(map(len, rows))), deep.pad_token_id)
    attn = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)], attn[i, : len(row)] = torch.tensor(row), 1
    with torch.no_grad():
        out = eager(
            input_ids=ids, pixel_values_videos=deep.pixels(batch.frames), attention_mask=attn, output_attentions=True
        )
    diffs = []
    for layer, att in enumerate(out.attentions):
        ref = []
        for i in range(2):
            p = len(prompts.pre_ids[i])
            ref.append(att[i, :, p + v + prompts.answer_start[i], p : p + v].mean(0))  # last prompt row (after newline)
        got = deep.video_attention(visual, prompts, layer)
        diffs.append((got - torch.stack(ref)).abs().max().item())
    print(f"\nllava video_attention vs eager: max diff per layer {[f'{d:.1e}' for d in diffs]}")
    assert max(diffs) < 1e-5 and torch.stack(ref).std(-1).min() > 1e-3


def test_qwen_policy_refused_on_llava(adapter, tmp_path):
    # (h) a policy trained for Qwen2.5-VL (width 3584) loaded next to LLaVA-OV (width 64): the clear error.
    qwen = {"family": "qwen2_5_vl", "hidden_size": 3584, "path": "/models/Qwen2.5-VL-7B-Instruct"}
    path = save_policy(
        tmp_path / "policy.pt",
        build_policy(2 * 3584, PolicyConfig(name="mlp", hidden=8)),
        PolicyConfig(name="mlp", hidden=8),
        qwen,
    )
    msg = "trained for qwen2_5_vl with width 3584.*configured MLLM is llava_onevision with width 64"
    with pytest.raises(ValueError, match=msg):
        load_policy(path, expect_mllm=adapter.identity())


def test_token_only_eval_methods_run(adapter, batch, tmp_path):
    # (i) the sweep's per-method path (select -> apply_selection -> score) for methods that only use tokens.
    policy = save_policy(
        tmp_path / "p.pt",
        build_policy(128, PolicyConfig(name="mlp", hidden=8)),
        PolicyConfig(name="mlp", hidden=8),
        adapter.identity(),
    )
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    for m in ("score", "surprise", "random", "uniform", "fastv"):
        comp = build_compressor(m, mllm=adapter, policy_path=str(policy), selection="global", seed=0, layer=1)
        sel = comp.select(visual, 0.25, prompts)
        vis, masks = apply_selection(visual, sel)
        out = adapter.score(vis, prompts, masks)
        assert masks.shape == (2, 1, FRAMES * 9) and int(masks[0].sum()) == 9 and torch.isfinite(out.ce).all(), m


def test_frames_must_be_uint8_video(adapter, batch):
    bad = VideoBatch(**{**batch.__dict__, "frames": batch.frames.float()})
    with pytest.raises(ValueError, match=r"\[B, F, 3, H, W\] uint8"):
        adapter.encode(bad)


@pytest.mark.slow
def test_short_fit_on_llava(tmp_path):
    # A 2-step Lightning fit with mllm.family=llava_onevision mllm.path=null: the policy (width 2 x 64) trains.
    from helpers import tiny_overrides

    from score_lit.config import load_config
    from score_lit.training.fit import fit

    cfg = load_config([], tiny_overrides(tmp_path, steps=2) + [f"mllm.family={FAMILY}", "mllm.path=null"])
    res = fit(cfg)
    policy, meta = load_policy(res.policy_path, expect_mllm=llava().identity())
    assert meta["mllm"]["family"] == FAMILY and meta["meta"]["global_step"] == 2
