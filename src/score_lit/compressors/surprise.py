"""Training-free surprise top-k: the SCORE state without the learned policy (the ablation of what RL adds).

Score every token by the norm of its temporal residual at the same spatial position,

    s_{t,i} = ||x_{t,i} - x_{t-1,i}||_2          (t >= 1)

and keep the k = ceil(r * T * N) highest, globally over the video (units that change get more of the
budget), ties to the earlier token (a static video keeps its earliest tokens first). These are the
features the policy sees (score_lit.rl.state.temporal_residual), with no learning on top.

The first unit has no predecessor and needs a rule (../../docs/METHOD.md "State"); `first_unit`:
- "next" (default): s_{0,i} = ||x_{0,i} - x_{1,i}||, its change TO unit 1. A first unit that differs
  from what follows is kept like any cut; a static one is never favoured over real changes.
- "self": s_{0,i} = ||x_{0,i}||, the figure's dX_1 = X_1. The norm of a feature dwarfs most residuals,
  so unit 0 outranks every change and eats a small budget: a prototype of this project measured 0.17
  accuracy at 10% retention on `flash` with this rule (docs/METHOD.md), which is why it is not the default.
- "zero": unit 0 ranks after every other token (score -1 < any norm): kept only when the budget
  covers all later units, or ties at the end of the ranking.
With a single unit (T = 1) "next" has nothing to compare with and falls back to "self".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from score_lit.compressors.flops import surprise_flops
from score_lit.compressors.topk import TopK
from score_lit.rl.state import surprise_norm
from score_lit.types import VisualTokens

FIRST_UNIT_RULES = ("next", "self", "zero")


def surprise_scores(x: Tensor, first_unit: str = "next") -> Tensor:
    """x [B, T, N, D] -> scores [B, T, N] (float32): ||dX|| with unit 0 scored by `first_unit`."""
    if first_unit not in FIRST_UNIT_RULES:
        raise ValueError(f"first_unit={first_unit!r}: use one of {FIRST_UNIT_RULES}")
    x = x.float()
    s = surprise_norm(x)  # unit 0 = ||x_0|| ("self")
    if first_unit == "next" and x.shape[-3] > 1:
        s[..., 0, :] = (x[..., 0, :, :] - x[..., 1, :, :]).norm(dim=-1)
    elif first_unit == "zero":
        s[..., 0, :] = -1.0
    return s


class SurpriseTopK(TopK):
    """Global top-k by ||x_t - x_{t-1}||; the first unit by `first_unit` ("next" default; module docstring)."""

    name = "surprise"

    def __init__(self, first_unit: str = "next"):
        if first_unit not in FIRST_UNIT_RULES:
            raise ValueError(f"first_unit={first_unit!r}: use one of {FIRST_UNIT_RULES}")
        self.first_unit = first_unit

    @torch.no_grad()
    def rank(self, visual: VisualTokens, prompts: Any = None) -> Tensor:
        """[B, T*N] float32: surprise_scores in sequence order."""
        b, t, n, _ = visual.tokens.shape
        return surprise_scores(visual.tokens, self.first_unit).reshape(b, t * n)

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """Residuals and their norms, about 3 V D (score_lit.compressors.flops.surprise_flops). shape = (T, N, D)."""
        t, n, d = shape
        return surprise_flops(t, n, d, self.first_unit)
