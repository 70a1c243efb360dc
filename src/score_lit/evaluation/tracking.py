"""The sweep's MLflow runs: one parent run per sweep, one child run per (method, ratio).

The parent (tag kind=eval-sweep, in experiment <tracking.experiment>-eval unless eval.experiment says
otherwise) is opened when the sweep starts (RUNNING; reopened by eval.resume=true), counts the questions
done as they are recorded, and is closed FINISHED with the CSV, table, plot and pictures as artifacts, or
KILLED on Ctrl-C with the summary metrics accuracy/<method>_<ratio> of what was measured. Each child run
has `method`, `retention_ratio`, `benchmark` as params and tags, so the UI's compare view puts ratios side
by side.
"""

from __future__ import annotations

from pathlib import Path

from score_lit.config import Config, retention_label

CHILD_METRICS = ("accuracy", "pct_of_vanilla", "kept_tokens_mean", "over_budget", "prefill_ms", "select_ms")
CHILD_FLOPS = ("prefill_tflops", "select_tflops", "flops_pct_of_vanilla")  # left out where NaN (no formula)


def open_parent(cfg: Config, out: Path, parent_run_id: str | None = None) -> tuple[str, str, str]:
    """Start (or, with the id of an interrupted sweep's parent, reopen) the parent run; returns
    (its run id, the experiment id, the experiment name)."""
    import mlflow

    from score_lit.training.resume import ensure_store

    e = cfg.eval
    ensure_store(cfg.tracking_uri)  # a fresh sqlite store's tables once (two sweeps or a training may open it at once)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    exp_name = e.experiment or f"{cfg.tracking.experiment}-eval"
    exp = mlflow.get_experiment_by_name(exp_name)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(exp_name, artifact_location=cfg.artifact_location)
    if parent_run_id is not None:
        parent = mlflow.start_run(run_id=parent_run_id)
    else:
        tags = {"benchmark": e.benchmark, "kind": "eval-sweep", "out_dir": str(out)}
        parent = mlflow.start_run(
            experiment_id=exp_id, run_name=cfg.tracking.run_name or f"eval-{e.benchmark} {out.name}", tags=tags
        )
        mlflow.log_params(
            {
                "benchmark": e.benchmark,
                "methods": ",".join(e.methods),
                "ratios": ",".join(map(str, e.ratios)),
                "policy": e.policy,
                "mllm.path": cfg.mllm.path,
                "frames": e.frames,
                "out_dir": str(out),
            }
        )
    return parent.info.run_id, exp_id, exp_name


def questions_done(n: int) -> None:
    import mlflow

    mlflow.log_metric("questions_done", n, step=n)


def summary_metrics(rows: list[dict]) -> dict[str, float]:
    """The parent run's metrics: accuracy (and % of vanilla) of every method at every ratio, family `all`."""
    out = {}
    for r in rows:
        if r["family"] == "all":
            key = f"{r['method']}_{retention_label(r['retention_ratio'])}"
            out[f"accuracy/{key}"] = float(r["accuracy"])
            if r["pct_of_vanilla"] == r["pct_of_vanilla"]:
                out[f"pct_of_vanilla/{key}"] = float(r["pct_of_vanilla"])
    return out


def close_killed(rows: list[dict] | None = None, artifacts=()) -> None:
    """End the parent run KILLED (Ctrl-C), with the summary of `rows` measured so far."""
    import mlflow

    if rows:
        mlflow.log_metrics(summary_metrics(rows))
    for f in artifacts:
        mlflow.log_artifact(str(f))
    mlflow.end_run(status="KILLED")


def close_failed() -> None:
    import mlflow

    mlflow.end_run(status="FAILED")


def close_finished(exp_id: str, rows: list[dict], benchmark: str, artifacts) -> None:
    """One child run per (method, ratio) of family `all` (per-family accuracies as accuracy_<family>), the
    parent's summary metrics and artifacts, and the parent ended FINISHED."""
    import mlflow

    for r in (x for x in rows if x["family"] == "all"):
        name = f"{r['method']} {retention_label(r['retention_ratio'])}"
        ctags = {"method": r["method"], "retention_ratio": str(r["retention_ratio"]), "benchmark": benchmark}
        with mlflow.start_run(experiment_id=exp_id, run_name=name, nested=True, tags=ctags):
            mlflow.log_params(ctags)
            metrics = {k: float(r[k]) for k in CHILD_METRICS}
            metrics.update({k: float(r[k]) for k in CHILD_FLOPS if r[k] == r[k]})
            for fr in rows:
                if (
                    fr["method"] == r["method"]
                    and fr["retention_ratio"] == r["retention_ratio"]
                    and fr["family"] != "all"
                ):
                    metrics[f"accuracy_{fr['family']}"] = float(fr["accuracy"])
            mlflow.log_metrics(metrics)
    mlflow.log_metrics(summary_metrics(rows))
    for f in artifacts:
        mlflow.log_artifact(str(f))
    mlflow.end_run(status="FINISHED")
