"""One data order, fixed by the config alone, that survives a restart (score_lit.data.datamodule's train loader).

Global step g belongs to the phase whose step range holds it; its batch is positions [(j*W + r)*bs,
(j*W + r + 1)*bs) of that phase's index stream (j the step within the phase, W ranks, r this rank), and the
stream is the dataset's indices in a fresh seeded permutation per pass: perm(seed, phase, pass). Nothing
depends on RNG state, so the batch of a step is a pure function of (config, step, rank). The train loader is
one epoch of all steps and is stateful for Lightning (state_dict / load_state_dict): a checkpoint records the
step it was taken at and the plan (`signature`), and a resumed run continues at that step, in that phase,
with the batches it would have seen; a checkpoint of another plan is refused (`check_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import DataLoader, Dataset

from score_lit.data.common import collate
from score_lit.errors import DataError


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

    def __init__(self, dataset: Dataset, sampler: CurriculumSampler, step_fn, collate_fn=collate, **kw):
        super().__init__(dataset, batch_sampler=sampler, collate_fn=collate_fn, **kw)
        self.step_fn = step_fn  # -> the number of steps trained so far (trainer.global_step)

    def state_dict(self) -> dict:
        return {"step": int(self.step_fn()), "plan": self.batch_sampler.signature()}

    def load_state_dict(self, state: dict) -> None:
        check_plan(state.get("plan") or [], self.batch_sampler.signature())
        self.batch_sampler.start = int(state["step"])
