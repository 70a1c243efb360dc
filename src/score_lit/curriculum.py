"""The curriculum: its phases, their datasets, and one data order that survives a restart.

A run trains `cfg.phases` in order (docs/METHOD.md "Curriculum"): stage1 (static pseudo-videos: generated
`stitched` videos or an image-QA file turned into pseudo-videos) for `stage1.steps` optimizer steps,
then stage2 (dynamic videos: generated, or a video-QA file decoded with decord) for `stage2.steps`.

One data order, fixed by the config alone. Global step g belongs to the phase whose step range holds
it; its batch is positions [(j*W + r)*bs, (j*W + r + 1)*bs) of that phase's index stream (j the step
within the phase, W ranks, r this rank), and the stream is the dataset's indices in a fresh seeded
permutation per pass: perm(seed, phase, pass). Nothing depends on RNG state, so the batch of a step
is a pure function of (config, step, rank). The train loader is one epoch of all steps and is
stateful for Lightning (state_dict / load_state_dict): a checkpoint records the step it was taken at,
and a resumed run continues at that step, in that phase, with the batches it would have seen.

Bad samples never stop an epoch (score_lit.data.common): rows that fail to read are left out at
setup; a sample that fails to load is reported and replaced by the next good index of its dataset
(so batches stay full and step g keeps meaning batch g). `DataMonitor` reports each problem once,
logs the running count as `data/skipped`, and stops the run when more than data.max_bad_fraction of
a dataset is bad.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from .config import Config, DataConfig
from .data import build_family
from .data.common import DataError, Problem, Sample, SampleError
from .features import FeatureCache
from .types import VideoBatch

log = logging.getLogger("score_lit.data")
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
            c.seed, self.split, index // n, frames=c.frames, size=c.size, min_run=c.min_run, max_run=c.max_run,
            distractors=c.distractors,
        )  # fmt: skip

    def cache_inputs(self, index: int) -> dict:
        c = self.cfg
        return {"synthetic": SYNTHETIC_VERSION, "family": c.families[index % len(c.families)], "seed": c.seed,
                "split": self.split, "index": index // len(c.families), "frames": c.frames, "size": c.size,
                "min_run": c.min_run, "max_run": c.max_run, "distractors": c.distractors}  # fmt: skip


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
        from .data.pseudo_video import PseudoVideoDataset
        from .data.pseudo_video import read_image_qa as read

        def make(records, salt):
            return PseudoVideoDataset(records, cfg.frames, cfg.size, cfg.fit, cfg.distractors, cfg.min_run, cfg.max_run, cfg.seed + salt)
    else:
        from .data.video_qa import VideoQADataset
        from .data.video_qa import read_video_qa as read

        def make(records, salt):
            return VideoQADataset(records, cfg.frames, cfg.size, cfg.fit, cfg.sample_fps)

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
        raise DataError(f"{cfg.path}: no usable training rows; `python -m score_lit data-check {cfg.path}` lists the problems")
    return PhaseData(make(train, 0), make(val, 1) if val else None, problems, rows)


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
        key = self.cache.key(self.ds.cache_inputs(i)) if self.cache is not None and hasattr(self.ds, "cache_inputs") else None
        feats = self.cache.load(key) if key is not None else None
        rec = getattr(self.ds, "records", None)
        if feats is not None and rec is not None:  # a file dataset: the text is in the record, skip decoding
            r = rec[i]
            s = Sample(r.id, None, r.question, r.answer, list(r.options), meta=dict(r.meta))
        else:
            s = self.ds[i]
        s.cache_key, s.features = key, feats
        if feats is not None:
            s.frames = None
        return s

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


def collate(samples: list[Sample]) -> VideoBatch:
    """Samples -> VideoBatch; frames [B', F, 3, H, W] uint8 of the rows without cached features."""
    todo = [s for s in samples if s.features is None]
    frames = None
    if todo:
        shapes = {s.frames.shape for s in todo}
        if len(shapes) != 1:
            raise ValueError(f"videos in one batch must share a shape (frames, H, W, 3); got {sorted(shapes)}")
        frames = torch.from_numpy(np.stack([s.frames for s in todo])).permute(0, 1, 4, 2, 3).contiguous()
    spf = [s.seconds_per_frame for s in samples]
    return VideoBatch(
        ids=[s.id for s in samples],
        frames=frames,
        questions=[s.question for s in samples],
        answers=[s.answer for s in samples],
        options=[s.options for s in samples],
        answer_index=torch.tensor([s.options.index(s.answer) if s.answer in s.options else -1 for s in samples]),
        seconds_per_frame=None if any(v is None for v in spf) else [float(v) for v in spf],
        features=[s.features for s in samples] if any(s.features is not None for s in samples) else None,
        cache_keys=[s.cache_key for s in samples] if any(s.cache_key for s in samples) else None,
        skipped=[p for s in samples for p in s.meta.get("skipped", [])],
    )


# ------------------------------------------------------------------------------------------------
# The data order


@dataclass(frozen=True)
class PhaseSpan:
    name: str
    steps: int
    batch_size: int
    length: int  # dataset size


class CurriculumSampler:
    """Yields, for global steps start..total-1, this rank's list of (phase, index) pairs."""

    def __init__(self, spans: list[PhaseSpan], seed: int, rank: int = 0, world: int = 1):
        self.spans, self.seed, self.rank, self.world = spans, seed, rank, world
        self.start = 0
        self._perm: dict[tuple[int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return sum(s.steps for s in self.spans)

    def phase_of(self, step: int) -> tuple[int, int]:
        """Global step -> (phase position, step within the phase); past the end -> the last phase."""
        for p, s in enumerate(self.spans):
            if step < s.steps or p == len(self.spans) - 1:
                return p, step
            step -= s.steps
        raise AssertionError

    def _index(self, p: int, q: int) -> int:
        n = self.spans[p].length
        k = (p, q // n)
        if k not in self._perm:
            self._perm = {k: np.random.default_rng([self.seed, p, q // n]).permutation(n)}  # one pass at a time
        return int(self._perm[k][q % n])

    def batch(self, step: int) -> list[tuple[int, int]]:
        p, j = self.phase_of(step)
        bs = self.spans[p].batch_size
        first = (j * self.world + self.rank) * bs
        return [(p, self._index(p, q)) for q in range(first, first + bs)]

    def __iter__(self):
        for step in range(self.start, len(self)):
            yield self.batch(step)

    def signature(self) -> list:
        return [[s.name, s.steps, s.batch_size, s.length] for s in self.spans] + [self.seed, self.world]


def plan_differences(old: list, new: list) -> list[str]:
    """What differs between two plans (CurriculumSampler.signature), as "key (old -> new)" in config words.
    The last phase's steps may grow (training a run for longer is a resume) and are not a difference."""
    out: list[str] = []
    spans_old, spans_new = old[:-2], new[:-2]
    if [s[0] for s in spans_old] != [s[0] for s in spans_new]:
        out.append(f"phases ({[s[0] for s in spans_old]} -> {[s[0] for s in spans_new]})")
    else:
        for i, (a, b) in enumerate(zip(spans_old, spans_new)):
            for j, key in ((1, "steps"), (2, "data.batch_size"), (3, "dataset size")):
                if a[j] != b[j] and not (key == "steps" and i == len(spans_new) - 1 and b[j] > a[j]):
                    out.append(f"{a[0]}.{key} ({a[j]} -> {b[j]})")
    for (x, y), key in zip(zip(old[-2:], new[-2:]), ("seed", "world size (trainer.devices x trainer.num_nodes)")):
        if x != y:
            out.append(f"{key} ({x} -> {y})")
    return out


def check_plan(old: list, new: list) -> None:
    """A checkpoint's plan against this config's. Batches up to the checkpoint are the same iff every phase
    but the last is unchanged (the last may be lengthened: training a run for longer is a resume)."""
    diff = plan_differences(old, new) if len(old) >= 2 and len(new) >= 2 else [f"plan ({old} -> {new})"]
    if diff:
        raise DataError(
            f"the checkpoint was trained on another curriculum plan than this config's: {'; '.join(diff)}. Resume with "
            f"the config it was trained with (only the last phase's steps may grow), or start a new run name"
        )


class CurriculumLoader(DataLoader):
    """The train DataLoader; stateful for Lightning, so a resumed run continues at its step."""

    def __init__(self, dataset: Dataset, sampler: CurriculumSampler, step_fn, **kw):
        super().__init__(dataset, batch_sampler=sampler, collate_fn=collate, **kw)
        self.step_fn = step_fn  # -> the number of steps trained so far (trainer.global_step)

    def state_dict(self) -> dict:
        return {"step": int(self.step_fn()), "plan": self.batch_sampler.signature()}

    def load_state_dict(self, state: dict) -> None:
        check_plan(state.get("plan") or [], self.batch_sampler.signature())
        self.batch_sampler.start = int(state["step"])


class CurriculumDataModule(L.LightningDataModule):
    """Train: all phases of the run as one stateful epoch of steps. Val: the phases' held-out sets, joined."""

    def __init__(self, cfg: Config, cache: FeatureCache | None = None):
        super().__init__()
        self.cfg, self.cache = cfg, cache
        self.phase_data: list[PhaseData] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.phase_data is None:
            self.phase_data = [build_phase_data(self.cfg.phase(p).data) for p in self.cfg.phases]

    @property
    def problems(self) -> list[Problem]:
        return [p for d in self.phase_data or [] for p in d.problems]

    @property
    def rows(self) -> dict[str, tuple[int, float]]:
        return {k: v for d in self.phase_data or [] for k, v in d.rows.items()}

    def _workers(self) -> dict:
        n = max(self.cfg.phase(p).data.num_workers for p in self.cfg.phases)
        return {"num_workers": n, "persistent_workers": n > 0}

    def sampler(self, rank: int = 0, world: int = 1) -> CurriculumSampler:
        spans = [
            PhaseSpan(p, self.cfg.phase(p).steps, self.cfg.phase(p).data.batch_size, len(d.train))
            for p, d in zip(self.cfg.phases, self.phase_data)
        ]  # fmt: skip
        return CurriculumSampler(spans, self.cfg.seed, rank, world)

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        ds = Phased([Guarded(d.train, self.cache) for d in self.phase_data])
        return CurriculumLoader(ds, self.sampler(rank, world), lambda: self.trainer.global_step, **self._workers())

    def val_dataloader(self) -> DataLoader | list:
        vals = [Guarded(d.val, self.cache) for d in self.phase_data if d.val is not None]
        if not vals:
            return []
        bs = self.cfg.phase(self.cfg.phases[-1]).data.batch_size
        return DataLoader(ConcatDataset(vals), batch_size=bs, shuffle=False, collate_fn=collate, **self._workers())


class DataMonitor(L.Callback):
    """Reports each skipped sample once (file, line, reason), logs `data/skipped` and `curriculum/phase`,
    and stops the run when more than data.max_bad_fraction of a dataset file is bad."""

    def __init__(self):
        self.seen: dict[str, Problem] = {}

    def _report(self, trainer, problems: list[Problem]) -> None:
        for p in problems:
            k = f"{p.source}:{p.line}:{p.sample_id}:{p.path}"
            if k not in self.seen:
                self.seen[k] = p
                if trainer.is_global_zero:
                    log.warning("skipped a bad sample: %s", p)

    def on_train_start(self, trainer, module) -> None:
        self._report(trainer, trainer.datamodule.problems)

    def on_train_batch_start(self, trainer, module, batch: VideoBatch, batch_idx: int) -> None:
        dm: CurriculumDataModule = trainer.datamodule
        self._report(trainer, batch.skipped)
        for source, (n, limit) in dm.rows.items():
            bad = sum(os.path.abspath(p.source) == source for p in self.seen.values())
            if bad > limit * n:
                raise DataError(
                    f"{source}: {bad} of {n} samples are bad (more than data.max_bad_fraction={limit}); "
                    f"`python -m score_lit data-check {source}` lists them; fix or remove them, or raise the fraction"
                )
        phase, _ = dm.sampler().phase_of(trainer.global_step)
        cached = sum(f is not None for f in batch.features) / len(batch) if batch.features else 0.0
        metrics = {"data/skipped": float(len(self.seen)), "data/cache_hit": cached, "curriculum/phase": float(phase)}
        if trainer.logger is not None and trainer.is_global_zero:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)

    def on_validation_batch_start(self, trainer, module, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._report(trainer, batch.skipped)  # reported once like the train set's; the fraction is checked in training

    def state_dict(self) -> dict:
        return {"seen": {k: vars(p) for k, p in self.seen.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seen = {k: Problem(**v) for k, v in state.get("seen", {}).items()}


DATAMODULES = {"curriculum": CurriculumDataModule}


def build_datamodule(cfg: Config, cache: FeatureCache | None = None) -> CurriculumDataModule:
    return CurriculumDataModule(cfg, cache)
