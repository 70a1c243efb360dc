"""Do two retention sweeps give the same per-question results? The check that a refactor left the sweep unchanged.

    python tools/compare_sweeps.py runs/eval/before runs/eval/after [--rel 1e-9]

Reads each folder's questions.jsonl (one record per batch, as `python -m score_lit eval` appends them; plain
JSON here, so the check does not run the code it checks), and compares, per (method, ratio, question) and for
vanilla: whether the answer was correct, the visual tokens kept, the FLOPs and the selection's FLOPs (relative
tolerance --rel; NaN equals NaN). Timings are not compared. Prints the number of mismatches (and of questions
only one sweep has) per method@ratio; exit status 1 if any, 0 if none.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

Key = tuple[str, float, str]  # (method, ratio, question id); vanilla is ("vanilla", 1.0, id)


def load(folder: str | Path) -> dict[Key, tuple]:
    """{(method, ratio, question id): (correct, kept, flops, select_flops)} of a sweep folder's questions.jsonl."""
    path = Path(folder) / "questions.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (give the folder of a sweep: eval.out_dir)")
    out: dict[Key, tuple] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            print(f"{path}:{n}: torn line, ignored (and any after it)", file=sys.stderr)
            break
        parts = [("vanilla", 1.0, rec["vanilla"])] if rec["ids"] else []
        parts += [(key.rsplit("@", 1)[0], float(key.rsplit("@", 1)[1]), part) for key, part in rec["methods"].items()]
        for method, ratio, part in parts:
            fields = zip(
                part["correct"],
                part["kept"],
                part.get("flops") or [None] * len(rec["ids"]),
                part.get("select_flops") or [None] * len(rec["ids"]),
            )
            for qid, (c, k, f, sf) in zip(rec["ids"], fields):
                if (method, ratio, qid) in out:
                    print(
                        f"{path}:{n}: {method}@{ratio} {qid} recorded twice; the later one is compared", file=sys.stderr
                    )
                out[(method, ratio, qid)] = (bool(c), int(k), f, sf)
    return out


def same_float(a, b, rel: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0)


def same(x: tuple, y: tuple, rel: float) -> bool:
    return x[0] == y[0] and x[1] == y[1] and same_float(x[2], y[2], rel) and same_float(x[3], y[3], rel)


def compare(a: dict[Key, tuple], b: dict[Key, tuple], rel: float = 1e-9) -> tuple[Counter, Counter, Counter]:
    """(questions per method@ratio, mismatches per method@ratio, questions only one side has per method@ratio)."""
    total, bad, missing = Counter(), Counter(), Counter()
    for key in sorted(a.keys() | b.keys(), key=lambda k: (k[0] != "vanilla", k[0], -k[1], k[2])):
        label = f"{key[0]}@{key[1]:g}"
        total[label] += 1
        if key not in a or key not in b:
            missing[label] += 1
        elif not same(a[key], b[key], rel):
            bad[label] += 1
    return total, bad, missing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", help="a sweep's folder (holds questions.jsonl)")
    p.add_argument("after", help="the other sweep's folder")
    p.add_argument("--rel", type=float, default=1e-9, help="relative tolerance of the FLOPs (default 1e-9)")
    ns = p.parse_args(argv)
    total, bad, missing = compare(load(ns.before), load(ns.after), ns.rel)
    width = max(map(len, total), default=10)
    print(f"{'method@ratio':<{width}}  questions  mismatches  only_one_side")
    for label in total:
        print(f"{label:<{width}}  {total[label]:>9}  {bad[label]:>10}  {missing[label]:>13}")
    n_bad, n_missing = sum(bad.values()), sum(missing.values())
    print(f"{len(total)} method@ratio, {sum(total.values())} results: {n_bad} mismatches, {n_missing} on one side only")
    return 1 if n_bad or n_missing else 0


if __name__ == "__main__":
    sys.exit(main())
