"""Qwen2.5-VL's vision tower over a subset of its merged-token groups: vision work skipped for the tokens a
pre-vision gate drops (score_lit.compressors.prevision; docs/PREVISION.md).

A merged-token group is the m x m patches (m = spatial_merge_size, 2) of one temporal unit (temporal_patch_size
frames, 2) that the patch merger turns into ONE visual token of the LLM: group g of video b is token g of that video,
in the LLM's raster order (t, h', w'), and its patches are rows g*m^2 ... g*m^2 + m^2 - 1 of pixel_values_videos.

    out, order = pruned_vision_forward(model.model.visual, pixel_values, grid_thw, keep)   # keep [G] bool
    # out [G_kept, D_out]: the merger's output for the kept groups, in ascending group order (= order [G_kept])

It replicates transformers 5.23's Qwen2_5_VisionTransformerPretrainedModel.forward with the loaded model's own
modules (patch_embed, rotary_pos_emb, blocks, merger), on the kept groups only:
- patch_embed runs on the kept patches only;
- rotary positions: each kept patch keeps its own (h, w) position ids of the full grid (no renumbering);
- windowed blocks: the stock window partition (window_size / patch / merge groups a side, per temporal unit), each
  window reduced to its kept groups, empty windows removed (cu_window_seqlens rebuilt);
- full-attention blocks (fullatt_block_indexes): attention spans one temporal unit, as stock (cu_seqlens per unit),
  over its kept patches;
- the merger on the kept groups, then the window order undone.
With every group kept this is the stock forward (tests/test_prevision.py: equal to get_video_features to 1e-5 on the
tiny model and the evidence toy). With groups dropped the kept groups' features differ from the stock ones, since
they attend to fewer patches; the tests report by how much (not hidden, not asserted small).

Cost (score_lit.compressors.flops.vision_tower_flops): patch_embed and every block's linear layers scale with the
kept patches, attention with the sum over segments of (kept patches in the segment)^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _cu(lengths: Tensor) -> Tensor:
    """Segment lengths (zeros dropped) -> cumulative int32 boundaries [S + 1], as transformers builds them."""
    lengths = lengths[lengths > 0]
    return F.pad(lengths.cumsum(0, dtype=torch.int32), (1, 0), value=0)


def group_layout(visual, grid_thw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(window_index [G]: the groups in the stock window order, window_of [G]: the window of each slot of that order,
    unit_of [G]: the (video, temporal unit) segment of each group, in group order) for grid_thw [B, 3] (patch grid)."""
    from transformers.vision_utils import get_vision_window_index

    m = int(visual.spatial_merge_size)
    unit = m * m
    window_index, cu_win = get_vision_window_index(
        grid_thw, spatial_merge_size=m, window_size=int(visual.window_size), patch_size=int(visual.patch_size)
    )
    win_len = (cu_win[1:] - cu_win[:-1]).long() // unit  # groups per non-empty window
    window_of = torch.repeat_interleave(torch.arange(len(win_len)), win_len.cpu())
    per_unit = (grid_thw[:, 1] * grid_thw[:, 2] // unit).cpu()  # groups per temporal unit, per video
    unit_of = torch.repeat_interleave(
        torch.arange(int(grid_thw[:, 0].sum())), per_unit.repeat_interleave(grid_thw[:, 0].cpu())
    )
    return window_index.cpu(), window_of, unit_of


def pruned_segments(visual, grid_thw: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(order [G_kept]: the kept groups in window order, window lengths [Sw] and unit lengths [Su] in patches of the
    kept groups, empty ones dropped) for keep [G] bool over every group of the batch."""
    unit = int(visual.spatial_merge_size) ** 2
    window_index, window_of, unit_of = group_layout(visual, grid_thw)
    keep = keep.cpu().bool()
    kept_slot = keep[window_index]  # [G] in window order
    order = window_index[kept_slot]
    win = torch.bincount(window_of[kept_slot], minlength=int(window_of.max()) + 1 if len(window_of) else 0) * unit
    units = torch.bincount(unit_of[order], minlength=int(unit_of.max()) + 1 if len(unit_of) else 0) * unit
    return order, win[win > 0], units[units > 0]


@torch.no_grad()
def pruned_vision_forward(visual, pixel_values: Tensor, grid_thw: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """visual: the loaded model's `model.model.visual` (Qwen2.5-VL); pixel_values [G*m^2, C*tps*p*p] and grid_thw
    [B, 3] as the processor gives them; keep [G] bool over the batch's merged groups (video-major, each video's in
    raster order). -> (merged features [G_kept, D_out] of the kept groups, their group indices [G_kept] ascending)."""
    from transformers.vision_utils import get_vision_position_ids

    dev = pixel_values.device
    m = int(visual.spatial_merge_size)
    unit = m * m
    order, win_len, unit_len = pruned_segments(visual, grid_thw, keep)
    patches = (order[:, None] * unit + torch.arange(unit)).reshape(-1).to(dev)  # kept patch rows, window order
    hidden = visual.patch_embed(pixel_values[patches].to(visual.patch_embed.proj.weight.dtype))
    positions = get_vision_position_ids(grid_thw, m).to(dev)[patches]  # each kept patch's own (h, w)
    cos_sin = visual.rotary_pos_emb(hidden, positions)
    cu_win, cu_unit = _cu(win_len).to(dev), _cu(unit_len).to(dev)
    max_win = int(win_len.max()) if len(win_len) else 0
    max_unit = int(unit_len.max()) if len(unit_len) else 0
    for i, blk in enumerate(visual.blocks):
        full = i in visual.fullatt_block_indexes
        hidden = blk(
            hidden,
            cu_seqlens=cu_unit if full else cu_win,
            max_seqlen=max_unit if full else max_win,
            position_embeddings=cos_sin,
        )
    merged = visual.merger(hidden)  # [G_kept, D_out] in window order
    back = torch.argsort(order)
    return merged[back.to(dev)], order[back]


__all__ = ["group_layout", "pruned_segments", "pruned_vision_forward"]
