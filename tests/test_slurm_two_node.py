"""`python -m score_lit submit --nodes 2` on a real two-node SLURM cluster on this one machine.

One cluster for all these tests (tools/slurm/setup_slurm.sh with NODES=2: nodes slnode1 and slnode2, one
`slurmd -N <name>` each with its own port, both at 127.0.0.1), stopped by PID after the last of them. Every job is
submitted through the CLI, `python -m score_lit submit ... --nodes 2 --gpus-per-node 0 --tasks-per-node 1`: one CPU
rank per node, Lightning's SLURMEnvironment taking rank, node rank and MASTER_ADDR (the first node's name, which
resolves to 127.0.0.1) from srun's variables. Each rank prints where it ran (score_lit.training.resume.SlurmPlacement):
the tests read SLURM_NODEID and SLURMD_NODENAME from those lines of the job's log.

- DDP and DeepSpeed ZeRO-3 (CPUDeepSpeedStrategy, gloo): the policy of the two-node run equals, within 1e-6, the policy
  of the same config run as 2 tasks on one node of the same cluster.
- SIGUSR1 mid-run (scancel --signal=USR1, which reaches the srun tasks on both nodes): checkpoint, requeue, both ranks
  resume on their nodes from the step of the checkpoint, finish; one MLflow run, every step logged once.

How this differs from a real cluster: both "nodes" share one kernel, one filesystem and 2 cores (a real cluster shares
only the filesystem the run folder is on), rendezvous goes over the loopback, and gloo replaces NCCL.
`make test-slurm` runs these with the one-node tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import assert_one_run_each_step_once, local_slurm, slurm_job, tiny_run

from score_lit.training.checkpoint import load_policy

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.slurm]
NODES = ["slnode1", "slnode2"]  # setup_slurm.sh's names: NODE_PREFIX (slnode) + 1..N
PLACED = re.compile(
    r"score_lit: rank (\d+)/(\d+) on SLURM node (\d+) \((\S+)\), job (\d+) restart (\d+): training from step (\d+)"
    r"(?: \(resumed from (\S+)\))?"
)
FAILED = ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE")


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """One two-node cluster for every test here (only this module uses it: it stops as soon as they are done, not at
    the end of a `make test` session); yields its SLURM_CONF."""
    base = tmp_path_factory.mktemp("slurm-two-node")
    with local_slurm(base, nodes=2) as conf:
        yield conf


@pytest.fixture
def cluster(two_nodes, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", str(two_nodes))
    for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        monkeypatch.delenv(k, raising=False)  # whatever ran pytest: the job's ranks take these from SLURM
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # sbatch exports the submitting environment to the job
    return two_nodes.parents[1]


def run_config(tmp_path: Path, name: str, steps: int, val_every: int, extra: list[str] = ()) -> list[str]:
    return tiny_run(
        tmp_path,
        name,
        steps,
        data={"val_samples": 2, "train_samples": 12},
        val_every=val_every,
        extra=["mllm.path=null", *extra],
    )


def submit(tmp_path: Path, config: list[str], nodes: int, tasks_per_node: int) -> tuple[str, Path]:
    """`python -m score_lit submit` (the CLI, as a user types it); returns the job id and its log."""
    flags = ["--nodes", str(nodes), "--gpus-per-node", "0", "--tasks-per-node", str(tasks_per_node)]
    flags += ["--time", "00:15:00", "--signal-seconds", "60"]
    # The job runs `python -m score_lit` in tmp_path (--chdir): it must import this tree's package, whatever the
    # venv's editable install points at (another checkout) or a relative PYTHONPATH says.
    path = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])
    r = subprocess.run(
        [sys.executable, "-m", "score_lit", "submit", *config, *flags],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    m = re.search(r"submitted batch job (\d+): (\S+) on (\d) node\(s\), log (\S+)", r.stdout)
    assert m and m.group(3) == str(nodes), r.stdout
    return m.group(1), Path(m.group(4))


def wait(cluster: Path, job: str, log: Path, what: str, ready, timeout: float) -> None:
    end = time.monotonic() + timeout
    while not ready():
        if slurm_job(job).get("JobState") in FAILED or time.monotonic() > end:
            text = log.read_text().replace("\r", "\n")[-6000:] if log.is_file() else "(no job output)"
            ctld = (cluster / "log" / "slurmctld.log").read_text()[-2000:]
            pytest.fail(
                f"waiting for {what} ({timeout:.0f} s): job {job} {slurm_job(job).get('JobState')}\n--- {log}\n{text}"
                f"\n--- slurmctld.log\n{ctld}"
            )
        time.sleep(0.5)


def placements(log: Path) -> list[dict]:
    """Every rank's line, every start: rank, world, node id, node name, restart, first step, checkpoint."""
    keys = ("rank", "world", "node_id", "node", "job", "restart", "step", "ckpt")
    return [
        {k: v if k in ("node", "job", "ckpt") else int(v) for k, v in zip(keys, m.groups())}
        for m in PLACED.finditer(log.read_text())
    ]


