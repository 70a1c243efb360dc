"""A run folder belongs to one run (score_lit.training.rundir): a reused name refuses, overwrite=true moves the old run
aside, a second concurrent training with the same name refuses, a failed start writes nothing, and Ctrl-C ends
the MLflow run KILLED with the resume hint. The claim, the lock and the move aside are tested as functions; one
fit shows that a training uses them in that order (claim, the Trainer's checks, then the move)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import tiny_overrides
from mlflow.tracking import MlflowClient

from score_lit.config import ConfigError, load_config
from score_lit.training.fit import fit
from score_lit.training.rundir import aside_path, claim_run_dir, free_path, lock_path, move_aside, release_all

ROOT = Path(__file__).resolve().parents[1]


def _runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def _cfg(tmp_path, *over):
    return load_config([], [f"out_dir={tmp_path / 'runs'}", "name=r", *over])


@pytest.fixture(autouse=True)
def _no_lock_left():
    yield
    release_all()


def test_an_empty_or_missing_folder_is_claimed_and_locked_with_the_pid(tmp_path):
    cfg = _cfg(tmp_path)
    assert claim_run_dir(cfg) is False and not cfg.run_dir.exists()  # nothing written but the lock
    assert lock_path(cfg.run_dir) == tmp_path / "runs" / ".r.lock"
    assert lock_path(cfg.run_dir).read_text() == str(os.getpid())
    release_all()
    cfg.run_dir.mkdir()
    assert claim_run_dir(cfg) is False  # an empty folder is no run


def test_a_second_claim_of_a_held_name_refuses_until_the_lock_is_released(tmp_path):
    claim_run_dir(_cfg(tmp_path))
    with pytest.raises(ConfigError) as e:  # flock: another open file of the same lock, as another process would hold
        claim_run_dir(_cfg(tmp_path, "overwrite=true"))
    assert str(e.value) == (
        f"another training (pid {os.getpid()}) is running as name=r in {tmp_path / 'runs' / 'r'}: "
        "wait for it to finish or pick another name=..."
    )
    release_all()
    assert claim_run_dir(_cfg(tmp_path)) is False


def test_a_folder_holding_a_run_refuses_unless_resumed_or_overwritten(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "checkpoints").mkdir(parents=True)
    for name in ("tracking.json", "policy.pt", "config.json", "curves.png"):
        (run_dir / name).write_text(name)
    with pytest.raises(ConfigError) as e:
        claim_run_dir(_cfg(tmp_path))
    assert str(e.value) == (
        f"{run_dir} already holds a run (checkpoints, config.json, curves.png, policy.pt, ...): "
        "continue it with resume=auto, pick another name=..., or pass overwrite=true to move it "
        "aside (nothing is deleted)"
    )  # the first 4 entries, sorted
    release_all()
    assert claim_run_dir(_cfg(tmp_path, "resume=auto")) is False  # continued: nothing to move
    release_all()
    assert claim_run_dir(_cfg(tmp_path, "overwrite=true")) is True  # the caller moves it aside
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoints",
        "config.json",
        "curves.png",
        "policy.pt",
        "tracking.json",
    ]  # claiming moved nothing


def test_move_aside_renames_to_a_free_old_name_and_deletes_nothing(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / "policy.pt").write_text("first")
    first = move_aside(run_dir)
    assert first.parent == tmp_path and first.name.startswith("r.old-") and not run_dir.exists()
    assert (first / "policy.pt").read_text() == "first"
    run_dir.mkdir()
    (run_dir / "policy.pt").write_text("second")
    taken = aside_path(run_dir)  # the same second: the name is taken, the next move gets "-1"
    taken.mkdir(exist_ok=True)
    second = move_aside(run_dir)
    assert second != first and (second / "policy.pt").read_text() == "second"
    assert aside_path(run_dir).name.startswith("r.old-") and not aside_path(run_dir).exists()
    assert free_path(tmp_path / "x") == tmp_path / "x"
    (tmp_path / "x").mkdir()
    (tmp_path / "x-1").mkdir()
    assert free_path(tmp_path / "x") == tmp_path / "x-2"


def test_a_training_claims_checks_its_trainer_then_moves_the_old_run_aside(tmp_path):
    """End to end: overwrite=true moves the old run aside only once the Trainer has accepted its arguments (a start
    that fails there moves, writes and opens nothing), then trains into a fresh folder."""
    run_dir = tmp_path / "runs" / "r"
    (run_dir / "checkpoints").mkdir(parents=True)  # an earlier run's folder (what a claim looks at: its entries)
    for name in ("config.json", "policy.pt", "tracking.json"):
        (run_dir / name).write_text(f"the old {name}")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    args = tiny_overrides(tmp_path, steps=1) + ["name=r", "overwrite=true"]

    with pytest.raises(ConfigError, match=r"the Trainer refuses these trainer.\* settings"):  # no GPU here
        fit(load_config([], args + ["trainer.accelerator=cuda"]))
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith("r.old-")]  # nothing moved
    assert not (tmp_path / "mlflow.db").exists()  # and no MLflow store opened

    res = fit(load_config([], args))
    (aside,) = [p for p in run_dir.parent.iterdir() if p.name.startswith("r.old-")]
    assert {p.name: p.read_bytes() for p in aside.iterdir() if p.is_file()} == before  # moved, not deleted
    assert res.run_dir == run_dir and (run_dir / "policy.pt").read_bytes() != before["policy.pt"]
    assert [r.info.run_id for r in _runs(tmp_path)] == [res.run_id]


def test_overwrite_and_resume_together_are_refused():
    with pytest.raises(ConfigError, match="overwrite=true and resume=auto contradict"):
        load_config([], ["overwrite=true", "resume=auto"])


@pytest.mark.integration
def test_a_second_concurrent_training_with_the_same_name_is_refused(tmp_path):
    # steps: far more than the first run can take before the SIGINT below reaches it (it ends the run)
    args = [sys.executable, "-m", "score_lit", "train", *tiny_overrides(tmp_path, steps=100_000), "name=same"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # Ctrl-C works even under `&`
    try:
        lock = lock_path(tmp_path / "runs" / "same")
        deadline = time.time() + 120
        while not (lock.is_file() and lock.read_text().strip() == str(first.pid)):  # the first run holds the name
            assert first.poll() is None and time.time() < deadline, (
                first.stderr.read() if first.poll() is not None else "timeout"
            )
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
    # what is not the user's business stays out of a training's output (srun hint, litlogger tip, deprecation)
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
