"""Training against a real MLflow tracking server (conftest's session fixture `mlflow_server`: `mlflow server` on
loopback with its own sqlite store): a run logs through it, an unreachable server stops the CLI before anything is
written, and a server killed mid-run (SIGKILL) or hung (SIGSTOP) neither stops the training nor loses a metric (the
run uploads them itself when the server is back, or `python -m score_lit mlflow-sync runs/<name>` does after the
run)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port, tiny_overrides, tiny_run
from mlflow.tracking import MlflowClient

from score_lit.config import ConfigError, load_config
from score_lit.training.fit import fit
from score_lit.training.tracking_server import OUTAGE_TAG, PENDING, Outage, sync_run

ROOT = Path(__file__).resolve().parents[1]
TRAIN_METRICS = ["loss", "reward/fidelity", "keep_ratio/mean", "time/rollout"]


def cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "score_lit", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def the_run(client: MlflowClient, experiment: str, name: str):
    """The one MLflow run of that name in that experiment (asserts there is exactly one)."""
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id], f"run_name = '{name}'")
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def assert_each_step_once(client: MlflowClient, run_id: str, steps: int) -> None:
    for key in TRAIN_METRICS:
        logged = sorted(m.step for m in client.get_metric_history(run_id, key))
        assert logged == list(range(steps)), (key, logged)


def long_run(tmp_path: Path, name: str, uri: str, steps: int, extra=()) -> list[str]:
    """A CLI training of `steps` tiny steps (about 0.3 s each on 2 shared cores) against `uri`."""
    over = tiny_run(tmp_path, name, steps, data={"val_samples": 2, "train_samples": 10}, val_every=steps)
    return ["train", *over, "mllm.path=null", f"tracking.tracking_uri={uri}", f"tracking.experiment={name}", *extra]


def in_background(args: list[str], **env: str) -> subprocess.Popen:
    """`python -m score_lit ARGS` started in the background (stdout and stderr piped, text), `env` added."""
    return subprocess.Popen(
        [sys.executable, "-m", "score_lit", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, what: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the training ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:.0f} s"
        time.sleep(0.2)


def logged_steps(uri: str, experiment: str) -> int:
    """How many steps of `loss` the (only) run of the experiment has on the server so far (0 before it exists)."""
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    return len(client.get_metric_history(runs[0].info.run_id, "loss")) if runs else 0


def test_an_unreachable_server_stops_the_cli_in_one_line_before_anything_is_written(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    r = cli("train", *tiny_overrides(tmp_path), f"tracking.tracking_uri={uri}", "mllm.path=null", timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"score_lit: error: no MLflow tracking server at tracking.tracking_uri={uri}")
    assert "(connection refused)" in lines[0] and "MLFLOW_TRACKING_URI" in lines[0]
    assert not (tmp_path / "runs").exists()  # no run folder, no lock, no checkpoint

    # the library entry point says the same, before the run folder exists
    with pytest.raises(ConfigError, match="no MLflow tracking server"):
        fit(load_config([], tiny_overrides(tmp_path) + [f"tracking.tracking_uri={uri}", "mllm.path=null"]))
    assert not (tmp_path / "runs").exists()


def test_mlflow_sync_refuses_while_the_training_runs_and_without_a_server(tmp_path):
    import fcntl

    run_dir = tmp_path / "runs" / "r"
    run_dir.mkdir(parents=True)
    uri = f"http://127.0.0.1:{free_port()}"
    outage = Outage(run_dir, uri, "0" * 32)
    outage.keep(3, {"loss": 0.5}, attempted=True)
    outage.keep(4, {"loss": 0.25})
    with open(tmp_path / "runs" / ".r.lock", "w") as lock:  # what a running training holds (training/rundir.py)
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(ConfigError, match="a training still runs in"):
            sync_run(run_dir)
    with pytest.raises(ConfigError, match=r"no MLflow tracking server at .*\(connection refused\)"):
        sync_run(run_dir)
    assert (run_dir / PENDING).read_text().count("\n") == 3  # header + 2 steps, untouched
    r = cli("mlflow-sync", str(tmp_path / "nope"), timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"score_lit: error: {tmp_path / 'nope'} is not a run folder: give runs/<name> of a training run"
    ]


def test_mlflow_tracking_uri_is_the_default_when_the_config_names_none(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert load_config([], []).tracking_uri == "http://mlflow.example:5000"
    assert load_config([], ["tracking.tracking_uri=sqlite:////tmp/x.db"]).tracking_uri == "sqlite:////tmp/x.db"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert load_config([], []).tracking_uri.startswith("sqlite:///") and load_config([], []).tracking_uri.endswith(
        "/mlflow.db"
    )


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_a_training_logs_through_the_server(tmp_path, mlflow_server):
    cfg = load_config(
        [], tiny_overrides(tmp_path) + [f"tracking.tracking_uri={mlflow_server.uri}", "tracking.experiment=through"]
    )
    res = fit(cfg)
    assert res.tracking_uri == mlflow_server.uri and res.pending is None
    client = MlflowClient(mlflow_server.uri)
    run = the_run(client, "through", cfg.name)
    assert run.info.run_id == res.run_id and run.info.status == "FINISHED"
    assert_each_step_once(client, res.run_id, 4)
    assert len(client.get_metric_history(res.run_id, "val/accuracy_r0.10")) == 2
    assert run.data.params["rl.group_size"] == "4" and OUTAGE_TAG not in run.data.tags
    assert {a.path for a in client.list_artifacts(res.run_id)} >= {"policy.pt", "curves.png"}  # through the server
    assert (mlflow_server.root / "artifacts").is_dir()


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_a_server_killed_mid_run_and_back_after_it_loses_no_metric(tmp_path, mlflow_server):
    """kill -9 the server mid-run: the training finishes (exit 0) and says so; the server comes back on the same
    store; mlflow-sync uploads the rest: every step's metrics once, the run FINISHED with its artifacts and a tag."""
    steps, name = 30, "outage-after"
    proc = in_background(long_run(tmp_path, name, mlflow_server.uri, steps))
    try:
        wait_for(lambda: logged_steps(mlflow_server.uri, name) >= 3, "3 steps on the server", proc)
        mlflow_server.kill()
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        if mlflow_server.proc is None:
            mlflow_server.start()  # the session's server is back for the other tests, on the same store
    assert proc.returncode == 0, err[-3000:]
    run_dir = tmp_path / "runs" / name
    assert "score_lit: warning: MLflow server" in err and "unreachable at step" in err
    assert f"python -m score_lit mlflow-sync {run_dir}" in err  # the end-of-run line says how to upload
    assert (run_dir / "policy.pt").is_file() and (run_dir / PENDING).is_file()
    assert "mlflow pending" in out

    client = MlflowClient(mlflow_server.uri)
    run_id = the_run(client, name, name).info.run_id
    assert client.get_run(run_id).info.status == "RUNNING"  # its end is in the file, not on the server yet
    synced = cli("mlflow-sync", str(run_dir))
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert "run ended FINISHED" in synced.stdout and not (run_dir / PENDING).exists()

    assert_each_step_once(client, run_id, steps)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and "mlflow-sync" in run.data.tags[OUTAGE_TAG]
    assert {a.path for a in client.list_artifacts(run_id)} >= {"policy.pt", "curves.png"}
    again = cli("mlflow-sync", str(run_dir))  # nothing left: says so, changes nothing
    assert again.returncode == 0 and "nothing to upload" in again.stdout
    assert_each_step_once(client, run_id, steps)


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_a_server_back_during_the_run_gets_the_kept_metrics_from_the_run_itself(tmp_path, mlflow_server):
    """kill -9 the server mid-run and start it again while the training goes on: the run uploads what it kept
    (tracking.retry_every_s=1), keeps logging, and ends with nothing pending: every step once. The training is paused
    (SIGSTOP) while the server restarts, so that it cannot end first on a loaded machine."""
    steps, name = 40, "outage-during"
    proc = in_background(long_run(tmp_path, name, mlflow_server.uri, steps, ["tracking.retry_every_s=1"]))
    pending = tmp_path / "runs" / name / PENDING
    try:
        wait_for(lambda: logged_steps(mlflow_server.uri, name) >= 3, "3 steps on the server", proc)
        mlflow_server.kill()
        wait_for(pending.exists, "a kept metric", proc)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            mlflow_server.start()
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait_for(lambda: not pending.exists(), "the kept metrics uploaded", proc)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
        if mlflow_server.proc is None:
            mlflow_server.start()
    assert proc.returncode == 0, err[-3000:]
    assert "unreachable at step" in err and "answers again: uploaded" in err
    assert "still unreachable" not in err and not pending.exists() and "mlflow pending" not in out
    client = MlflowClient(mlflow_server.uri)
    run = the_run(client, name, name)
    assert run.info.status == "FINISHED" and "by the training run itself" in run.data.tags[OUTAGE_TAG]
    assert_each_step_once(client, run.info.run_id, steps)
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"policy.pt", "curves.png"}


