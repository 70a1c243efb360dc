"""M-RoPE position ids of Qwen2-VL / Qwen2.5-VL, by the ORIGINAL rule, as pure functions.

Qwen2/2.5-VL rotate each query/key by three position ids (t, h, w). For one sequence
`pre-text | video | post-text` the original rule (Qwen's release code, transformers <= 5.2, and what
the released checkpoints were trained with) is:

    pre-text of length s:   (i, i, i)                              for i = 0 .. s-1
    video token (t, r, c):  (s + floor(t * time_scale), s + r, s + c)   over the MERGED grid (T, H', W')
    post-text:              (q + j, q + j, q + j), q = max(all video position ids) + 1

with time_scale = tokens_per_second * seconds_per_temporal_patch for Qwen2.5-VL (absolute time:
2 tokens/s x 1 s per temporal patch -> t ids 0, 2, 4, ...) and 1 for Qwen2-VL.

Why we own this instead of calling `model.model.get_rope_index`: in transformers 5.23 that function
starts the text after a video at s + max(H', W') (it advances by the spatial extent only), not at
max(all video ids) + 1. Whenever the temporal extent is larger (s + floor((T-1) * time_scale) >=
s + max(H', W'), i.e. any long video) the 5.23 ids put the answer text ON the video's time axis,
overlapping the last frames' positions -- a sequence the checkpoints never saw in training
(reported upstream as transformers#45381). Pruning must never shift text positions relative to
training, so the adapter computes ids here, on the FULL sequence, and gathers the kept columns.

Ids are int64. The temporal floor is taken in float64 (exact for the small scales used). The adapters lay out a
whole batch by the same rule, vectorised (score_lit.mllm.sequence.sequence_positions); `sequence_positions` here is
the one-sequence form the tests check by hand.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def time_scale(tokens_per_second: float | None, seconds_per_temporal_patch: float) -> float:
    """Step of Qwen2.5-VL's absolute-time t-axis per temporal unit: tokens_per_second * seconds per patch.
    (Qwen2-VL counts temporal patches: its step is 1; score_lit.mllm.qwen_vl.Qwen2VLAdapter.)"""
    if tokens_per_second is None:
        raise ValueError("qwen2_5_vl needs vision_config.tokens_per_second for its time-scaled t-axis")
    return float(tokens_per_second) * float(seconds_per_temporal_patch)


def text_positions(length: int, start: int = 0, device: torch.device | None = None) -> Tensor:
    """[3, length] ids (start + i) on all three axes."""
    return (torch.arange(length, device=device, dtype=torch.long) + start).unsqueeze(0).expand(3, -1).clone()


def video_positions(
    grid: tuple[int, int, int], start: int = 0, scale: float = 1.0, device: torch.device | None = None
) -> Tensor:
    """[3, T*H'*W'] (t, h, w) ids of a merged video grid in raster order (t, row, col), offset by `start`."""
    t, h, w = (int(g) for g in grid)
    t_ids = torch.floor(torch.arange(t, dtype=torch.float64, device=device) * float(scale)).long()
    tt = t_ids.view(t, 1, 1).expand(t, h, w)
    hh = torch.arange(h, device=device).view(1, h, 1).expand(t, h, w)
    ww = torch.arange(w, device=device).view(1, 1, w).expand(t, h, w)
    return torch.stack([tt, hh, ww]).reshape(3, t * h * w) + start


def next_text_start(vision_ids: Tensor) -> int:
    """Original rule: text after a vision block starts at max(all its (t, h, w) ids) + 1."""
    return int(vision_ids.max().item()) + 1


def sequence_positions(n_pre: int, video: Tensor, n_post: int) -> Tensor:
    """[3, n_pre + V + n_post] ids of `pre | video | post`; `video` [3, V] is relative to the video start."""
    vid = video + n_pre
    q = next_text_start(vid) if vid.numel() else n_pre
    return torch.cat([text_positions(n_pre, 0, video.device), vid, text_positions(n_post, q, video.device)], dim=1)


def temporal_units(num_frames: int, temporal_patch_size: int) -> int:
    """T = ceil(F / temporal_patch_size): the processor pads F by repeating the last frame."""
    return math.ceil(num_frames / temporal_patch_size)
