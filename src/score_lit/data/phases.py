"""The datasets of a curriculum phase (score_lit.data.datamodule): generated families or annotation files, a
seeded held-out split, and the guard that makes a dataset safe to train on.

Bad samples never stop an epoch (score_lit.data.common): rows that fail to read are left out at setup
(`build_phase_data`); a sample that fails to load is reported and replaced by the next good index of its
dataset (`Guarded`), so batches stay full and step g keeps meaning batch g.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from torch.utils.data import Dataset

from score_lit.config import DataConfig
from score_lit.data import build_family
from score_lit.data.common import DataError, Problem, Sample, SampleError
from score_lit.data.feature_cache import FeatureCache

SYNTHETIC_VERSION = 1  # bump when a generator's output changes (invalidates feature-cache entries)


class SyntheticVideoQA(Dataset):
    """A map-style dataset over a generator from score_lit.data (deterministic per index)."""

    def __init__(self, cfg: DataConfig, split: str, length: int):
        self.cfg, self.split, self.length = cfg, split, length
        self.sources = [build_family(f) for f in cfg.families]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        c, n = self.cfg, len(self.sources)
        gen = self.sources[index % n]  # interleaved families; each family's own index stream
        return gen(
            c.seed,
            self.split,
            index // n,
            frames=c.frames,
            size=c.size,
            min_run=c.min_run,
            max_run=c.max_run,
            distractors=c.distractors,
        )

    def cache_inputs(self, index: int) -> dict:
        c = self.cfg
        return {
            "synthetic": SYNTHETIC_VERSION,
            "family": c.families[index % len(c.families)],
            "seed": c.seed,
            "split": self.split,
            "index": index // len(c.families),
            "frames": c.frames,
            "size": c.size,
            "min_run": c.min_run,
            "max_run": c.max_run,
            "distractors": c.distractors,
        }


# ------------------------------------------------------------------------------------------------
# Datasets of one phase


@dataclass
class PhaseData:
    train: Dataset
    val: Dataset | None
    problems: list[Problem]  # rows left out at setup
    rows: dict[str, tuple[int, float]]  # absolute annotation path -> (rows in it, data.max_bad_fraction)


def _holdout(records: list, n: int, seed: int) -> tuple[list, list]:
    if n <= 0 or not records:
        return records, []
    pick = set(np.random.default_rng([seed, 7]).permutation(len(records))[: min(n, len(records) // 2)].tolist())
    return [r for i, r in enumerate(records) if i not in pick], [r for i, r in enumerate(records) if i in pick]


def build_phase_data(cfg: DataConfig) -> PhaseData:
    """The train and validation datasets of one phase, and the problems found while reading its files."""
    if cfg.source == "synthetic":
        val = SyntheticVideoQA(cfg, "val", cfg.val_samples) if cfg.val_samples > 0 else None
        return PhaseData(SyntheticVideoQA(cfg, "train", cfg.train_samples), val, [], {})
    if cfg.source == "image_qa":
        from score_lit.data.pseudo_video import PseudoVideoDataset
        from score_lit.data.pseudo_video import read_image_qa as read

        def make(records, salt):
            return PseudoVideoDataset(
                records, cfg.frames, cfg.size, cfg.fit, cfg.distractors, cfg.min_run, cfg.max_run, cfg.seed + salt
            )
    else:
        from score_lit.data.video_qa import VideoQADataset
        from score_lit.data.video_qa import read_video_qa as read

        def make(records, salt):
            return VideoQADataset(records, cfg.frames, cfg.size, cfg.fit, cfg.sample_fps, cfg.decode_resize)

    def n_rows(records, problems) -> int:  # a LLaVA row with several turns is one row, several records
        return len({r.line for r in records} | {p.line for p in problems})

    records, problems = read(cfg.path, cfg.root)
    rows = {os.path.abspath(cfg.path): (n_rows(records, problems), cfg.max_bad_fraction)}
    if cfg.val_path:
        train, (val, val_problems) = records, read(cfg.val_path, cfg.root)
        problems += val_problems
        rows[os.path.abspath(cfg.val_path)] = (n_rows(val, val_problems), cfg.max_bad_fraction)
    else:
        train, val = _holdout(records, cfg.val_samples, cfg.seed)
    for p in problems:  # the whole file is unusable (unreadable, empty, not a JSON list): say that, not a share
        if p.line is None and p.path is None and p.sample_id is None and os.path.abspath(p.source) in rows:
            raise DataError(f"{p.source}: {p.reason}")
    for source, (n, _) in rows.items():
        bad = sum(os.path.abspath(p.source) == source for p in problems)
        if n == 0 or bad > cfg.max_bad_fraction * n:
            raise DataError(
                f"{source}: {bad} of {n} rows are unusable (more than data.max_bad_fraction={cfg.max_bad_fraction}); "
                f"`python -m score_lit data-check {source}` lists them"
            )
    if not train:
        raise DataError(
            f"{cfg.path}: no usable training rows; `python -m score_lit data-check {cfg.path}` lists the problems"
        )
    return PhaseData(make(train, 0), make(val, 1) if val else None, problems, rows)


def load_cached(ds, i: int, cache: FeatureCache | None):
    """Row i of a dataset, with its cached projector output when the cache has it: a Sample whose `features` is
    the entry and `frames` None (a file dataset's text comes from its record, so nothing is decoded), else the
    dataset's own sample (`features` None). `cache_key` is set either way when the dataset has `cache_inputs`."""
    key = cache.key(ds.cache_inputs(i)) if cache is not None and hasattr(ds, "cache_inputs") else None
    feats = cache.load(key) if key is not None else None
    rec = getattr(ds, "records", None)
    if feats is not None and rec is not None:  # a file dataset: the text is in the record, skip decoding
        r = rec[i]
        s = Sample(r.id, None, r.question, r.answer, list(r.options), meta=dict(r.meta))
    else:
        s = ds[i]
    s.cache_key, s.features = key, feats
    if feats is not None:
        s.frames = None
    return s


class Guarded(Dataset):
    """One dataset made safe to train on: a sample that fails to load is reported (in the Sample's
    meta["skipped"]) and replaced by the next index that loads; cached projector output, when the
    feature cache has it, replaces decoding."""

    def __init__(self, ds: Dataset, cache: FeatureCache | None = None):
        self.ds, self.cache = ds, cache
        self.bad: dict[int, Problem] = {}  # per worker process: indices known to fail

    def __len__(self) -> int:
        return len(self.ds)

    def _problem(self, i: int, err: SampleError) -> Problem:
        rec = getattr(self.ds, "records", None)
        r = rec[i] if rec is not None else None
        source = r.meta.get("source", "?") if r is not None else type(self.ds).__name__
        return Problem(source, getattr(r, "line", None), err.reason, getattr(r, "id", None), err.path)

    def _load(self, i: int) -> Sample:
        return load_cached(self.ds, i, self.cache)

    def __getitem__(self, i: int) -> Sample:
        skipped = []
        for t in range(len(self.ds)):
            j = (i + t) % len(self.ds)
            if j in self.bad:
                continue
            try:
                s = self._load(j)
            except SampleError as e:
                self.bad[j] = self._problem(j, e)
                skipped.append(self.bad[j])
                continue
            source = s.meta.get("source", type(self.ds).__name__)
            for path, reason in s.meta.get("bad_images", []):  # a pseudo-video replaced a broken distractor image
                skipped.append(Problem(source, None, f"distractor image replaced: {reason}", None, path))
            s.meta["skipped"] = skipped
            return s
        raise DataError(f"no sample of {type(self.ds).__name__} loads; `python -m score_lit data-check FILE` lists why")


class Phased(Dataset):
    """Indexed by (phase, index) pairs: the train datasets of all phases of the run."""

    def __init__(self, parts: list[Dataset]):
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def __getitem__(self, key: tuple[int, int]) -> Sample:
        p, i = key
        return self.parts[p][i]
