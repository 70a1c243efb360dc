"""The encode phase of a training or eval step: a batch's videos -> VisualTokens through the frozen vision tower
and projector, or from the feature cache for rows the DataLoader found there (score_lit.data.feature_cache)."""

from __future__ import annotations

from dataclasses import replace

import torch

from score_lit.types import VideoBatch, VisualTokens


def encode(mllm, batch: VideoBatch) -> VisualTokens:
    """VideoBatch -> VisualTokens [B, T, N, D], running the vision tower only for rows without cached features.

    batch.features[b] is the cached entry of row b (None = encode it); batch.frames holds the frames of
    the rows to encode, in row order. Nothing is written: the cache is filled offline (score_lit.data.feature_cache_fill).
    """
    feats = batch.features or [None] * len(batch)
    todo = [b for b, f in enumerate(feats) if f is None]
    rows: list[dict | None] = list(feats)
    if todo:
        spf = batch.seconds_per_frame
        sub = replace(
            batch,
            ids=[batch.ids[b] for b in todo],
            questions=[batch.questions[b] for b in todo],
            answers=[batch.answers[b] for b in todo],
            options=[batch.options[b] for b in todo],
            answer_index=batch.answer_index[todo],
            seconds_per_frame=None if spf is None else [spf[b] for b in todo],
            prompts=None,
        )
        visual = mllm.encode(sub)  # frames [len(todo), F, 3, H, W]
        for j, b in enumerate(todo):
            rows[b] = {"tokens": visual.tokens[j], "positions": visual.positions[j], "grid": visual.grid}
            if visual.deepstack is not None:
                rows[b]["deepstack"] = visual.deepstack[j]
        if len(todo) == len(batch):
            return visual
    grids = {tuple(r["grid"]) for r in rows}
    if len(grids) != 1:
        raise ValueError(f"videos of one batch must give one token grid (T, H', W'); got {sorted(grids)}")
    dev = mllm.device
    ds = [r.get("deepstack") for r in rows]  # [S, T*N, D] per row (Qwen3-VL), None for families without DeepStack
    if any(x is None for x in ds) and any(x is not None for x in ds):
        raise ValueError(
            "cached features without DeepStack features next to encoded ones with them: the cache was "
            "written by an older score_lit; delete data.cache_dir / eval.cache_dir and run cache-features again"
        )
    return VisualTokens(
        tokens=torch.stack([r["tokens"].to(dev) for r in rows]),
        grid=grids.pop(),
        positions=torch.stack([r["positions"].to(dev) for r in rows]),
        deepstack=None if ds[0] is None else torch.stack([x.to(dev) for x in ds]),
    )
