"""Resume after a hard kill: `kill -9` a real training run mid-training, run the same command with
resume=auto, and get the weights an uninterrupted run gets, in the same MLflow run (make test-resume)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from helpers import tiny_run
from mlflow.tracking import MlflowClient

from score_lit.training.checkpoint import load_policy
from score_lit.training.fit import RunLogger
from score_lit.training.resume import AtomicCheckpointIO, TrackingIdentity

STEPS = 24


def command(tmp_path, name, extra=()):
    over = tiny_run(
        tmp_path,
        name,
        {"stage1": 10, "stage2": STEPS - 10},
        data={"val_samples": 2, "train_samples": 10},
        val_every=3,
        extra=["mllm.path=null"],
    )
    return [sys.executable, "-m", "score_lit", "train", *over, *extra]


def run(cmd, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        cmd, cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.resume
def test_kill_9_mid_training_then_resume_auto_matches_an_uninterrupted_run(tmp_path):
    # the uninterrupted run and the one to kill start together (two processes on 2 cores: less wall time)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = subprocess.Popen(
        command(tmp_path, "straight"),
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    # the same run, killed with SIGKILL once its checkpoint is past step 12 (inside stage 2), mid-step
    ckpt = tmp_path / "runs" / "killed" / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        command(tmp_path, "killed"),
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and torch.load(ckpt, weights_only=False)["global_step"] >= 12:
            time.sleep(0.3)  # somewhere inside the next steps
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = torch.load(ckpt, weights_only=False)["global_step"]
    assert 12 <= killed_at < STEPS
    run_id = json.loads((tmp_path / "runs" / "killed" / "tracking.json").read_text())["run_id"]
    straight_err = straight.communicate(timeout=300)[1]
    assert straight.returncode == 0, straight_err[-3000:]

    resumed = run(command(tmp_path, "killed", ["resume=auto"]), tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Restored all states from the checkpoint at {ckpt}" in resumed.stderr + resumed.stdout

    a, _ = load_policy(tmp_path / "runs" / "straight" / "policy.pt")
    b, meta = load_policy(tmp_path / "runs" / "killed" / "policy.pt")
    assert meta["meta"]["global_step"] == STEPS and meta["meta"]["phase"] == "stage2"
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=1e-6)

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("score_lit").experiment_id], "attributes.run_name = 'killed'"
    )
    assert [r.info.run_id for r in runs] == [run_id]  # one run across the kill
    steps = {m.step for m in client.get_metric_history(run_id, "loss")}
    assert steps == set(range(STEPS))  # continuous (steps after the checkpoint may be logged twice, with equal data)
    assert runs[0].info.status == "FINISHED"


def test_every_metric_logged_before_a_checkpoint_is_in_the_store_when_the_checkpoint_is_written(tmp_path):
    # MLflow's async queue (the default for a local store) still holds these when the checkpoint hook runs; a
    # kill -9 after the write lost them, and resume=auto starts after their steps (the run's history had a hole)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logger = RunLogger(experiment_name="score_lit", tracking_uri=uri, synchronous=False)
    for step in range(120):
        logger.log_metrics({"loss": float(step), "reward": -float(step)}, step)
    cfg = SimpleNamespace(tracking_uri=uri, run_dir=tmp_path)
    TrackingIdentity(cfg, logger.run_id, "score_lit").on_save_checkpoint(SimpleNamespace(loggers=[logger]), None, {})
    client = MlflowClient(uri)  # another client, as the resumed process reads it
    for key in ("loss", "reward"):
        assert {m.step for m in client.get_metric_history(logger.run_id, key)} == set(range(120))


def test_a_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"global_step": 1}, path)

    def dies_halfway(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what a kill looks like from inside the write

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"global_step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind
