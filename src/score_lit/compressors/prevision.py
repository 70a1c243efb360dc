"""SCORE with a pre-vision stage: a cheap gate before the vision tower's blocks decides which tokens' groups the tower
runs on at all, then the trained policy ranks the survivors (docs/PREVISION.md).

    gate      s_{t,g} = ||u_{t,g} - u_{t-1,g}||_2 per merged-token group g of temporal unit t, u = its pixels (gate
              "pixel": the m x m patches x tps frames as the processor normalised them) or its patch embeddings
              ("embed": patch_embed over every patch first); unit 0 always passes (s = +inf)
    pre-keep  the top k_pre = ceil(min(1, max(looseness x r, floor)) T N) of s, globally (ties to the earlier token)
    vision    the tower on the pre-kept groups only (score_lit.mllm.vision_prune via mllm.encode_groups: windows and
              full-attention segments shrink to their kept patches, rotary positions stay each patch's own); a
              dropped token holds the last kept token at its position, so the policy's change feature is 0 there
    policy    SCORE's logits over the whole grid (ScoreCompressor), dropped tokens set to -inf
    keep      the top k = ceil(r T N) of those: only pre-kept tokens, with the pruned tower's features

What the LLM sees are the pruned tower's features of the kept tokens; nothing comes from a full-tower pass. The sweep
calls `select_video(video, ratio, prompts)` for such a method (`encodes = True`) with the batch's own video inputs,
once per ratio (the gate's budget depends on r), and records the tower's FLOPs of the pre-kept groups in its vision
column (every other method pays the whole tower there). The gate (pixel: residuals and norms, 3 F per scored group;
embed: patch_embed over every patch + the same over its output) and the policy over all T N tokens are the
selection's FLOPs.

Not in the paper (SCORE prunes after the projector); ours. Registered variants: score_prevision (pixel gate, 3x),
score_prevision_embed (patch-embedding gate, 3x), score_prevision_next (unit 0 gated by its change to unit 1 instead of
always passing), score_prevision_2x / _5x (pixel gate at 2x / 5x the final budget), score_prevision_min25 (3x, but
never under 25% of the tokens: what held accuracy at 5% on the evidence benchmark, docs/PREVISION.md).
Global selection only (policy.selection=per_frame is refused).
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor, nn

from score_lit.compressors.score import ScoreCompressor
from score_lit.compressors.topk import keep_top
from score_lit.types import Selection, VisualTokens

GATES = ("pixel", "embed")


FIRST_UNIT = ("always", "next")


def gate_scores(x: Tensor, first_unit: str = "always") -> Tensor:
    """x [B, T, N, F] per-group gate inputs -> [B, T*N] float32: ||x_t - x_{t-1}|| per group; unit 0 = +inf
    ("always": it always passes) or ||x_0 - x_1|| ("next": only where it differs from unit 1, like surprise's rule)."""
    if first_unit not in FIRST_UNIT:
        raise ValueError(f"first_unit={first_unit!r}: use one of {FIRST_UNIT}")
    b, t, n, _ = x.shape
    s = torch.full((b, t, n), math.inf, device=x.device)
    if t > 1:
        s[:, 1:] = (x[:, 1:].float() - x[:, :-1].float()).norm(dim=-1)
        if first_unit == "next":
            s[:, 0] = s[:, 1]
    return s.reshape(b, t * n)


class PreVisionScore:
    """Pre-vision gate -> pruned vision tower -> SCORE's top-k among the survivors (module docstring)."""

    name = "score_prevision"
    gate = "pixel"
    first_unit = "always"  # gate_scores' rule for unit 0
    looseness = 3.0  # the gate keeps looseness x the final budget ...
    floor = 0.0  # ... and at least this share of the tokens (min(1, max(looseness r, floor)))
    ranks = False
    encodes = True  # the sweep hands it the batch's video inputs: it runs its own (pruned) vision tower
    per_frame = False

    def __init__(
        self,
        policy: nn.Module | None = None,
        policy_path: str | os.PathLike | None = None,
        selection: str = "global",
        mllm: Any = None,
    ):
        if mllm is None:
            raise ValueError(f"{self.name} runs the vision tower itself: build it with mllm=")
        if selection != "global":
            raise ValueError(f"{self.name}: selection={selection!r} is not supported (global top-k only)")
        if self.gate not in GATES:
            raise ValueError(f"gate={self.gate!r}: use one of {GATES}")
        self.score = ScoreCompressor(policy, policy_path, selection, mllm)
        self.mllm = mllm
        self.needs_prompts = self.score.needs_prompts

    def pre_keep(self, video, ratio: float) -> Tensor:
        """[B, T*N] bool: the groups the vision tower runs on at final ratio `ratio`."""
        scores = gate_scores(self.mllm.group_inputs(video, embed=self.gate == "embed"), self.first_unit)
        return keep_top(scores, self.gate_ratio(ratio), video.grid)

    def gate_ratio(self, ratio: float) -> float:
        """The share of tokens whose groups enter the vision tower at final ratio `ratio`."""
        return min(1.0, max(self.looseness * ratio, self.floor))

    @torch.no_grad()
    def select_video(self, video, ratio: float, prompts: Any = None) -> tuple[VisualTokens, Selection, Tensor]:
        """video: mllm.video_inputs(batch) -> (VisualTokens of the pruned tower, the final Selection inside the
        gate's, the gate's keep [B, T*N])."""
        pre = self.pre_keep(video, ratio)
        visual = self.mllm.encode_groups(video, pre)
        pre = pre.to(visual.tokens.device)
        logits = self.score.rank(visual, prompts).masked_fill(~pre, -math.inf)
        keep = keep_top(logits, ratio, visual.grid) & pre
        return visual, Selection(keep=keep), pre

    def select(self, visual: VisualTokens, ratio: float, prompts: Any = None) -> Selection:
        raise TypeError(f"{self.name} needs the frames, not the tower's output: call select_video(video, ...)")

    def gate_flops(self, shape: tuple[int, int, int]) -> int:
        """The gate's FLOPs per video: 3 F per group of units 1.. (subtract, square, add; the root per group is
        within), + patch_embed over every patch for the embed gate."""
        t, n, _ = shape
        vc = self.mllm.model.config.vision_config
        m2 = int(vc.spatial_merge_size) ** 2
        in_dim = int(getattr(vc, "in_channels", 3)) * int(vc.temporal_patch_size) * int(vc.patch_size) ** 2
        if self.gate == "pixel":
            return 3 * (t - 1) * n * m2 * in_dim
        w = int(vc.hidden_size)
        return 2 * t * n * m2 * in_dim * w + 3 * (t - 1) * n * m2 * w

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """The gate + SCORE's state and policy over all T N tokens (ScoreCompressor.selection_flops)."""
        return self.gate_flops(shape) + self.score.selection_flops(shape, ratio, text_tokens, llm)


class PreVisionScoreEmbed(PreVisionScore):
    name, gate = "score_prevision_embed", "embed"


class PreVisionScoreNext(PreVisionScore):
    name, first_unit = "score_prevision_next", "next"


class PreVisionScoreMin25(PreVisionScore):
    name, floor = "score_prevision_min25", 0.25


class PreVisionScore2x(PreVisionScore):
    name, looseness = "score_prevision_2x", 2.0


class PreVisionScore5x(PreVisionScore):
    name, looseness = "score_prevision_5x", 5.0


__all__ = [
    "FIRST_UNIT",
    "GATES",
    "PreVisionScore",
    "PreVisionScore2x",
    "PreVisionScore5x",
    "PreVisionScoreEmbed",
    "PreVisionScoreMin25",
    "PreVisionScoreNext",
    "gate_scores",
]
