"""The feature cache: the frozen vision tower + projector output of a video, computed once, kept on disk.

The vision encoder and the projector are frozen, so their output for a (video, sampling, model) never
changes. `python -m score_lit cache-features CONFIG` (score_lit.data.feature_cache_fill) fills the cache of a
config's data (`data.cache_dir`) and of its eval benchmark (`eval.cache_dir`) in one offline pass;
training and eval only read it: a row found there skips both the decoding (in the DataLoader workers,
score_lit.data.phases.load_cached) and the vision tower (score_lit.data.encode). A row not found is decoded
and encoded as usual and is not written, so a training step never writes what the DataLoader reads.
(ZeRO-3 still refuses a cache: a partial one would let ranks differ in their vision-tower passes.)

Key: sha256 over JSON of
  * what fixes the frames: the dataset's `cache_inputs(i)` (for a file: its absolute path, size in bytes
    and mtime_ns, plus the sampling config: frames, size, fit, fps, clip window; for generated data:
    generator, seed, split, index and its numbers), so an edited or replaced file misses the cache;
  * what fixes the model's output: the adapter's identity (family, checkpoint path, width), the pixel
    budget and dtype, and the file-format version below.
Entry: `<cache_dir>/<key[:2]>/<key>.pt` = {"tokens": [T, N, D], "positions": [3 or 1, T*N], "grid": (T, H', W')}
(+ "deepstack": [S, T*N, D] for Qwen3-VL),
written atomically (temp file, then os.replace), so a killed run never leaves a half-written entry; any
unreadable entry counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

FORMAT = "score_lit.features/v1"


def model_key(mllm_cfg, identity: dict) -> dict:
    """What fixes the projector output besides the frames: the model and its preprocessing numbers."""
    return {
        **identity,
        "dtype": mllm_cfg.dtype,
        "min_pixels": mllm_cfg.min_pixels,
        "max_pixels": mllm_cfg.max_pixels,
        "tiny_seed": mllm_cfg.tiny_seed if mllm_cfg.path is None else None,
        "format": FORMAT,
    }


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

    def save(
        self,
        key: str,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        grid: tuple[int, int, int],
        deepstack: torch.Tensor | None = None,
    ) -> None:
        """Write one row's entry; `deepstack` [S, T*N, D]: Qwen3-VL's DeepStack features, stored when given."""
        from score_lit.durable import atomic_torch_save

        entry = {
            "tokens": tokens.detach().cpu().clone(),
            "positions": positions.detach().cpu().clone(),
            "grid": tuple(grid),
        }
        if deepstack is not None:
            entry["deepstack"] = deepstack.detach().cpu().clone()
        atomic_torch_save(entry, self._file(key), fsync=False)  # a lost entry is only a cache miss