@pytest.mark.slow
@pytest.mark.mlflow_server
def test_a_server_that_hangs_mid_run_costs_seconds_and_gets_every_metric_when_it_answers_again(tmp_path, mlflow_server):
    """The server stops answering without closing its port (SIGSTOP: requests are accepted and time out, unlike a
    dead server's refused connections). The training goes on after the bounded timeouts (MLFLOW_HTTP_REQUEST_TIMEOUT
    from the environment wins over score_lit's 30 s), keeps its metrics, and uploads them itself once the server
    answers again: every step once, the run FINISHED."""
    steps, name = 40, "outage-hang"
    proc = in_background(
        long_run(tmp_path, name, mlflow_server.uri, steps, ["tracking.retry_every_s=1"]),
        MLFLOW_HTTP_REQUEST_TIMEOUT="2",
    )
    pending = tmp_path / "runs" / name / PENDING
    try:
        wait_for(lambda: logged_steps(mlflow_server.uri, name) >= 3, "3 steps on the server", proc)
        mlflow_server.hang()
        hung = time.monotonic()
        wait_for(pending.exists, "a kept metric", proc, timeout=120)
        kept_after = time.monotonic() - hung
        mlflow_server.wake()
        wait_for(lambda: not pending.exists(), "the kept metrics uploaded", proc)
        out, err = proc.communicate(timeout=300)
    finally:
        mlflow_server.wake()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert kept_after < 60, kept_after  # 3 tries of 2 s and the backoff, not MLflow's 7 tries of 120 s
    assert "unreachable at step" in err and "answers again: uploaded" in err, err[-3000:]
    assert not pending.exists() and "mlflow pending" not in out
    client = MlflowClient(mlflow_server.uri)
    run = the_run(client, name, name)
    assert run.info.status == "FINISHED" and "by the training run itself" in run.data.tags[OUTAGE_TAG]
    assert_each_step_once(client, run.info.run_id, steps)