def policy_of(log: Path) -> dict[str, torch.Tensor]:
    policy, _ = load_policy(log.parent / "policy.pt")
    return policy.state_dict()


@pytest.mark.parametrize("strategy", ["ddp", "deepspeed_zero3"])
def test_two_nodes_train_the_policy_of_two_ranks_on_one_node(cluster, tmp_path, strategy):
    steps = 4
    extra = [f"trainer.strategy={strategy}"]
    if strategy == "deepspeed_zero3":
        extra.append("trainer.zero3_persistence_threshold=0")  # partition every frozen weight (test_distributed.py)
    # Both jobs queue at once; SLURM runs the one-node job when a node has its 2 CPUs free.
    two, two_log = submit(tmp_path, run_config(tmp_path, "two-nodes", steps, steps, extra), nodes=2, tasks_per_node=1)
    one, one_log = submit(tmp_path, run_config(tmp_path, "one-node", steps, steps, extra), nodes=1, tasks_per_node=2)
    for job, log in ((two, two_log), (one, one_log)):
        wait(cluster, job, log, "the job to finish", lambda job=job: slurm_job(job).get("JobState") == "COMPLETED", 300)

    placed = sorted(placements(two_log), key=lambda p: p["rank"])
    assert [(p["rank"], p["world"], p["node_id"], p["node"], p["step"]) for p in placed] == [
        (0, 2, 0, "slnode1", 0),
        (1, 2, 1, "slnode2", 0),
    ], two_log.read_text()[-3000:]
    on_one = placements(one_log)
    assert sorted(p["rank"] for p in on_one) == [0, 1] and len({(p["node_id"], p["node"]) for p in on_one}) == 1
    assert slurm_job(two)["NodeList"] == "slnode[1-2]" and slurm_job(one)["NumNodes"] == "1"

    a, b = policy_of(two_log), policy_of(one_log)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    ckpt = two_log.parent / "checkpoints" / "last.ckpt"  # ZeRO-3: a folder of per-rank shards
    assert ckpt.is_dir() if strategy == "deepspeed_zero3" else ckpt.is_file()


def test_a_signalled_two_node_job_requeues_and_both_nodes_resume(cluster, tmp_path):
    steps = 30
    job, log = submit(tmp_path, run_config(tmp_path, "requeue", steps, 5, ["trainer.strategy=ddp"]), 2, 1)
    run_dir = log.parent
    # Both ranks handle USR1 once training runs; the first periodic checkpoint (step 5) comes after that.
    wait(cluster, job, log, "the first checkpoint", lambda: (run_dir / "checkpoints" / "last.ckpt").is_file(), 240)
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=30)  # every srun task, on both nodes
    wait(cluster, job, log, "the requeue", lambda: slurm_job(job).get("Restarts") == "1", 120)
    wait(cluster, job, log, "the job to finish", lambda: slurm_job(job).get("JobState") == "COMPLETED", 240)

    text = log.read_text().replace("\r", "\n")
    saved = re.search(r"score_lit: signal 10 at step (\d+): saved \S*hpc_ckpt_1\.ckpt; requeueing job " + job, text)
    assert saved, text[-4000:]
    hpc = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    assert 0 < hpc["global_step"] == int(saved.group(1)) < steps
    placed = {(p["restart"], p["rank"]): p for p in placements(log)}
    assert sorted(placed) == [(0, 0), (0, 1), (1, 0), (1, 1)], text[-4000:]
    for rank, node in enumerate(NODES):
        first, again = placed[0, rank], placed[1, rank]
        assert (first["node_id"], first["node"], first["step"], first["ckpt"]) == (rank, node, 0, None)
        assert (again["node_id"], again["node"]) == (rank, node)
        # Each rank, on its own node, restored the step of the signal's checkpoint (hpc_ckpt_1, or last.ckpt when
        # ModelCheckpoint saved that same step: resume=auto takes either, the same state).
        assert again["step"] == hpc["global_step"], again
        assert re.search(r"(hpc_ckpt_1|checkpoints/last)\.ckpt$", again["ckpt"]), again
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == steps

    assert_one_run_each_step_once(f"sqlite:///{tmp_path / 'mlflow.db'}", steps)
