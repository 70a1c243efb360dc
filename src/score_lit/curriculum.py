"""The curriculum's DataModules. Stage 1: static pseudo-videos (stitched still images); stage 2:
dynamic videos (today the synthetic flash / distracted families; real video QA from disk is issue 4).

Each sample is generated from (data.seed, split, index), so an epoch is reproducible without storing
anything, train and val never share a seed stream, and a resumed run sees the same data order
(Lightning restores the sampler's epoch; the generator needs no state of its own).
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .config import DataConfig
from .data import build_source
from .data.synthetic import Sample
from .types import VideoBatch


class SyntheticVideoQA(Dataset):
    """A map-style dataset over a generator from score_lit.data (deterministic per index)."""

    def __init__(self, cfg: DataConfig, split: str, length: int):
        self.cfg, self.split, self.length = cfg, split, length
        self.sources = [build_source(f) for f in cfg.families]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        c, n = self.cfg, len(self.sources)
        gen = self.sources[index % n]  # interleaved families; each family's own index stream
        return gen(
            c.seed, self.split, index // n, frames=c.frames, size=c.size, min_run=c.min_run, max_run=c.max_run,
            distractors=c.distractors,
        )  # fmt: skip


def collate(samples: list[Sample]) -> VideoBatch:
    """Samples -> VideoBatch with frames [B, F, 3, H, W] uint8 (all videos of a batch share a shape)."""
    shapes = {s.frames.shape for s in samples}
    if len(shapes) != 1:
        raise ValueError(f"videos in one batch must share a shape (frames, H, W, 3); got {sorted(shapes)}")
    frames = torch.from_numpy(np.stack([s.frames for s in samples])).permute(0, 1, 4, 2, 3).contiguous()
    return VideoBatch(
        ids=[s.id for s in samples],
        frames=frames,
        questions=[s.question for s in samples],
        answers=[s.answer for s in samples],
        options=[s.options for s in samples],
        answer_index=torch.tensor([s.options.index(s.answer) for s in samples], dtype=torch.long),
    )


class SyntheticDataModule(L.LightningDataModule):
    """Generated video QA: the train stream for training, the disjoint val stream for validation."""

    def __init__(self, cfg: DataConfig):
        super().__init__()
        self.cfg = cfg

    def setup(self, stage: str | None = None) -> None:
        self.train_set = SyntheticVideoQA(self.cfg, "train", self.cfg.train_samples)
        self.val_set = SyntheticVideoQA(self.cfg, "val", self.cfg.val_samples)

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        g = torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(
            ds, batch_size=self.cfg.batch_size, shuffle=shuffle, collate_fn=collate, num_workers=self.cfg.num_workers,
            generator=g, persistent_workers=self.cfg.num_workers > 0,
        )  # fmt: skip

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, shuffle=False)


DATAMODULES = {"stage1": SyntheticDataModule, "stage2": SyntheticDataModule}


def build_datamodule(phase: str, cfg: DataConfig) -> L.LightningDataModule:
    if phase not in DATAMODULES:
        raise ValueError(f"unknown phase={phase!r}; available: {sorted(DATAMODULES)}")
    return DATAMODULES[phase](cfg)
