"""The default policy (query_mlp, conditioned on the question) through both lmms-eval paths, in-process on the tiny
random Qwen2.5-VL, below lmms-eval's class layer (lmms_eval itself is not needed): the loglikelihood path
(score_lit.lmms.loglikelihood.document_scores) and the generate path (ScoreGeneration.generate_frames with the
family's ScoreHooks on the stock `generate`). The policy's FiLM weights are non-zero, so the question moves the
ranking: two questions about one video keep different tokens on each path, and each path keeps exactly what the
score compressor keeps when given that question's prompts."""

from __future__ import annotations

import numpy as np
import torch

from score_lit.compressors.score import ScoreCompressor
from score_lit.config import MLLMConfig, PolicyConfig
from score_lit.data.common import Sample, collate
from score_lit.inference.hooks import ScoreHooks
from score_lit.lmms.generate import ScoreGeneration
from score_lit.lmms.loglikelihood import document_scores
from score_lit.mllm.qwen_vl import Qwen25VLAdapter
from score_lit.rl.policy import build_policy

QUESTIONS = ["which digit appeared ?", "what colour was the first object ?"]
RATIO = 0.25


def _setup():
    adapter = Qwen25VLAdapter(MLLMConfig())  # tiny random, real transformers class
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        policy = build_policy(2 * adapter.hidden_size, PolicyConfig(name="query_mlp", hidden=16))
        torch.nn.init.normal_(policy.film.weight, std=1.0)  # the question matters (W_q starts at zero)
        torch.nn.init.normal_(policy.last.weight, std=1.0)
    frames = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    return adapter, ScoreCompressor(policy=policy, mllm=adapter), frames


def _expected(adapter, compressor, frames, question):
    """What the score compressor keeps for this question's prompts (score_lit eval's selection)."""
    batch = collate([Sample("d", frames, question, "3", ["3", "5"], seconds_per_frame=0.5)])
    return compressor.select(adapter.encode(batch), RATIO, adapter.tokenize(batch)).keep[0]


class _Generator(ScoreGeneration):
    """The SCORE generate mixin on a bare model, as the lmms classes set it up (no lmms-eval)."""

    hooks_class = ScoreHooks
    use_cache = True

    def __init__(self, adapter, compressor):
        self.adapter, self.model, self.tokenizer = adapter, adapter.model, adapter.tokenizer
        self.compressor, self.retention_ratio = compressor, RATIO
        self.build_hooks()


def test_query_policy_reads_the_question_on_both_lmms_paths():
    adapter, compressor, frames = _setup()
    expected = [_expected(adapter, compressor, frames, q) for q in QUESTIONS]
    assert not torch.equal(expected[0], expected[1])  # the question changes the selection
    v = expected[0].numel()
    assert int(expected[0].sum()) == int(expected[1].sum()) == -(-v // 4)

    # loglikelihood: one document, two contexts (each with both options); selection once per context
    pairs = [(q, c) for q in QUESTIONS for c in ("3", "5")]
    out = document_scores(adapter, compressor, RATIO, "d", frames, 0.5, pairs)
    keeps = [k for _, k in out]
    assert torch.equal(keeps[0], expected[0]) and torch.equal(keeps[1], expected[0])
    assert torch.equal(keeps[2], expected[1]) and torch.equal(keeps[3], expected[1])
    assert all(np.isfinite(ce) for ce, _ in out)

    # generate: the hooks select with the request's prompt
    gen = _Generator(adapter, compressor)
    for q, exp in zip(QUESTIONS, expected):
        batch = collate([Sample("generate", frames, q, "", [], seconds_per_frame=0.5)])
        [(text, n)] = gen.generate_frames([q], [batch], {"max_new_tokens": 1})
        assert n == 1 and isinstance(text, str)
        assert torch.equal(gen.hooks.last_keep[0], exp), q
    assert gen._prompts is None  # cleared after the call
