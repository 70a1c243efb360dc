"""What share of a training step the feature cache saves, on the toy setup (a benchmark, not a test).

    python -m score_lit.perf.cache_bench            # about 1 min on 2 cores; prints a table, writes measurements/feature_cache_cpu.json

Stage 2 on real mp4 files (the toy train split, exported once to artifacts/toy-train: 400 videos,
16 frames of 64x64, decoded with decord), with the trained toy MLLM, K=8, batch 4. Two runs of two
passes over the data each: without the cache, and from a cache that `cache-features` filled first
(score_lit.data.feature_cache_fill; both passes read it). Per pass, the mean over steps of time/data (loading + decoding), time/encode (vision tower +
projector) and time/step (everything), from the runs' MLflow histories; the first 5 steps of each
pass and the step after each validation (none here) are left out as warm-up.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from score_lit.config import PROJECT_ROOT as ROOT
from score_lit.config import load_config
from score_lit.data.feature_cache_fill import fill_cache
from score_lit.toy.export import export_split
from score_lit.training.fit import fit


def main() -> None:
    data = export_split(ROOT / "artifacts/toy-train", split="train", n=200, families=["flash", "distracted"])
    n_videos = sum(1 for _ in open(data))
    tmp = Path(tempfile.mkdtemp(prefix="cache_bench."))
    steps_per_pass = (n_videos - 16) // 4  # 16 rows are held out for validation
    results = {}
    for mode in ("off", "on"):
        over = [
            f"name=cache_{mode}",
            f"out_dir={tmp / 'runs'}",
            f"tracking.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
            "phases=[stage2]",
            f"stage2.steps={2 * steps_per_pass}",
            "val.every_n_steps=100000",
            "stage2.data.source=video_qa",
            f"stage2.data.path={data}",
            "stage2.data.val_samples=16",
            f"stage2.data.cache_dir={tmp / 'features' if mode == 'on' else 'null'}",
        ]
        cfg = load_config([ROOT / "conf/stage2.yaml"], over + ["init_policy=null"])
        if mode == "on":
            fill_cache(cfg)  # the offline pass; training only reads the cache
        res = fit(cfg)
        client = MlflowClient(res.tracking_uri)
        hist = {
            k: {m.step: m.value for m in client.get_metric_history(res.run_id, k)}
            for k in ("time/data", "time/encode", "time/step")
        }
        for p in (0, 1):
            keep = range(p * steps_per_pass + 5, (p + 1) * steps_per_pass)
            results[f"cache {mode}, pass {p + 1}"] = {
                k.split("/")[1] + "_ms": 1000 * statistics.mean(h[s] for s in keep if s in h) for k, h in hist.items()
            }
    off, warm = results["cache off, pass 2"]["step_ms"], results["cache on, pass 2"]["step_ms"]
    results["saved_share_of_step"] = 1 - warm / off
    out = ROOT / "measurements" / "feature_cache_cpu.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"{'':22} {'data ms':>9} {'encode ms':>10} {'step ms':>9}")
    for name, r in results.items():
        if isinstance(r, dict):
            print(f"{name:22} {r['data_ms']:9.1f} {r['encode_ms']:10.1f} {r['step_ms']:9.1f}")
    print(f"the warm cache saves {100 * results['saved_share_of_step']:.1f}% of step time")
    print(out)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
