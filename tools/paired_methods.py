"""Paired per-question comparison of methods in ONE sweep: each method's accuracy against a reference method's at the
same ratio, with a 95% bootstrap interval on the difference (questions resampled per family, one draw shared by
every method; score_lit.evaluation.seeds' estimator), and the mean vision / total TFLOPs per question.

    PYTHONPATH=src .venv/bin/python tools/paired_methods.py SWEEP_DIR [--reference score] [--boot 4000]

SWEEP_DIR is a `python -m score_lit eval` output folder (its questions.jsonl and the benchmark's test.jsonl named in
sweep.json, for each question's family). Accuracy is the mean of the families' accuracies, as the sweep's `all`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from score_lit.evaluation.records import BatchRecord, read_records
from score_lit.evaluation.seeds import draw_counts, draw_questions, family_weights, interval, replicates


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sweep")
    ap.add_argument("--reference", default="score")
    ap.add_argument("--boot", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    ns = ap.parse_args(argv)
    folder = Path(ns.sweep)
    rec = BatchRecord.merge(read_records(folder / "questions.jsonl"))
    settings = json.loads((folder / "sweep.json").read_text())
    root = Path(settings["identity"]["eval.root"])
    fam_of = {}
    for line in (root / "test.jsonl").read_text().splitlines():
        row = json.loads(line)
        fam_of[row["id"]] = row.get("family", "all")
    names = sorted(set(fam_of[i] for i in rec.ids))
    family = np.array([names.index(fam_of[i]) for i in rec.ids])
    w = family_weights(family)
    counts = draw_counts(draw_questions(np.random.default_rng(ns.seed), family, ns.boot), len(rec.ids))
    print(
        f"{folder}: {len(rec.ids)} questions ({', '.join(names)}), vanilla {100 * np.asarray(rec.vanilla.correct) @ w:.1f}%"
    )
    print(f"\n| method | ratio | accuracy % | minus {ns.reference} (points) [95% CI] | vision GFLOPs | total GFLOPs |")
    print("|---|---|---|---|---|---|")
    van_v, van_p = np.nanmean(rec.vanilla.vision_flops), np.nanmean(rec.vanilla.flops)
    print(
        f"| vanilla | 1.0 | {100 * np.asarray(rec.vanilla.correct) @ w:.1f} | | {van_v / 1e9:.3g} | {(van_v + van_p) / 1e9:.3g} |"
    )
    for (m, r), out in rec.methods.items():
        ref = rec.methods.get((ns.reference, r))
        acc = 100 * np.asarray(out.correct, dtype=float) @ w
        vis, pre = np.nanmean(out.vision_flops), np.nanmean(out.flops)
        diff = ""
        if ref is not None and m != ns.reference:
            both = replicates(np.array([out.correct, ref.correct]), counts, w)
            d = 100 * (both[:, 0] - both[:, 1])
            lo, hi = interval(d)
            point = acc - 100 * np.asarray(ref.correct, dtype=float) @ w
            diff = f"{point:+.1f} [{lo:+.1f}, {hi:+.1f}]"
        print(f"| {m} | {r} | {acc:.1f} | {diff} | {vis / 1e9:.3g} | {(vis + pre) / 1e9:.3g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
