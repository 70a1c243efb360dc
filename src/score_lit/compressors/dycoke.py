"""DyCoke's temporal token merging (Tao et al., "DyCoke: Dynamic Compression of Tokens for Fast Video
Large Language Models", arXiv 2411.15024, CVPR 2025), adapted to a fixed token budget.

DyCoke has two stages. (1) Temporal token merging (TTM), before the LLM: within windows of consecutive
frames, a token of a later frame whose cosine similarity to the token at the same spatial position of
an earlier kept frame is high is redundant and is pruned (merged into that token). (2) Dynamic KV-cache
pruning during decoding, which re-selects visual tokens at every generated token. Stage (2) does not
apply here: compressors act once before a single prefill (we score teacher-forced answers), so this is
TTM only.

TTM here, per spatial position i, scanning units t = 1..T-1 against the last TTM-kept token at i
(unit 0 is always the first reference):

    c_{t,i} = cos(x_{t,i}, x_{ref(t,i),i});  pruned if c_{t,i} >= similarity, else kept and ref <- t

Deviations: one window spans the whole video (DyCoke's windows are 4 frames, a fixed pruning rate per
frame pair in its code); the threshold is DyCoke's paper formulation. Budget adaptation, so that every
method is compared at the same k = ceil(r * T * N): rank all tokens and keep exactly the k first,
  1. unit 0 (the first reference; among its tokens, those that change most into unit 1 first),
  2. TTM survivors (c < similarity), least redundant (smallest c) first,
  3. TTM-pruned tokens, smallest c first (they fill a budget larger than what TTM keeps),
ties to the earlier token. So a static video keeps unit 0 (at k = N), and a fully changing one keeps
by dissimilarity to its predecessor. Every token not kept is merged into the nearest kept token at the
same spatial position in an earlier unit (that slot carries the mean of itself and all tokens merged
into it); a dropped token with no kept token before it at its position is simply dropped.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from score_lit.compressors.flops import dycoke_flops
from score_lit.config import keep_count
from score_lit.rl.policy import stable_topk_mask
from score_lit.types import Selection, VisualTokens


def ttm_similarity(x: Tensor, similarity: float) -> tuple[Tensor, Tensor]:
    """x [B, T, N, D] -> (c [B, T, N] cosine to the reference, unit 0: to unit 1; pruned [B, T, N] bool)."""
    b, t, n, _ = x.shape
    u = F.normalize(x.float(), dim=-1)
    c = torch.zeros(b, t, n, device=x.device)
    pruned = torch.zeros(b, t, n, dtype=torch.bool, device=x.device)
    ref = u[:, 0]
    for s in range(1, t):
        c[:, s] = (u[:, s] * ref).sum(-1)
        pruned[:, s] = c[:, s] >= similarity
        ref = torch.where(pruned[:, s, :, None], ref, u[:, s])
    if t > 1:
        c[:, 0] = (u[:, 0] * u[:, 1]).sum(-1)
    return c, pruned


def merge_into_earlier(x: Tensor, keep: Tensor) -> Tensor:
    """Each dropped token joins the last kept token at its spatial position before it (if any); kept slots
    carry the mean. x [B, T, N, D], keep [B, T, N] -> tokens [B, T*N, D]."""
    b, t, n, d = x.shape
    xf = x.float()
    sums = xf.reshape(b, t * n, d).clone()
    counts = torch.ones(b, t * n, device=x.device)
    last = torch.full((b, n), -1, dtype=torch.long, device=x.device)  # flat index of the last kept token at i
    pos = torch.arange(n, device=x.device)
    for s in range(t):
        m = (~keep[:, s] & (last >= 0)).float()  # [B, N] dropped with a kept token before it
        target = last.clamp(min=0)
        sums.scatter_add_(1, target[..., None].expand(b, n, d), xf[:, s] * m[..., None])
        counts.scatter_add_(1, target, m)
        last = torch.where(keep[:, s], s * n + pos, last)
    out = torch.where(keep.reshape(b, t * n, 1), sums / counts[..., None], xf.reshape(b, t * n, d))
    return out.to(x.dtype)


class DyCoke:
    """DyCoke's TTM with a similarity threshold, ranked to meet the budget k exactly (module docstring)."""

    name = "dycoke"
    needs_prompts = False
    ranks = False  # merges per ratio: select only

    def __init__(self, similarity: float = 0.9):
        if not -1.0 <= similarity <= 1.0:
            raise ValueError(f"similarity={similarity} is a cosine threshold in [-1, 1] (DyCoke-style: about 0.9)")
        self.similarity = float(similarity)

    @torch.no_grad()
    def select(self, visual: VisualTokens, ratio: float, prompts: Any = None) -> Selection:
        x = visual.tokens
        b, t, n, _ = x.shape
        c, pruned = ttm_similarity(x, self.similarity)
        tier = torch.where(pruned, 0.0, 3.0)  # 1 - c lies in [0, 2]: tiers 6 > 3 > 0 never overlap
        tier[:, 0] = 6.0
        keep = stable_topk_mask((tier + 1.0 - c).reshape(b, t * n), keep_count(ratio, t * n))
        return Selection(keep=keep, tokens=merge_into_earlier(x, keep.reshape(b, t, n)).reshape(b, t * n, -1))

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """Normalise, cosine to the reference, merge: at most 6 V D (score_lit.compressors.flops.dycoke_flops). shape = (T, N, D)."""
        t, n, d = shape
        return dycoke_flops(t, n, d)
