"""Screenshot of the MLflow UI's compare view for the newest eval sweep (docs/mlflow_compare_toy.png).

    python tools/mlflow_screenshot.py [--methods score,fastv,surprise,dycoke,random,uniform] [--ratios 0.1,0.05]

Starts `mlflow server` on the project's mlflow.db (port 5055), opens the compare view of the chosen
child runs of the newest sweep in headless Chromium (Debian: apt-get install chromium), writes the
PNG and stops the server by its PID.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--methods", default="score,fastv,surprise,dycoke,random,uniform")
    p.add_argument("--ratios", default="0.1,0.05")
    p.add_argument("--db", default=str(ROOT / "mlflow.db"))
    p.add_argument("--out", default=str(ROOT / "docs" / "mlflow_compare_toy.png"))
    p.add_argument("--port", type=int, default=5055)
    p.add_argument(
        "--experiment", default="score_lit-eval", help="where eval sweeps are logged (<tracking.experiment>-eval)"
    )
    ns = p.parse_args()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{ns.db}")
    exp = client.get_experiment_by_name(ns.experiment)
    parent = client.search_runs(
        [exp.experiment_id], "tags.kind = 'eval-sweep'", order_by=["attributes.start_time DESC"]
    )[0]
    kids = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    want_m, want_r = ns.methods.split(","), ns.ratios.split(",")
    ids = [
        k.info.run_id
        for k in sorted(kids, key=lambda k: (k.data.tags["method"], k.data.tags["retention_ratio"]))
        if k.data.tags["method"] in want_m and k.data.tags["retention_ratio"] in want_r
    ]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(ns.port),
            "--backend-store-uri",
            f"sqlite:///{ns.db}",
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(60):
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{ns.port}/health", timeout=1).read() == b"OK":
                    break
            except OSError:
                time.sleep(1)
        q = lambda x: urllib.parse.quote(json.dumps(x))  # noqa: E731
        url = f"http://127.0.0.1:{ns.port}/#/compare-runs?runs={q(ids)}&experiments={q([exp.experiment_id])}"
        subprocess.run(
            [
                "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=2000,1250",
                "--virtual-time-budget=20000",
                f"--screenshot={ns.out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
