"""A run folder belongs to one run (score_lit.training.rundir): a reused name refuses, overwrite=true moves the old run
aside, a second concurrent training with the same name refuses, a failed start writes nothing, and Ctrl-C ends
the MLflow run KILLED with the resume hint."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from helpers import tiny_overrides

from score_lit.config import ConfigError, load_config
from score_lit.training.rundir import lock_path
from score_lit.training.fit import fit

ROOT = Path(__file__).resolve().parents[1]


def _runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_a_reused_name_refuses_and_overwrite_moves_the_old_run_aside(tmp_path):
    args = tiny_overrides(tmp_path, steps=2) + ["name=r"]
    first = fit(load_config([], args))
    run_dir = first.run_dir
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert {"config.json", "policy.pt", "tracking.json"} <= set(before)

    with pytest.raises(ConfigError, match=r"already holds a run \(checkpoints, config.json, .*resume=auto.*overwrite=true"):
        fit(load_config([], args + ["rl.group_size=2"]))
    # a start that fails on the Trainer's arguments (no GPU here) writes nothing either, even with resume=auto
    with pytest.raises(ConfigError, match="the Trainer refuses these trainer.\* settings"):
        fit(load_config([], args + ["resume=auto", "trainer.accelerator=cuda"]))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert len(_runs(tmp_path)) == 1  # no MLflow run was opened by the refused starts

    second = fit(load_config([], args + ["overwrite=true"]))
    aside = [p for p in run_dir.parent.iterdir() if p.name.startswith("r.old-")]
    assert len(aside) == 1 and (aside[0] / "policy.pt").read_bytes() == before["policy.pt"]  # moved, not deleted
    assert second.run_dir == run_dir and (run_dir / "policy.pt").is_file() and second.run_id != first.run_id
    assert len(_runs(tmp_path)) == 2


def test_overwrite_and_resume_together_are_refused():
    with pytest.raises(ConfigError, match="overwrite=true and resume=auto contradict"):
        load_config([], ["overwrite=true", "resume=auto"])


@pytest.mark.integration
def test_a_second_concurrent_training_with_the_same_name_is_refused(tmp_path):
    # steps: far more than the first run can take before the SIGINT below reaches it (it ends the run)
    args = [sys.executable, "-m", "score_lit", "train", *tiny_overrides(tmp_path, steps=100_000), "name=same"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # Ctrl-C works even under `&`  # fmt: skip
    try:
        lock = lock_path(tmp_path / "runs" / "same")
        deadline = time.time() + 120
        while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):  # the first run holds the name
            assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() is not None else "timeout"
            time.sleep(0.2)
        second = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert first.poll() is None  # still training while the second was refused
        tracking = tmp_path / "runs" / "same" / "tracking.json"
        while not tracking.is_file():  # written when fit starts
            assert first.poll() is None and time.time() < deadline, "the first run never started fitting"
            time.sleep(0.2)
        first.send_signal(signal.SIGINT)  # Ctrl-C: the MLflow run ends KILLED, with the resume hint
        first_err = first.communicate(timeout=120)[1]
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert "interrupted at step" in first_err and "resume=auto" in first_err, first_err[-2000:]
    run_id = json.loads(tracking.read_text())["run_id"]
    assert MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(run_id).info.status == "KILLED"
    # what is not the user's business stays out of a training's output (issue: srun hint, litlogger tip, deprecation)
    for noise in ("srun", "litlogger", "LeafSpec", "Creating initial MLflow database tables", "not found. Creating it"):
        assert noise not in first_err, (noise, first_err[-2000:])
    lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"another training (pid {first.pid}) is running as name=same" in lines[0]


def test_a_start_that_fails_after_its_mlflow_run_opened_ends_it_failed(tmp_path, monkeypatch):
    """An error between opening the MLflow run and Lightning's fit (here: logging the params) leaves no RUNNING run."""

    def broken(*a, **k):
        raise RuntimeError("the tracking server went away")

    monkeypatch.setattr("score_lit.training.fit.log_params_once", broken)
    with pytest.raises(RuntimeError, match="went away"):
        fit(load_config([], tiny_overrides(tmp_path, steps=2) + ["name=broken"]))
    assert [r.info.status for r in _runs(tmp_path)] == ["FAILED"]
