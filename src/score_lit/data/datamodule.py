"""The curriculum: its phases, their datasets, and the Lightning DataModule that serves them.

A run trains `cfg.phases` in order (docs/METHOD.md "Curriculum"): stage1 (static pseudo-videos: generated
`stitched` videos or an image-QA file turned into pseudo-videos) for `stage1.steps` optimizer steps,
then stage2 (dynamic videos: generated, or a video-QA file decoded with decord) for `stage2.steps`.

The datasets of a phase and the bad-sample guard: score_lit.data.phases. The data order (one stateful epoch
of steps, a pure function of config, step and rank): score_lit.data.order. `DataMonitor` reports each bad
sample once, logs the running count as `data/skipped`, and stops the run when more than
data.max_bad_fraction of a dataset is bad.
"""

from __future__ import annotations

import logging
import os
from functools import partial

import lightning as L
from torch.utils.data import ConcatDataset, DataLoader

from score_lit.config import Config
from score_lit.data.common import DataError, Problem, collate
from score_lit.data.feature_cache import FeatureCache
from score_lit.data.order import CurriculumLoader, CurriculumSampler, PhaseSpan
from score_lit.data.phases import Guarded, Phased, PhaseData, build_phase_data
from score_lit.types import VideoBatch

log = logging.getLogger("score_lit.data")


class CurriculumDataModule(L.LightningDataModule):
    """Train: all phases of the run as one stateful epoch of steps. Val: the phases' held-out sets, joined."""

    def __init__(self, cfg: Config, cache: FeatureCache | None = None, prompts=None):
        """prompts: the adapter's PromptBuilder; given, every batch is tokenized in the collate (the workers)."""
        super().__init__()
        self.cfg, self.cache = cfg, cache
        self.collate = collate if prompts is None else partial(collate, prompts=prompts)
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
        ]
        return CurriculumSampler(spans, self.cfg.seed, rank, world)

    def train_dataloader(self) -> DataLoader:
        t = self.trainer
        rank, world = (t.global_rank, t.world_size) if t is not None else (0, 1)
        ds = Phased([Guarded(d.train, self.cache) for d in self.phase_data])
        return CurriculumLoader(
            ds, self.sampler(rank, world), lambda: self.trainer.global_step, collate_fn=self.collate, **self._workers()
        )

    def val_dataloader(self) -> DataLoader | list:
        vals = [Guarded(d.val, self.cache) for d in self.phase_data if d.val is not None]
        if not vals:
            return []
        bs = self.cfg.phase(self.cfg.phases[-1]).data.batch_size
        return DataLoader(ConcatDataset(vals), batch_size=bs, shuffle=False, collate_fn=self.collate, **self._workers())


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

    def on_validation_batch_start(
        self, trainer, module, batch: VideoBatch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._report(trainer, batch.skipped)  # reported once like the train set's; the fraction is checked in training

    def state_dict(self) -> dict:
        return {"seen": {k: vars(p) for k, p in self.seen.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.seen = {k: Problem(**v) for k, v in state.get("seen", {}).items()}


DATAMODULES = {"curriculum": CurriculumDataModule}


def build_datamodule(cfg: Config, cache: FeatureCache | None = None, prompts=None) -> CurriculumDataModule:
    return CurriculumDataModule(cfg, cache, prompts)
