"""Rollouts: K keep masks per sample -> one batched pass of the frozen MLLM -> CE per rollout.

docs/METHOD.md steps 1-3. The LLM is frozen, so CE_base (all visual tokens) of a sample never changes:
it is cached by sample id and computed only for samples the cache has not seen, as one more row of
the same padded batch as the rollouts (so a step makes exactly one LLM call).
Everything here runs without grad; the policy's graph lives only in its logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from score_lit.mllm.adapter import VideoMLLM
from score_lit.types import LLMScores, Rollout, VisualTokens


@dataclass
class BaselineCache:
    """Per-sample results with all visual tokens: CE_base and whether the answer was right, kept as 0-d tensors on
    the device they were computed on (no host sync to store them, none to read them back)."""

    ce: dict[str, Tensor] = field(default_factory=dict)  # id -> 0-d float32
    correct: dict[str, Tensor] = field(default_factory=dict)  # id -> 0-d bool

    def missing(self, ids: list[str]) -> bool:
        return any(i not in self.ce for i in ids)

    def put(self, ids: list[str], ce: Tensor, correct: Tensor | None = None) -> None:
        """ce [B] (and correct [B] bool) of the samples `ids`, copied out of the batch's tensors."""
        self.ce.update(zip(ids, ce.detach().float().clone().unbind(0)))
        if correct is not None:
            self.correct.update(zip(ids, correct.detach().clone().unbind(0)))

    def get(self, ids: list[str], device: torch.device) -> Tensor:
        """[B] float32 CE_base of `ids` on `device`."""
        return torch.stack([self.ce[i] for i in ids]).to(device)

    def get_correct(self, ids: list[str], device: torch.device) -> Tensor:
        """[B] bool: the full-token answer of `ids` was right."""
        return torch.stack([self.correct[i] for i in ids]).to(device)


@torch.no_grad()
def score_with_baseline(
    mllm: VideoMLLM,
    visual: VisualTokens,
    prompts,
    masks: Tensor,
    ids: list[str],
    cache: BaselineCache,
    answer_index: Tensor,
) -> tuple[LLMScores, Tensor]:
    """Score masks [B, R, L]; fill the baseline cache in the same call when it lacks a sample.

    Returns (scores for the R given masks, ce_base [B])."""
    need_base = cache.missing(ids)
    if need_base:
        full = torch.ones_like(masks[:, :1])
        masks = torch.cat([masks, full], dim=1)  # [B, R+1, L]
    scores = mllm.score(visual, prompts, masks)
    if need_base:
        opts = scores.option_logits[:, -1]  # [B, C]; C = 0 when every row is open-ended (no accuracy)
        base_correct = (
            opts.argmax(-1) == answer_index if opts.shape[-1] else torch.zeros_like(answer_index, dtype=torch.bool)
        )
        cache.put(ids, scores.ce[:, -1], base_correct)
        scores = LLMScores(ce=scores.ce[:, :-1], option_logits=scores.option_logits[:, :-1])
    return scores, cache.get(ids, masks.device)


def collect_rollouts(
    mllm: VideoMLLM,
    visual: VisualTokens,
    prompts,
    masks: Tensor,
    ids: list[str],
    cache: BaselineCache,
    answer_index: Tensor,
    budgets: Tensor | None = None,
) -> Rollout:
    """masks [B, K, T*N] bool (budgets [B, K] of the budget sampler, or None) -> Rollout with ce [B, K], ce_base [B]."""
    scores, ce_base = score_with_baseline(mllm, visual, prompts, masks, ids, cache, answer_index)
    return Rollout(masks=masks, ce=scores.ce.float(), ce_base=ce_base, budgets=budgets)
