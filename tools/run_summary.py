"""One line of the README's "What the default runs show" table per training run, from its MLflow history.

    python tools/run_summary.py stage1 stage2 [--tracking-uri sqlite:///mlflow.db] [--last 100]

Per run (by name: the newest run of that name, or by id): the sampled keep ratio at step 0 and its mean over
the last `--last` steps, the training dCE (sampled masks) over the same steps, and the last validation's
accuracy with all tokens, at 25% and at 10%, and its dCE at 10%, as a markdown table row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("runs", nargs="+", help="run names or ids")
    p.add_argument("--tracking-uri", default=f"sqlite:///{ROOT / 'mlflow.db'}")
    p.add_argument("--last", type=int, default=100)
    ns = p.parse_args()
    from mlflow.tracking import MlflowClient

    from score_lit.training.curves import find_run

    client = MlflowClient(ns.tracking_uri)
    print(
        "| run | sampled keep ratio (step 0, then mean of the last steps) | training dCE (nats) | val accuracy, all tokens | at 25% | at 10% | val dCE at 10% |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in ns.runs:
        run_id = find_run(ns.tracking_uri, name)
        hist = lambda key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))  # noqa: E731
        keep, dce = hist("keep_ratio/mean"), hist("dce/mean")
        last = lambda h: statistics.fmean(v for _, v in h[-ns.last :])  # noqa: E731
        val = lambda key: hist(key)[-1][1]  # noqa: E731
        print(
            f"| {name} | {keep[0][1]:.3f} at step 0, then {last(keep):.3f} | {last(dce):.3f} | {100 * val('val/accuracy_r1.00'):.1f}% "
            f"| {100 * val('val/accuracy_r0.25'):.1f}% | {100 * val('val/accuracy_r0.10'):.1f}% | {val('val/dce_r0.10'):.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
