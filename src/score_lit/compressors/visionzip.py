"""VisionZip (Yang et al., "VisionZip: Longer is Better but Not Necessary in Vision Language Models",
arXiv 2412.04467, CVPR 2025), adapted to a video projector output without attention maps.

VisionZip keeps "dominant" tokens (those receiving the most [CLS] attention in the vision encoder) and
merges the rest into a few "contextual" tokens: the remaining tokens at evenly spaced indices become
centres, every other remaining token joins its most similar centre (dot product of normalised keys),
and each contextual token carries its group's merge. Its LLaVA setting keeps 54 dominant + 10
contextual of 576 at 64 tokens (about 85:15).

Here, per sample, over the whole video (VisionZip is per image), with budget k = ceil(r * T * N):
- dominant: the k_d = round(dominant_share * k) tokens (half up) with the largest L2 norm of the projector
  output (ties to the earlier token). Deviation: Qwen-VL's vision tower has no [CLS] token and SDPA /
  FlashAttention expose no attention maps; the norm is a proxy for attention received (high-norm
  tokens are the ones attention concentrates on, cf. "Vision Transformers Need Registers").
- contextual: k_c = k - k_d centres among the M remaining tokens in sequence order, at indices
  0, step, 2*step, ... with step = max(1, M // k_c) (VisionZip's rule); each non-centre joins the centre
  of highest cosine similarity of the projector outputs (VisionZip: of the last layer's keys; argmax
  ties to the first centre), and the centre's slot carries the MEAN of its group (centre included).
  Deviation: VisionZip's code adds the centre to the mean of its members; the group mean keeps the
  merged token at the scale of the projector output the LLM was trained on.
- dominant_share = 1 (or k_c = 0) drops the rest with no contextual tokens.
Kept tokens stay at their original positions (the contextual token at its centre's slot).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from score_lit.compressors.flops import visionzip_flops
from score_lit.config import keep_count
from score_lit.rl.policy import stable_topk_mask
from score_lit.types import Selection, VisualTokens


def visionzip_one(x: Tensor, k: int, dominant_share: float) -> tuple[Tensor, Tensor]:
    """One sample. x [L, D] -> (keep [L] bool, tokens [L, D] with each contextual slot = its group mean)."""
    length = x.shape[0]
    k_d = min(k, max(0, math.floor(dominant_share * k + 0.5)))  # round half up
    k_c = k - k_d
    xf = x.float()
    keep = (
        stable_topk_mask(xf.norm(dim=-1)[None], k_d)[0]
        if k_d
        else torch.zeros(length, dtype=torch.bool, device=x.device)
    )
    out = x.clone()
    if k_c == 0:
        return keep, out
    rest = (~keep).nonzero().squeeze(-1)  # [M] remaining tokens in sequence order, M >= k_c
    step = max(1, rest.numel() // k_c)
    is_centre = torch.zeros(rest.numel(), dtype=torch.bool, device=x.device)
    is_centre[torch.arange(0, rest.numel(), step, device=x.device)[:k_c]] = True
    centres, members = rest[is_centre], rest[~is_centre]
    unit = F.normalize(xf, dim=-1)
    assign = (unit[members] @ unit[centres].T).argmax(dim=-1)  # [M - k_c] index into centres
    sums = xf[centres].clone().index_add_(0, assign, xf[members])
    counts = torch.ones(k_c, device=x.device).index_add_(0, assign, torch.ones(members.numel(), device=x.device))
    out[centres] = (sums / counts[:, None]).to(x.dtype)
    keep[centres] = True
    return keep, out


class VisionZip:
    """k_d highest-norm dominant tokens + k_c contextual group means, per sample over the video (module docstring)."""

    name = "visionzip"
    needs_prompts = False
    ranks = False  # dominant and merged tokens chosen per ratio: select only

    def __init__(self, dominant_share: float = 0.85):
        if not 0.0 <= dominant_share <= 1.0:
            raise ValueError(f"dominant_share={dominant_share} must lie in [0, 1] (VisionZip: about 54/64 = 0.85)")
        self.dominant_share = float(dominant_share)

    @torch.no_grad()
    def select(self, visual: VisualTokens, ratio: float, prompts: Any = None) -> Selection:
        x = visual.flat()
        k = keep_count(ratio, x.shape[1])
        keeps, outs = zip(*(visionzip_one(x[i], k, self.dominant_share) for i in range(x.shape[0])))
        return Selection(keep=torch.stack(keeps), tokens=torch.stack(outs))

    def selection_flops(self, shape: tuple[int, int, int], ratio: float, text_tokens: int, llm: Any = None) -> int:
        """Norms, cosine of the remaining tokens to the centres, group means (score_lit.compressors.flops.visionzip_flops)."""
        t, n, d = shape
        return visionzip_flops(t * n, keep_count(ratio, t * n), d, self.dominant_share)
