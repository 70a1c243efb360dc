"""The Qwen2/2.5-VL adapter against the STOCK transformers model (tiny random, real classes), both families.

Equivalences (max abs differences are printed with -s):
(a) keep-all rows == the stock full forward with our position ids;
(b) partial masks == the stock model on the FULL sequence with dropped video tokens masked as keys;
(c) one padded B*K batch == each row alone: tests/test_adapters.py, for every family;
(d) option logits == the reference logits; (e) a saved tiny checkpoint loads through build_mllm.
"""

import subprocess
import sys

import pytest
import torch
from helpers import QWEN_FAMILIES as FAMILIES
from helpers import make_batch, make_masks
from reference import qwen_reference_scores as reference_scores

from score_lit.config import MLLMConfig
from score_lit.mllm import build_mllm
from score_lit.mllm.adapter import VideoMLLM
from score_lit.mllm.positions import sequence_positions
from score_lit.mllm.tiny import save_tiny


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request):
    return build_mllm(MLLMConfig(family=request.param))


@pytest.fixture(scope="module")
def batch():
    return make_batch()


def test_encode_shapes_and_positions(adapter, batch):
    visual = adapter.encode(batch)
    # 8 frames of 32x32, patch 8, merge 2, temporal patch 2: T=4 units of 2x2 merged tokens.
    assert visual.grid == (4, 2, 2) and visual.tokens.shape == (2, 4, 4, adapter.hidden_size)
    assert visual.positions.shape == (2, 3, 16)
    step = 2 if adapter.family == "qwen2_5_vl" else 1  # 2 tokens/s x (2 frames x 0.5 s)
    assert visual.positions[0, 0].tolist() == [t * step for t in range(4) for _ in range(4)]
    assert visual.positions[0, 1].tolist() == [0, 0, 1, 1] * 4 and visual.positions[0, 2].tolist() == [0, 1, 0, 1] * 4
    assert not any(p.requires_grad for p in adapter.model.parameters()) and not adapter.model.training
    assert isinstance(adapter, VideoMLLM)
    assert adapter.identity() == {"family": adapter.family, "hidden_size": 64, "path": "tiny-random"}


def test_tokenize_answer_span(adapter, batch):
    prompts = adapter.tokenize(batch)
    for i in range(2):
        s, n = prompts.answer_start[i], prompts.answer_len[i]
        assert (
            adapter.tokenizer.convert_ids_to_tokens(prompts.post_ids[i][s : s + n]) == (["red"], ["B", ".", "two"])[i]
        )
        assert prompts.option_ids[i, batch.answer_index[i]] == prompts.post_ids[i][s]  # answer = its option
    assert prompts.option_ids.shape == (2, 4)


@pytest.mark.parametrize("partial", [False, True], ids=["keep_all", "partial"])
def test_score_equals_stock_model(adapter, batch, partial):
    # (a) keep-all: the stock full forward; (b) partial: stock full sequence with dropped tokens masked as keys.
    # (d) option logits from the same reference.
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    masks = make_masks(2, 4, visual.num_tokens) if partial else torch.ones(2, 1, visual.num_tokens, dtype=torch.bool)
    got = adapter.score(visual, prompts, masks)
    ref = reference_scores(adapter, batch, masks)
    d_ce = (got.ce - ref.ce).abs().max().item()
    d_opt = (got.option_logits - ref.option_logits).abs().max().item()
    print(f"\n{adapter.family} {'partial' if partial else 'keep-all'}: max|dCE|={d_ce:.2e} max|dopt|={d_opt:.2e}")
    assert got.ce.shape == masks.shape[:2] and got.option_logits.shape == (*masks.shape[:2], 4)
    assert d_ce < 1e-4 and d_opt < 1e-4
    if partial:  # the test can see pruning: dropping tokens moves CE far beyond the tolerance
        assert (got.ce[:, 1:] - got.ce[:, :1]).abs().max() > 1e-2


