"""Ranking compressors: rank the visual tokens once, keep the top k at any retention ratio.

    scores = comp.rank(visual, prompts)                 # [B, T*N] float, higher = keep first
    keep = keep_top(scores, ratio, visual.grid, comp.per_frame)   # [B, T*N] bool, any ratio, no re-ranking
    comp.select(visual, ratio, prompts)                 # the same keep in one call (rank + cut)

The cut is one function for every ranking method (score, surprise, fastv, random): k = keep_count(r, T*N)
over the whole video, or k_t = keep_count(r, N) in every temporal unit for `per_frame`, the highest scores
kept and ties to the earlier token (score_lit.rl.policy.stable_topk_mask). A ranking does not depend on the
ratio, so the sweep ranks once per batch and cuts at every ratio; `select` stays for callers that want one
ratio (the lmms-eval plugin, `viz`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from score_lit.rl.policy import topk_mask
from score_lit.types import Selection, VisualTokens


def keep_top(scores: Tensor, ratio: float, grid: tuple[int, int, int], per_frame: bool = False) -> Tensor:
    """scores [B, T*N] -> keep [B, T*N] bool: the top keep_count(ratio, T*N) per row (per_frame: the top
    keep_count(ratio, N) of each of the T units), ties to the earlier token."""
    return topk_mask(scores, ratio, grid, per_frame=per_frame)


class TopK:
    """Base of the ranking compressors: a subclass writes `rank`; `select` is the shared cut of it."""

    ranks = True  # the sweep ranks once per batch and cuts at every ratio (score_lit.compressors.Ranker)
    per_frame = False  # the budget is per temporal unit instead of over the whole video
    needs_prompts = False

    def rank(self, visual: VisualTokens, prompts: Any = None) -> Tensor:
        """[B, T*N] float scores, higher = kept first."""
        raise NotImplementedError

    @torch.no_grad()
    def select(self, visual: VisualTokens, ratio: float, prompts: Any = None) -> Selection:
        keep = keep_top(self.rank(visual, prompts), ratio, visual.grid, self.per_frame)
        return Selection(keep=keep.to(visual.tokens.device))
