"""The sweep's one record type: the per-question results of a batch, or of every batch merged.

    rec = BatchRecord(ids, left_out, vanilla=Outcome(...), methods={(method, ratio): Outcome(...)}, ...)
    line = rec.to_json()                      # one line of questions.jsonl, appended after each batch
    BatchRecord.from_json(line) == rec        # read back for eval.resume=true
    total = BatchRecord.merge(records)        # the sweep so far, the input of the report's rows

Every list of an Outcome is in the order of the record's ids; merging concatenates them (and adds the
times), so the whole sweep is the same type as one batch. The JSON layout is the one questions.jsonl has
always had ("m@r" keys, vanilla's select_s added), so a sweep interrupted before this record type
existed resumes too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from score_lit.data.common import Problem


@dataclass
class Outcome:
    """One method at one ratio (or vanilla) on a list of questions; lists [Q] in the record's id order."""

    correct: list[bool]  # [Q] the options' first-token argmax is the answer
    kept: list[int]  # [Q] visual tokens given to the LLM
    flops: list[float] = field(default_factory=list)  # [Q] prefill FLOPs incl. the selection; [] = not measured
    select_flops: list[float] = field(default_factory=list)  # [Q] the selection's part of them
    prefill_s: float = 0.0  # wall time of the LLM calls
    select_s: float = 0.0  # wall time of the selection (a ranking method: its ranking + this ratio's cut)
    vision_flops: list[float] = field(default_factory=list)  # [Q] the vision tower's FLOPs; [] = not measured

    def extend(self, other: Outcome) -> None:
        self.correct += other.correct
        self.kept += other.kept
        self.flops += other.flops
        self.select_flops += other.select_flops
        self.prefill_s += other.prefill_s
        self.select_s += other.select_s
        self.vision_flops += other.vision_flops

    def to_dict(self) -> dict:
        return {
            "correct": self.correct,
            "kept": self.kept,
            "flops": self.flops,
            "select_flops": self.select_flops,
            "prefill_s": self.prefill_s,
            "select_s": self.select_s,
            "vision_flops": self.vision_flops,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Outcome:
        def nan(xs):
            return [math.nan if x is None else float(x) for x in xs]

        return cls(
            [bool(c) for c in d.get("correct", [])],
            [int(k) for k in d.get("kept", [])],
            nan(d.get("flops", [])),
            nan(d.get("select_flops", [])),
            float(d.get("prefill_s", 0.0)),
            float(d.get("select_s", 0.0)),
            nan(d.get("vision_flops", [])),
        )


@dataclass
class KeptMap:
    """The kept tokens of one question by one method at eval.viz_ratio (a kept-token picture's row)."""

    id: str
    method: str
    ratio: float
    keep: list[bool]  # [T*N]
    grid: tuple[int, int, int]  # (T, H', W')


@dataclass
class BatchRecord:
    """The per-question results of one batch (one line of questions.jsonl), or of several merged."""

    ids: list[str]  # [Q] the questions answered
    left_out: list[Problem] = field(default_factory=list)  # videos that failed to load (not in ids)
    vanilla: Outcome = field(default_factory=lambda: Outcome([], []))  # every visual token
    methods: dict[tuple[str, float], Outcome] = field(default_factory=dict)  # (method, ratio) -> results
    viz: list[KeptMap] = field(default_factory=list)  # pictures of the first eval.viz_samples questions
    n_tokens: int = 0  # T*N visual tokens per question
    grid: tuple = ()  # (T, H', W')

    def extend(self, other: BatchRecord) -> None:
        """Append `other`'s questions (a batch with none only adds its left-out videos)."""
        self.left_out += other.left_out
        self.viz += other.viz
        if not other.ids:
            return
        self.ids += other.ids
        self.vanilla.extend(other.vanilla)
        for key, out in other.methods.items():
            self.methods.setdefault(key, Outcome([], [])).extend(out)
        self.n_tokens, self.grid = other.n_tokens, tuple(other.grid)

    @classmethod
    def merge(cls, records, keys=()) -> BatchRecord:
        """One record holding every record's questions in order; `keys` fixes the order of the methods."""
        total = cls([], methods={k: Outcome([], []) for k in keys})
        for r in records:
            total.extend(r)
        return total

    def to_json(self) -> str:
        return json.dumps(
            {
                "ids": self.ids,
                "left_out": [vars(p) for p in self.left_out],
                "vanilla": self.vanilla.to_dict() if self.ids else {},
                "methods": {f"{m}@{r}": out.to_dict() for (m, r), out in self.methods.items()},
                "viz": [{**vars(v), "grid": list(v.grid)} for v in self.viz],
                "n_tokens": self.n_tokens,
                "grid": list(self.grid),
            }
        )

    @classmethod
    def from_json(cls, line: str) -> BatchRecord:
        d = json.loads(line)
        methods = {}
        for key, out in d.get("methods", {}).items():
            m, r = key.rsplit("@", 1)
            methods[(m, float(r))] = Outcome.from_dict(out)
        viz = [
            KeptMap(v["id"], v["method"], float(v["ratio"]), [bool(x) for x in v["keep"]], tuple(v["grid"]))
            for v in d.get("viz", [])
        ]
        return cls(
            list(d["ids"]),
            [Problem(**p) for p in d.get("left_out", [])],
            Outcome.from_dict(d.get("vanilla") or {}),
            methods,
            viz,
            int(d.get("n_tokens", 0)),
            tuple(d.get("grid", ())),
        )


def read_records(path: Path) -> list[BatchRecord]:
    """The records of questions.jsonl up to the first torn line (a kill mid-write: that batch is measured again)."""
    out = []
    for line in Path(path).read_text().splitlines() if Path(path).is_file() else []:
        try:
            out.append(BatchRecord.from_json(line))
        except (json.JSONDecodeError, KeyError, TypeError):
            break
    return out