def test_question_before_video_template(adapter, batch):
    # Samples then differ in the text BEFORE the video (n_pre varies across the batch).
    template = "<|im_start|>user\n{question}<|vision_start|>{video}<|vision_end|><|im_end|>\n<|im_start|>assistant\n"
    other = build_mllm(MLLMConfig(family=adapter.family, prompt_template=template))
    prompts = other.tokenize(batch)
    assert len(set(map(len, prompts.pre_ids))) == 2
    masks = make_masks(2, 4, 16, seed=2)
    got = other.score(other.encode(batch), prompts, masks)
    ref = reference_scores(other, batch, masks)
    assert (got.ce - ref.ce).abs().max() < 1e-4 and (got.option_logits - ref.option_logits).abs().max() < 1e-4


def test_positions_differ_from_transformers_523_rope_index(adapter, batch):
    # Documents transformers#45381: 5.23's get_rope_index agrees on the text before and the video, but
    # starts the text after a long video earlier (s + max(H', W')) than the original rule (max + 1).
    visual, prompts = adapter.encode(batch), adapter.tokenize(batch)
    pre, post, v = prompts.pre_ids[0], prompts.post_ids[0], visual.num_tokens
    ours = sequence_positions(len(pre), visual.positions[0], len(post))
    ids = torch.tensor([pre + [adapter.video_token_id] * v + post])
    mm = (ids == adapter.video_token_id).long() * 2
    grid = torch.tensor([[visual.grid[0], visual.grid[1] * 2, visual.grid[2] * 2]])
    kwargs = {"second_per_grid_ts": torch.tensor([1.0])} if adapter.family == "qwen2_5_vl" else {}
    theirs, _ = adapter.model.model.get_rope_index(ids, mm_token_type_ids=mm, video_grid_thw=grid, **kwargs)
    n = len(pre) + v
    assert torch.equal(ours[:, :n], theirs[:, 0, :n])
    expected_gap = (
        int(visual.positions[0].max()) + 1 - max(visual.grid[1], visual.grid[2])
    )  # 2.5-VL: 7 - 2; 2-VL: 4 - 2
    assert (ours[:, n:] - theirs[:, 0, n:]).unique().tolist() == [expected_gap] and expected_gap > 0


def test_saved_tiny_loads_through_build_mllm(adapter, batch, tmp_path):
    # (e) save_tiny -> stock from_pretrained via build_mllm(path=...) -> identical CE.
    path = save_tiny(tmp_path / adapter.family, adapter.family, seed=0)
    loaded = build_mllm(MLLMConfig(family=adapter.family, path=str(path)))
    assert loaded.identity()["path"] == str(path)
    masks = make_masks(2, 3, 16)
    a = adapter.score(adapter.encode(batch), adapter.tokenize(batch), masks)
    b = loaded.score(loaded.encode(batch), loaded.tokenize(batch), masks)
    print(f"\n{adapter.family} saved vs in-memory: max|dCE|={(a.ce - b.ce).abs().max().item():.2e}")
    assert torch.allclose(a.ce, b.ce, atol=1e-6) and torch.allclose(a.option_logits, b.option_logits, atol=1e-6)


def test_bad_paths_and_family_give_clear_errors(tmp_path):
    # (f)
    with pytest.raises(ValueError, match="does not exist.*set mllm.path=null"):
        build_mllm(MLLMConfig(path=str(tmp_path / "nope")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        build_mllm(MLLMConfig(path=str(tmp_path / "file")))
    with pytest.raises(ValueError, match="has no config.json"):
        build_mllm(MLLMConfig(path=str(tmp_path)))
    with pytest.raises(
        ValueError, match=r"mllm.family='qwen3' is not registered .*; use one of \[.*'qwen2_5_vl', 'qwen2_vl'.*\]"
    ):
        MLLMConfig(family="qwen3")  # caught when the config is built, before any model code runs


def test_import_is_lazy():
    # (g) the registry imports no model code.
    code = "import sys, score_lit.mllm; assert 'transformers' not in sys.modules, 'transformers imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
