"""The trained SCORE policy as a compressor (../../docs/METHOD.md "Inference").

    h = [LN(x); LN(dx)]   (score_lit.rl.state.surprise_state)
    logits = policy(h)    [B, T*N]
    keep = top-k(logits), k = ceil(r * T * N), globally over the video, or k_t = ceil(r * N) per unit

Top-k of the logits equals top-k of p = sigmoid(logits). One trained policy serves every ratio: `rank` is
the logits (state, policy and question embedding once per batch), cut at each ratio by
score_lit.compressors.topk.keep_top.
The policy is loaded with score_lit.training.checkpoint.load_policy when only a path is given; with `mllm`
the checkpoint's model width is checked against mllm.identity() (a policy trained for another model
family fails with load_policy's message). The policy runs on the tokens' device in its own dtype
(float32 from training): the state is float32 and is cast to the policy, not the policy to bf16.

Selection FLOPs (score_lit.compressors.flops.policy_flops): the state (dX, two layer norms) and the MLP over every
one of the T N tokens, whatever the ratio: (T-1) N D + 10 V D + V (4 D h + 4 h + 1).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from score_lit.compressors.flops import policy_flops, temporal_policy_flops
from score_lit.compressors.topk import TopK
from score_lit.rl.policy import MLPPolicy, QueryPolicy, TemporalPolicy
from score_lit.rl.state import surprise_state
from score_lit.training.checkpoint import load_policy
from score_lit.types import VisualTokens

SELECTIONS = ("global", "per_frame")


class ScoreCompressor(TopK):
    """Top-k of a trained policy's logits over the surprise-augmented state (module docstring)."""

    name = "score"

    def __init__(
        self,
        policy: nn.Module | None = None,
        policy_path: str | os.PathLike | None = None,
        selection: str = "global",
        mllm: Any = None,
    ):
        if selection not in SELECTIONS:
            raise ValueError(f"selection={selection!r}: use one of {SELECTIONS}")
        if policy is None:
            if policy_path is None:
                raise ValueError(
                    "the score compressor needs a policy: pass policy=... or policy_path=runs/<name>/policy.pt"
                )
            policy, _ = load_policy(policy_path, expect_mllm=mllm.identity() if mllm is not None else None)
        self.policy = policy.eval()
        self.selection = selection
        self.per_frame = selection == "per_frame"  # k_t = ceil(r * N) in every unit (score_lit.compressors.topk)
        self.mllm = mllm
        # A question-conditioned policy (query_mlp) reads the prompt: eval then passes the tokenized prompts.
        self.needs_prompts = bool(getattr(policy, "needs_question", False))
        if self.needs_prompts and mllm is None:
            raise ValueError(
                f"policy {type(policy).__name__} is conditioned on the question: build the score compressor with mllm="
            )

    @torch.no_grad()
    def logits(self, visual: VisualTokens, prompts: Any = None) -> torch.Tensor:
        """[B, T*N] float32 keep logits (prompts: the tokenized batch, for a question-conditioned policy)."""
        x = visual.tokens
        param = next(self.policy.parameters(), None)
        if param is not None and param.device != x.device:
            self.policy.to(x.device)
            param = next(self.policy.parameters())
        state = surprise_state(x)
        if param is not None:
            state = state.to(param.dtype)
        question = None
        if self.needs_prompts:
            if prompts is None:
                raise ValueError(
                    "the score policy is conditioned on the question: select(visual, ratio, prompts=mllm.tokenize(batch)) "
                    "or rank(visual, prompts=...)"
                )
            question = self.mllm.question_embedding(prompts).to(state.device, state.dtype)
        return self.policy(state, question).float()

    def rank(self, visual: VisualTokens, prompts: Any = None) -> torch.Tensor:
        """[B, T*N] float32: the keep logits (`logits`), cut per ratio by the shared top-k."""
        return self.logits(visual, prompts)

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """State + MLP over all T N tokens (module docstring). shape = (T, N, D). The `mlp`, `query_mlp`
        and `temporal_mlp` policies have a formula; another registered policy raises NotImplementedError (add its
        count to score_lit.compressors.flops)."""
        t, n, d = shape
        if isinstance(self.policy, QueryPolicy):  # + the question's FiLM (D x 2h, its norm) and 2 ops per token x unit
            h = self.policy.hidden
            return policy_flops(t, n, d, h) + 2 * d * 2 * h + 10 * d + 2 * t * n * h
        if isinstance(self.policy, TemporalPolicy):
            return temporal_policy_flops(t, n, d, self.policy.hidden, self.policy.TEMPORAL_KERNEL)
        if not isinstance(self.policy, MLPPolicy):
            raise NotImplementedError(f"selection_flops: no FLOP formula for policy {type(self.policy).__name__}")
        return policy_flops(t, n, d, self.policy.net[0].out_features)
