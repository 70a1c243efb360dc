"""The feature cache: the frozen vision tower + projector output of a video, computed once, kept on disk.

The vision encoder and the projector are frozen, so their output for a (video, sampling, model) never
changes. With `data.cache_dir` set, the first epoch encodes every video and writes its tokens; every
later epoch finds them and skips both the decoding (in the DataLoader workers) and the vision tower
(in the training step).

Key: sha256 over JSON of
  * what fixes the frames: the dataset's `cache_inputs(i)` (for a file: its absolute path, size in bytes
    and mtime_ns, plus the sampling config: frames, size, fit, fps, clip window; for generated data:
    generator, seed, split, index and its numbers), so an edited or replaced file misses the cache;
  * what fixes the model's output: the adapter's identity (family, checkpoint path, width), the pixel
    budget and dtype, and the file-format version below.
Entry: `<cache_dir>/<key[:2]>/<key>.pt` = {"tokens": [T, N, D], "positions": [3 or 1, T*N], "grid": (T, H', W')},
written atomically (temp file, then os.replace), so a killed run never leaves a half-written entry; any
unreadable entry counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from .types import VideoBatch, VisualTokens

FORMAT = "score_lit.features/v1"


def model_key(mllm_cfg, identity: dict) -> dict:
    """What fixes the projector output besides the frames: the model and its preprocessing numbers."""
    return {
        **identity, "dtype": mllm_cfg.dtype, "min_pixels": mllm_cfg.min_pixels, "max_pixels": mllm_cfg.max_pixels,
        "tiny_seed": mllm_cfg.tiny_seed if mllm_cfg.path is None else None, "format": FORMAT,
    }  # fmt: skip


class FeatureCache:
    def __init__(self, root: str | os.PathLike, model: dict):
        self.root, self.model = Path(root), model
        self.hits = self.misses = 0

    def key(self, inputs: dict) -> str:
        blob = json.dumps({"inputs": inputs, "model": self.model}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.pt"

    def load(self, key: str) -> dict | None:
        f = self._file(key)
        if not f.is_file():
            self.misses += 1
            return None
        try:
            entry = torch.load(f, map_location="cpu", weights_only=True)
        except Exception:  # a damaged entry is a miss; it is rewritten after encoding
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def save(self, key: str, tokens: torch.Tensor, positions: torch.Tensor, grid: tuple[int, int, int]) -> None:
        from .checkpoint import atomic_torch_save

        entry = {"tokens": tokens.detach().cpu().clone(), "positions": positions.detach().cpu().clone(), "grid": tuple(grid)}
        atomic_torch_save(entry, self._file(key), fsync=False)  # a lost entry is only a cache miss


def encode(mllm, batch: VideoBatch, cache: FeatureCache | None = None) -> VisualTokens:
    """VideoBatch -> VisualTokens [B, T, N, D], running the vision tower only for rows the cache lacks.

    batch.features[b] is the cached entry of row b (None = encode it); batch.frames holds the frames of
    the rows to encode, in row order. Encoded rows with a cache key are written to the cache.
    """
    feats = batch.features or [None] * len(batch)
    todo = [b for b, f in enumerate(feats) if f is None]
    rows: list[dict | None] = list(feats)
    if todo:
        spf = batch.seconds_per_frame
        sub = replace(
            batch, ids=[batch.ids[b] for b in todo], questions=[batch.questions[b] for b in todo],
            answers=[batch.answers[b] for b in todo], options=[batch.options[b] for b in todo],
            answer_index=batch.answer_index[todo], seconds_per_frame=None if spf is None else [spf[b] for b in todo],
        )  # fmt: skip
        visual = mllm.encode(sub)  # frames [len(todo), F, 3, H, W]
        for j, b in enumerate(todo):
            rows[b] = {"tokens": visual.tokens[j], "positions": visual.positions[j], "grid": visual.grid}
            key = batch.cache_keys[b] if batch.cache_keys else None
            if cache is not None and key is not None:
                cache.save(key, visual.tokens[j], visual.positions[j], visual.grid)
        if len(todo) == len(batch):
            return visual
    grids = {tuple(r["grid"]) for r in rows}
    if len(grids) != 1:
        raise ValueError(f"videos of one batch must give one token grid (T, H', W'); got {sorted(grids)}")
    dev = mllm.device
    return VisualTokens(
        tokens=torch.stack([r["tokens"].to(dev) for r in rows]),
        grid=grids.pop(),
        positions=torch.stack([r["positions"].to(dev) for r in rows]),
    )
