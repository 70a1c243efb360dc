"""Do two training runs log the same curves? Per metric, the largest difference between two runs' MLflow histories.

    python tools/compare_runs.py sqlite:///A/mlflow.db base50 sqlite:///B/mlflow.db after50 [--atol 1e-6] [--rtol 1e-5]

Each run is a run id or name (the newest run of that name) in its tracking store. Every metric both runs logged is
compared step by step (values logged twice at one step are paired in logging order), except the wall-clock ones
(`--exclude`, default time/ and perf/). Prints per metric: steps compared, max |a - b|, max |a - b| / max(|a|, |b|),
and OK or DIFF (|a - b| > atol + rtol * max(|a|, |b|) at some step). Metrics or steps only one run has are listed and
count as DIFF. Exit status 1 when any metric differs, 0 when all agree: a behaviour check for refactors that must
not change training (same config, same seed, before and after).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def history(client, run_id: str, key: str) -> dict[tuple[int, int], float]:
    """{(step, i): value}, i = the i-th value logged at that step (in timestamp order)."""
    seen: dict[int, int] = defaultdict(int)
    out = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: (m.step, m.timestamp)):
        out[(m.step, seen[m.step])] = m.value
        seen[m.step] += 1
    return out


def compare(a: dict, b: dict, atol: float, rtol: float) -> tuple[int, float, float, bool]:
    """(steps compared, max abs diff, max relative diff, agree) of two histories; NaN equals NaN."""
    if a.keys() != b.keys():
        return len(a.keys() & b.keys()), math.inf, math.inf, False
    mx_abs = mx_rel = 0.0
    ok = True
    for k in a:
        x, y = a[k], b[k]
        if math.isnan(x) and math.isnan(y):
            continue
        d = abs(x - y)
        scale = max(abs(x), abs(y))
        mx_abs, mx_rel = max(mx_abs, d), max(mx_rel, d / scale if scale > 0 else 0.0)
        ok = ok and d <= atol + rtol * scale
    return len(a), mx_abs, mx_rel, ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("uri_a")
    p.add_argument("run_a")
    p.add_argument("uri_b")
    p.add_argument("run_b")
    p.add_argument("--atol", type=float, default=1e-6)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--exclude", default=r"^(time|perf)/", help="regex of metric names not compared (wall-clock)")
    ns = p.parse_args()
    from mlflow.tracking import MlflowClient

    from score_lit.training.curves import find_run

    runs = []
    for uri, name in ((ns.uri_a, ns.run_a), (ns.uri_b, ns.run_b)):
        client = MlflowClient(uri)
        rid = find_run(uri, name)
        runs.append((client, rid, set(client.get_run(rid).data.metrics)))
    for (uri, name), (_, rid, _) in zip(((ns.uri_a, ns.run_a), (ns.uri_b, ns.run_b)), runs):
        print(f"{name} ({rid}) in {uri}")
    skip = re.compile(ns.exclude)
    keys_a, keys_b = runs[0][2], runs[1][2]
    bad = 0
    print(f"{'metric':32s} {'steps':>6s} {'max |a-b|':>12s} {'max rel':>12s}")
    for key in sorted(keys_a | keys_b):
        if skip.search(key):
            continue
        if key not in keys_a or key not in keys_b:
            print(f"{key:32s} only in run {'a' if key in keys_a else 'b'}: DIFF")
            bad += 1
            continue
        n, d_abs, d_rel, ok = compare(history(*runs[0][:2], key), history(*runs[1][:2], key), ns.atol, ns.rtol)
        bad += not ok
        print(f"{key:32s} {n:6d} {d_abs:12.3g} {d_rel:12.3g} {'OK' if ok else 'DIFF'}")
    print(f"{'all metrics agree' if not bad else f'{bad} metric(s) differ'} (atol {ns.atol:g}, rtol {ns.rtol:g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
