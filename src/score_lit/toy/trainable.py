"""What the toy MLLM's own training needs from an adapter beyond the frozen-model contract: the adapter's encode /
score / video_attention bodies with gradients (the adapter's public calls always run without), the residual stream
at FastV's query row, and the vision tower sizes per family. Only score_lit.toy uses this module.

    visual = encode(adapter, batch, grad=vision_grad)                # tokens [B, T, N, D], grad if asked
    scores = score(adapter, visual, prompts, masks)                  # ce [B, K], option_logits [B, K, C]
    probs, query_input = video_attention(adapter, visual, prompts, layer)   # [B, T*N], [B, D]

The bodies are the adapter's own (score_lit.mllm.adapter.score_rows, score_lit.mllm.attention.attention_map), so the
toy trains the model through exactly the sequence evaluation scores.
"""

from __future__ import annotations

import torch
from torch import Tensor

from score_lit.mllm.adapter import score_rows
from score_lit.mllm.attention import attention_map
from score_lit.types import LLMScores, VideoBatch, VisualTokens


def encode(adapter, batch: VideoBatch, grad: bool = True) -> VisualTokens:
    """The adapter's encode with gradients through the vision tower when `grad` (and torch's grad mode) is on."""
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        return adapter._encode(batch)


def score(adapter, visual: VisualTokens, prompts, masks: Tensor) -> LLMScores:
    """The adapter's score (masks [B, K, T*N]) with gradients."""
    return score_rows(adapter, visual, prompts, masks)


def video_attention(adapter, visual: VisualTokens, prompts, layer: int) -> tuple[Tensor, Tensor]:
    """(probs [B, T*N], query_input [B, D]): the adapter's video_attention with gradients, and the residual stream
    entering layer `layer` at the query row (what the toy's question probe reads)."""
    return attention_map(adapter, visual, prompts, layer)


def _qwen25(width: int, depth: int, mlp: int, out_width: int) -> dict:
    """Windowed and full attention alternate, the last block full."""
    full = sorted({*range(1, depth, 2), depth - 1})
    return dict(
        depth=depth, hidden_size=width, intermediate_size=mlp, out_hidden_size=out_width, fullatt_block_indexes=full
    )


def _qwen2(width: int, depth: int, mlp: int, out_width: int) -> dict:
    """Qwen2-VL names the widths embed_dim / hidden_size and an mlp_ratio."""
    return dict(depth=depth, embed_dim=width, hidden_size=out_width, mlp_ratio=mlp // width)


def _qwen3(width: int, depth: int, mlp: int, out_width: int) -> dict:
    return dict(depth=depth, hidden_size=width, intermediate_size=mlp, out_hidden_size=out_width)


VISION_DIMS = {"qwen2_5_vl": _qwen25, "qwen2_vl": _qwen2, "qwen3_vl": _qwen3, "qwen3_5": _qwen3}


def vision_dims(family: str, width: int, depth: int, mlp: int, out_width: int) -> dict:
    """Vision sub-config entries of a tower `width` wide and `depth` deep whose merger outputs `out_width` (the toy
    MLLM's knobs) for `family`."""
    if family not in VISION_DIMS:
        raise NotImplementedError(f"no toy-MLLM recipe for family {family!r}; families with one: {sorted(VISION_DIMS)}")
    return VISION_DIMS[family](width, depth, mlp, out_width)
