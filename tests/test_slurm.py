"""`python -m score_lit submit`: the rendered sbatch script, every bad input, and a real SLURM cluster.

The fast tests render scripts and check bad input without a cluster. The `slurm` tests start a real
one-node SLURM cluster on localhost (tools/slurm/setup_slurm.sh; slurm-wlm + munge, installed with apt-get
if missing) under tmp_path, each with its own state (job ids restart at 1), and stop its daemons by their
PIDs afterwards, also on failure. The integration test submits a 2-rank CPU job on the tiny model through
`slurm.main`, sends SIGUSR1 mid-run and checks the requeue, the resume from hpc_ckpt, the finish, and one
MLflow run with continuous steps.  `make test-slurm` runs only these.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_one_run_each_step_once, local_slurm, slurm_job, tiny_run

from score_lit.config import ConfigError, load_config
from score_lit.training import slurm, slurm_cluster
from score_lit.training.slurm_cluster import Partition, SlurmError


def tiny(tmp_path, steps=40, name="sj"):
    return tiny_run(
        tmp_path, name, steps, data={"val_samples": 2, "train_samples": 6}, val_every=5, extra=["mllm.path=null"]
    )


CPU2 = ["--gpus-per-node", "0", "--tasks-per-node", "2", "--time", "00:10:00", "--signal-seconds", "60"]


def no_slurm_on_path(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))


# ------------------------------------------------------------------------------------------------
# Rendering and bad input, no cluster


def test_rendered_script_for_a_gpu_job(tmp_path, monkeypatch, capsys):
    no_slurm_on_path(monkeypatch, tmp_path)
    argv = tiny(tmp_path) + [
        "--nodes",
        "2",
        "--gpus-per-node",
        "8",
        "--time",
        "24:00:00",
        "--partition",
        "gpu",
        "--account",
        "proj",
        "--cpus-per-task",
        "6",
        "--mem",
        "200G",
        "--dry-run",
    ]
    assert slurm.main(argv) == 0
    out, err = capsys.readouterr()
    run_dir = tmp_path / "runs" / "sj"
    lines = out.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert [line for line in lines if line.startswith("#SBATCH")] == [
        "#SBATCH --job-name=sj",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=8",  # srun: one task per GPU
        "#SBATCH --gpus-per-node=8",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --mem=200G",
        "#SBATCH --time=24:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
        f"#SBATCH --output={run_dir}/slurm-%j.out",
        f"#SBATCH --error={run_dir}/slurm-%j.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --signal=USR1@300",
        "#SBATCH --requeue",
        f"#SBATCH --chdir={Path.cwd()}",
    ]
    assert (
        lines[-1] == f"srun --kill-on-bad-exit=1 {sys.executable} -m score_lit train {run_dir}/config.yaml resume=auto"
    )
    assert "not checked against a cluster (SLURM is not installed" in err and "nothing written" in err
    assert not (tmp_path / "runs").exists()  # --dry-run writes nothing


def test_the_snapshot_holds_the_resources_and_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = slurm.parse_args(["name=x", "out_dir=rel", "--nodes", "2", "--gpus-per-node", "4", "--time", "1:00:00"])
    cfg = slurm.resolve(ns)
    assert (cfg.trainer.num_nodes, cfg.trainer.devices, cfg.trainer.accelerator) == (2, 4, "gpu")
    assert cfg.run_dir == tmp_path / "rel" / "x" and cfg.resume == "auto"
    cpu = slurm.resolve(slurm.parse_args(["--gpus-per-node", "0", "--tasks-per-node", "3", "--time", "60"]))
    assert (cpu.trainer.num_nodes, cpu.trainer.devices, cpu.trainer.accelerator) == (1, 3, "cpu")
    (tmp_path / "c.yaml").write_text(slurm.snapshot_yaml(cfg))  # YAML that loads back to the same config
    assert load_config([tmp_path / "c.yaml"], []) == cfg


def test_time_formats():
    assert [slurm_cluster.parse_time(t) for t in ("90", "90:30", "24:00:00", "2-00", "1-02:03", "1-00:00:05")] == [
        5400,
        5430,
        86400,
        172800,
        93780,
        86405,
    ]
    with pytest.raises(SlurmError, match="is not a SLURM time"):
        slurm_cluster.parse_time("1h")


def test_sinfo_lines_become_a_partition():
    assert slurm_cluster.parse_sinfo(
        "gpu*|4|64|gpu:a100:8(S:0-1)|2-00:00:00\ngpu|2|32|gpu:4|1-00:00:00\n", "gpu"
    ) == Partition("gpu", nodes=6, cpus=32, gpus=8, max_seconds=172800)
    assert slurm_cluster.parse_sinfo("debug*|1|2|(null)|infinite\n", "debug") == Partition("debug", 1, 2, 0, None)
    assert slurm_cluster.parse_sinfo("", "nope") is None


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--gpus-per-node", "8"], r"--gpus-per-node 8: partition 'p' has 4 GPUs per node$"),
        (
            ["--gpus-per-node", "4", "--cpus-per-task", "4"],
            r"4 tasks x 4 CPUs per task = 16 CPUs per node: partition 'p' has 8",
        ),
        (["--gpus-per-node", "0", "--tasks-per-node", "9"], r"9 tasks x 1 CPUs per task = 9 CPUs per node"),
        (["--gpus-per-node", "1", "--nodes", "3"], r"--nodes 3: partition 'p' has 2 nodes"),
        (["--gpus-per-node", "1", "--time", "3-00:00:00"], r"--time 3-00:00:00: partition 'p' allows at most 48:00:00"),
    ],
)
def test_impossible_resources_are_one_clear_line(flags, message):
    ns = slurm.parse_args(["--time", "1:00:00", *flags])
    with pytest.raises(SlurmError, match=message):
        slurm.check_partition(
            ns, Partition("p", nodes=2, cpus=8, gpus=4, max_seconds=2 * 86400), slurm_cluster.parse_time(ns.time)
        )


@pytest.mark.parametrize(
    "flags, message",
    [
        (
            ["--time", "00:05:00"],
            r"--time 00:05:00 is shorter than one checkpoint interval: SIGUSR1 .* more than 00:07:00",
        ),
        (
            ["--time", "00:10:00", "--seconds-per-step", "40"],
            r"shorter than one checkpoint interval: val.every_n_steps=5 steps x --seconds-per-step 40 = 200 s, but only 180 s",
        ),
        (["--time", "00:10:00", "--tasks-per-node", "2", "--gpus-per-node", "4"], r"a GPU job runs one task per GPU"),
        (["--time", "1h"], r"--time '1h' is not a SLURM time"),
        (
            ["--time", "00:10:00", "resume=auto", "stage1.steps=3", "rl.group_size=0"],
            r"rl.group_size=0",
        ),  # config errors too
    ],
)
def test_bad_flags_stop_before_anything_is_written(tmp_path, flags, message):
    argv = tiny(tmp_path) + ["--gpus-per-node", "0", "--signal-seconds", "300", "--startup-seconds", "120", *flags]
    with pytest.raises(Exception, match=message) as e:
        slurm.main(argv)
    assert isinstance(e.value, ConfigError) and "\n" not in str(e.value)
    assert not (tmp_path / "runs").exists()


def test_missing_slurm_is_one_clear_line(tmp_path, monkeypatch):
    no_slurm_on_path(monkeypatch, tmp_path)
    with pytest.raises(SlurmError, match=r"^SLURM is not installed or not on PATH: sbatch, sinfo not found"):
        slurm.main(tiny(tmp_path) + CPU2)
    assert not (tmp_path / "runs").exists()


def test_a_run_dir_of_another_config_is_refused(tmp_path, monkeypatch, capsys):
    no_slurm_on_path(monkeypatch, tmp_path)
    first = slurm.resolve(slurm.parse_args(tiny(tmp_path, steps=10) + CPU2))
    first.run_dir.mkdir(parents=True)
    (first.run_dir / "config.yaml").write_text(before := slurm.snapshot_yaml(first))
    with pytest.raises(
        SlurmError, match=r"runs/sj holds a run of another config \(stage1.steps: 10 -> 20\).*change name= or remove"
    ):
        slurm.main(tiny(tmp_path, steps=20) + CPU2)
    with pytest.raises(SlurmError, match=r"trainer.devices: 2 -> 1"):  # other resources: another world size
        slurm.main(tiny(tmp_path, steps=10) + CPU2[:2] + CPU2[4:])
    assert (first.run_dir / "config.yaml").read_text() == before and sorted(os.listdir(first.run_dir)) == [
        "config.yaml"
    ]
    assert (
        slurm.main(tiny(tmp_path, steps=10) + CPU2 + ["--dry-run"]) == 0
    )  # the same config: resubmitting continues it
    assert "srun" in capsys.readouterr().out


def test_cli_submit_bad_input_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # no SLURM
    cmd = [sys.executable, "-m", "score_lit", "submit", *tiny(tmp_path), *CPU2]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "SLURM is not installed or not on PATH" in r.stderr


# ------------------------------------------------------------------------------------------------
# A real one-node cluster on localhost


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """A one-node SLURM cluster in tmp_path/slurm (helpers.local_slurm); yields its folder with SLURM_CONF exported;
    its jobs cancelled and daemons stopped by PID afterwards."""
    with local_slurm(tmp_path / "slurm", nodes=1) as conf:
        monkeypatch.setenv("SLURM_CONF", str(conf))
        yield tmp_path / "slurm"


@pytest.mark.slow
@pytest.mark.slurm
def test_impossible_resources_on_a_real_cluster(cluster, tmp_path):
    cpus = int(
        subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=30)
        .stdout.split()[0]
        .rstrip("+")
    )
    base = tiny(tmp_path) + ["--time", "00:10:00", "--signal-seconds", "60"]
    for flags, message in [
        (
            ["--gpus-per-node", "1"],
            r"^--gpus-per-node 1: partition 'debug' has 0 GPUs per node; for a CPU job pass --gpus-per-node 0",
        ),
        (
            ["--gpus-per-node", "0", "--tasks-per-node", str(cpus + 1)],
            rf"CPUs per node: partition 'debug' has {cpus} CPUs per node",
        ),
        (
            ["--gpus-per-node", "0", "--partition", "nope"],
            r"^partition 'nope' does not exist on this cluster; available: \['debug'\]",
        ),
    ]:
        with pytest.raises(SlurmError, match=message):
            slurm.main(base + flags)
    assert not (tmp_path / "runs").exists()
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=30).stdout.strip() == ""


@pytest.mark.slow
@pytest.mark.slurm
def test_a_signalled_job_checkpoints_requeues_resumes_and_finishes_in_one_mlflow_run(cluster, tmp_path, capsys):
    steps = 40
    assert slurm.main(tiny(tmp_path, steps) + CPU2) == 0
    job = re.search(r"submitted batch job (\d+)", capsys.readouterr().out).group(1)
    run_dir = tmp_path / "runs" / "sj"
    log = run_dir / f"slurm-{job}.out"
    assert {"config.yaml", "submit.sh", "git.txt"} <= set(os.listdir(run_dir))
    assert (run_dir / "git.txt").read_text().startswith("commit: ")

    def wait(what: str, ready, timeout: float) -> None:
        end = time.monotonic() + timeout
        while not ready():
            state = slurm_job(job).get("JobState")
            if state in ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"):
                break
            if time.monotonic() > end:
                break
            time.sleep(0.5)
        else:
            return
        text = log.read_text().replace("\r", "\n")[-6000:] if log.is_file() else "(no job output)"
        ctld = (cluster / "log" / "slurmctld.log").read_text()[-2000:]
        pytest.fail(
            f"waiting for {what} ({timeout:.0f} s): job {job} {slurm_job(job).get('JobState')}\n--- {log}\n{text}\n--- slurmctld.log\n{ctld}"
        )

    # The signal handler is installed once training runs: the first periodic checkpoint (step 5) says so.
    wait("the first checkpoint", lambda: (run_dir / "checkpoints" / "last.ckpt").is_file(), 150)
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=30)
    wait("the requeue", lambda: slurm_job(job).get("Restarts") == "1", 90)
    wait("the job to finish", lambda: slurm_job(job).get("JobState") == "COMPLETED", 180)

    text = log.read_text().replace("\r", "\n")
    assert "restart 0" in text and "restart 1" in text  # one log, appended to across the requeue
    # From hpc_ckpt_1, or from checkpoints/last.ckpt when ModelCheckpoint saved the same step just after it
    # (a signal at a multiple of val.every_n_steps; resume=auto takes the newer file, the same state).
    assert re.search(r"Restored all states from the checkpoint at \S*(hpc_ckpt_1|checkpoints/last)\.ckpt", text), text[
        -4000:
    ]
    assert re.search(r"score_lit: signal 10 at step \d+: saved \S*hpc_ckpt_1\.ckpt; requeueing job " + job, text)
    assert "policy checkpoint" in text

    import torch

    hpc = torch.load(run_dir / "hpc_ckpt_1.ckpt", map_location="cpu", weights_only=False)
    assert 0 < hpc["global_step"] < steps  # taken mid-run
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == steps
    # Continuous: every step once. No step runs after hpc_ckpt (resume.requeue_on_signal stops at it), so the
    # resumed job logs the rest without overlap.
    assert_one_run_each_step_once(f"sqlite:///{tmp_path / 'mlflow.db'}", steps)
