"""What the benchmark readers share (score_lit.data.benchmarks): the Benchmark record, table reading, and
turning rows into multiple-choice VideoQARecords with a Problem for every row left out."""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Callable
from dataclasses import dataclass

from score_lit.data.common import Problem, option_letter, read_rows
from score_lit.data.video_qa import VideoQARecord

ANSWER_DIRECTLY = "Answer with the option's letter from the given choices directly."


@dataclass
class Benchmark:
    name: str  # "toy", "videomme", "mvbench", "mlvu", "longvideobench", "egoschema", "nextqa"
    records: list[VideoQARecord]  # meta["family"] = the sub-task / category used for per-family accuracy
    problems: list[Problem]  # rows left out (missing video, bad row), each with its file and reason
    metric: str  # the metric name as lmms-eval prints it for this task
    prompt: str  # how the question was formatted
    task: str = ""  # the lmms-eval task whose prompt and metric these follow ("" for toy)


# ------------------------------------------------------------------------------------------------
# Shared helpers


def find_files(root: str, patterns: list[str], what: str) -> list[str]:
    """Files matching the first pattern (under root) that matches any; FileNotFoundError naming them all."""
    for pat in patterns:
        hits = sorted(glob.glob(os.path.join(root, pat)))
        if hits:
            return hits
    raise FileNotFoundError(f"{what}: none of {patterns} under {root}")


def table(path: str) -> tuple[list[tuple[int, dict]], list[Problem]]:
    """Rows of a parquet / csv / json / jsonl file as (1-based row, object)."""
    if path.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover -- pyarrow is in the environment
            return [], [Problem(path, None, "pyarrow is not installed: export the parquet file to json (same fields)")]
        return list(enumerate(pq.read_table(path).to_pylist(), start=1)), []
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(enumerate(csv.DictReader(f), start=1)), []
    return read_rows(path)


def first_existing(paths: list[str]) -> str:
    """The first of `paths` that exists, else the first (the one a Problem names)."""
    return next((p for p in paths if os.path.exists(p)), paths[0])


def letters(n: int) -> list[str]:
    return [option_letter(i) for i in range(n)]


def record(
    rid: str,
    video: str,
    question: str,
    n: int,
    answer: int,
    family: str,
    source: str,
    line: int,
    meta: dict | None = None,
    start: float | None = None,
    end: float | None = None,
) -> VideoQARecord:
    if n < 2:
        raise ValueError(f"{n} option(s): a multiple-choice question needs at least 2")
    if not 0 <= answer < n:
        raise ValueError(f"answer index {answer} is outside the {n} options")
    meta = {**(meta or {}), "family": str(family), "source": source}
    return VideoQARecord(
        str(rid), os.path.abspath(video), question, option_letter(answer), letters(n), start, end, line, meta
    )


def answer_index(answer: object, candidates: list[str]) -> int:
    if answer not in candidates:
        raise ValueError(f"answer {answer!r} is not among the candidates {candidates}")
    return candidates.index(answer)


Row = tuple[str, int, dict]  # (annotation file, 1-based row, object)


def collect(
    rows: list[Row],
    build: Callable[[str, int, dict], VideoQARecord],
    limit: int | None,
    problems: list[Problem] | None = None,
) -> tuple[list[VideoQARecord], list[Problem]]:
    """Build a record per row (first `limit` rows); a row that raises, repeats an id or lacks its video is a Problem."""
    records, problems, seen = [], list(problems or []), set()
    for source, line, obj in rows[:limit] if limit is not None else rows:
        try:
            r = build(source, line, obj)
        except KeyError as e:
            problems.append(Problem(source, line, f"missing required field {e}"))
            continue
        except (ValueError, TypeError, AttributeError) as e:
            problems.append(Problem(source, line, str(e)))
            continue
        if r.id in seen:
            problems.append(Problem(source, line, "duplicate id", sample_id=r.id))
        elif not os.path.isfile(r.video):
            problems.append(Problem(source, line, "video file not found", sample_id=r.id, path=r.video))
        else:
            seen.add(r.id)
            records.append(r)
    return records, problems


def read_all(files: list[str]) -> tuple[list[Row], list[Problem]]:
    rows, problems = [], []
    for f in files:
        got, bad = table(f)
        rows += [(f, line, obj) for line, obj in got]
        problems += bad
    return rows, problems
