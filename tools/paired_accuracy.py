"""The accuracy difference between two retention sweeps over the same questions, paired per question, with a
stratified bootstrap interval: e.g. eval.decode_resize=decoder against processor.

    PYTHONPATH=src python tools/paired_accuracy.py runs/eval/processor runs/eval/decoder [--boot 10000] [--json OUT]

Reads each folder's questions.jsonl (as `python -m score_lit eval` appends it). Per method@ratio (and vanilla):
accuracy of each sweep as the mean of the families' accuracies (the sweep's `all` row), the difference second minus
first, its 95% percentile interval over --boot replicates that redraw the questions within each family (the same
draw for both sweeps: paired; score_lit.evaluation.seeds), and how many questions turned right / wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def load(folder: Path) -> dict[str, dict[str, bool]]:
    """{label: {question id: correct}}; label 'vanilla' or 'method@ratio'."""
    path = folder / "questions.jsonl"
    if not path.is_file():
        raise SystemExit(f"paired_accuracy: error: {path}: no such file (give a sweep's folder: eval.out_dir)")
    out: dict[str, dict[str, bool]] = {}
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        parts = ([("vanilla", rec["vanilla"])] if rec["ids"] else []) + list(rec["methods"].items())
        for label, part in parts:
            out.setdefault(label, {}).update(zip(rec["ids"], map(bool, part["correct"])))
    return out


def compare(a: dict, b: dict, boot: int = 10000, seed: int = 0) -> list[dict]:
    from score_lit.evaluation.seeds import draw_counts, draw_questions, family_weights, interval

    rows = []
    for label in [k for k in a if k in b]:
        ids = sorted(set(a[label]) & set(b[label]))
        fam = np.array([i.split("/")[0] for i in ids])
        w = family_weights(fam)
        ca = np.array([a[label][i] for i in ids], float)
        cb = np.array([b[label][i] for i in ids], float)
        counts = draw_counts(draw_questions(np.random.default_rng(seed), fam, boot), len(ids))
        diff = (counts * w) @ (cb - ca)
        lo, hi = interval(diff)
        rows.append(
            {
                "label": label,
                "questions": len(ids),
                "accuracy_first": float(ca @ w),
                "accuracy_second": float(cb @ w),
                "difference": float((cb - ca) @ w),
                "interval_95": [lo, hi],
                "turned_right": int(((cb == 1) & (ca == 0)).sum()),
                "turned_wrong": int(((cb == 0) & (ca == 1)).sum()),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="paired_accuracy", description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path)
    p.add_argument("second", type=Path)
    p.add_argument("--boot", type=int, default=10000)
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    a = p.parse_args(argv)
    rows = compare(load(a.first), load(a.second), a.boot)
    print(f"| label | questions | {a.first.name} | {a.second.name} | difference [95%] | turned right / wrong |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        lo, hi = r["interval_95"]
        print(
            f"| {r['label']} | {r['questions']} | {100 * r['accuracy_first']:.1f} | {100 * r['accuracy_second']:.1f} "
            f"| {100 * r['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] | {r['turned_right']} / {r['turned_wrong']} |"
        )
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"first": str(a.first), "second": str(a.second), "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
