"""Training curves read back from MLflow (what the run really logged), plotted one panel per curve.

python -m score_lit plot-run RUN_ID [--tracking-uri URI] [--out curves.png]
fit.py draws runs/<name>/curves.png with plot_training_curves at the end of a run.
"""

from __future__ import annotations

from pathlib import Path

CURVES = (
    ("keep_ratio/mean", "mean keep ratio"),
    ("dce/mean", "mean dCE (nats)"),
    ("reward/fidelity", "fidelity reward"),
)


def metric_history(tracking_uri: str, run_id: str, key: str) -> tuple[list[int], list[float]]:
    from mlflow.tracking import MlflowClient

    hist = sorted(MlflowClient(tracking_uri).get_metric_history(run_id, key), key=lambda m: m.step)
    return [m.step for m in hist], [m.value for m in hist]


def find_run(tracking_uri: str, run: str) -> str:
    """The id of `run`: an MLflow run id, or a run name (the newest run of that name in any experiment).
    ConfigError (one line) when neither exists in the store."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from score_lit.config import ConfigError

    if tracking_uri.startswith("sqlite:///") and not Path(tracking_uri[len("sqlite:///") :]).is_file():
        raise ConfigError(
            f"no MLflow store at {tracking_uri}: train a run first, or pass --tracking-uri of the store that holds {run!r}"
        )
    client = MlflowClient(tracking_uri)
    try:
        return client.get_run(run).info.run_id
    except MlflowException:
        pass
    exps = [e.experiment_id for e in client.search_experiments()]
    escaped = run.replace("'", "\\'")
    found = (
        client.search_runs(
            exps, f"attributes.run_name = '{escaped}'", order_by=["attributes.start_time DESC"], max_results=1
        )
        if exps
        else []
    )
    if not found:
        raise ConfigError(
            f"no MLflow run with id or name {run!r} in {tracking_uri}: give a run id or name that `make mlflow-ui` lists (or --tracking-uri)"
        )
    return found[0].info.run_id


def plot_training_curves(tracking_uri: str, run_id: str, out: str | Path, title: str = "") -> Path:
    """One panel per curve, raw values plus a running mean; validation accuracies on the last panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(CURVES) + 1, figsize=(4 * (len(CURVES) + 1), 3.2))
    for ax, (key, label) in zip(axes, CURVES):
        steps, vals = metric_history(tracking_uri, run_id, key)
        ax.plot(steps, vals, color="0.75", lw=0.8)
        if len(vals) >= 5:
            w = max(1, len(vals) // 20)
            smooth = np.convolve(vals, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1 :], smooth, lw=1.8)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    ax = axes[-1]
    from mlflow.tracking import MlflowClient

    keys = sorted(k for k in MlflowClient(tracking_uri).get_run(run_id).data.metrics if k.startswith("val/accuracy_"))
    for key in keys:
        steps, vals = metric_history(tracking_uri, run_id, key)
        ax.plot(steps, vals, marker="o", ms=3, label=key.removeprefix("val/accuracy_"))
    ax.set_title("validation accuracy", fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
