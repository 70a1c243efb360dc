"""Submit a training run to SLURM: render the sbatch script from the config, snapshot it next to the run, sbatch it.

    python -m score_lit submit conf/stage1.yaml stage1.steps=5000 --nodes 2 --gpus-per-node 8 \\
        --time 24:00:00 --partition gpu [--account A] [--dry-run]
    python -m score_lit submit conf/stage1.yaml --gpus-per-node 0 --tasks-per-node 2 --time 1:00:00  # CPU ranks

What it writes, before `sbatch` (nothing with --dry-run, which prints the script instead):

    <run_dir>/config.yaml   the RESOLVED config (dataclass defaults <- YAML <- key=value <- the flags below)
    <run_dir>/submit.sh     the sbatch script; `sbatch <run_dir>/submit.sh` resubmits it as is
    <run_dir>/git.txt       the commit and whether the checkout had uncommitted changes
    <run_dir>/slurm-%j.out  the job's stdout + stderr, appended to across requeues (--open-mode=append)

The script runs `srun python -m score_lit train <run_dir>/config.yaml resume=auto`: srun starts one task per
GPU (or per CPU rank), and Lightning's SLURM environment reads the ranks from srun's variables. The flags
set trainer.num_nodes / trainer.devices / trainer.accelerator in the snapshot, so the config says what ran.

Preemption and time limits: `#SBATCH --signal=USR1@S` (S = --signal-seconds, default 300) makes SLURM send
SIGUSR1 to the srun tasks S seconds before the limit (SLURM's timer fires within about a minute of that);
train.fit's `requeue_on_signal` callback (score_lit.training.resume) then writes <run_dir>/hpc_ckpt_<n>.ckpt at the next step
boundary, runs `scontrol requeue` and stops. The requeued
job starts the same script again; `resume=auto` continues from the newest checkpoint, in the same curriculum
phase and step, logging into the same MLflow run (its id is kept in the checkpoint).

Bad input stops with one line (exit 2 through the CLI) before anything is written or submitted: SLURM missing;
a partition that does not exist; more nodes, GPUs per node or CPUs per node than the partition has; a
--time above the partition's limit; a --time too short to train (below); an existing run folder whose
config differs (its checkpoints would be resumed under another config).

"A time limit shorter than one checkpoint interval": the time a step takes is unknown before the run, so
the check is honest about what it can know. Every job must outlive its own start-up and the USR1 warning:
--time must exceed --signal-seconds + --startup-seconds (default 120: imports, model load, process group),
or the job would be signalled before it trains a step and requeue forever. With --seconds-per-step (e.g.
read from an earlier run's time/* metrics) it also requires the rest of --time to hold one
val.every_n_steps interval, the periodic checkpoint that survives a crash without a signal.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from score_lit.config import PROJECT_ROOT, Config, check_files, flatten, load_config, split_args, to_dict
from score_lit.training.slurm_cluster import (
    Partition,
    SlurmError,
    default_partition,
    first_line,
    format_time,
    parse_time,
    query_partition,
    require_slurm,
    run_slurm,
)

# ------------------------------------------------------------------------------------------------
# Arguments and their checks


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="score_lit submit",
        description="render an sbatch script from a config, snapshot the resolved config + git commit next to the run, "
        "and submit it; the job checkpoints on SIGUSR1 and requeues itself",
    )
    p.add_argument("config", nargs="*", help="config files (.yaml) and key=value overrides, as for `train`")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument(
        "--gpus-per-node", type=int, required=True, help="one task per GPU; 0 = a CPU job (see --tasks-per-node)"
    )
    p.add_argument(
        "--tasks-per-node", type=int, default=None, help="CPU ranks per node, with --gpus-per-node 0 only (default 1)"
    )
    p.add_argument("--time", required=True, help="the job's time limit, as SLURM takes it: HH:MM:SS, MM, D-HH:MM:SS")
    p.add_argument("--partition", default=None, help="default: the cluster's default partition")
    p.add_argument("--account", default=None)
    p.add_argument("--cpus-per-task", type=int, default=None, help="CPUs per task (default: SLURM's, usually 1)")
    p.add_argument("--mem", default=None, help="memory per node, as SLURM takes it (e.g. 200G)")
    p.add_argument(
        "--signal-seconds",
        type=int,
        default=300,
        help="SIGUSR1 this many seconds before the limit: checkpoint + requeue",
    )
    p.add_argument(
        "--startup-seconds", type=int, default=120, help="time a job needs before its first step (the --time check)"
    )
    p.add_argument(
        "--seconds-per-step", type=float, default=None, help="if known: --time must also hold val.every_n_steps steps"
    )
    p.add_argument("--dry-run", action="store_true", help="print the script; write and submit nothing")
    return p.parse_intermixed_args(argv)


def check_flags(ns: argparse.Namespace, cfg: Config) -> int:
    """Checks that need no cluster; returns the time limit in seconds."""
    for flag in ("nodes", "gpus_per_node", "tasks_per_node", "cpus_per_task", "signal_seconds", "startup_seconds"):
        value, least = getattr(ns, flag), 0 if flag in ("gpus_per_node", "startup_seconds") else 1
        if value is not None and value < least:
            raise SlurmError(f"--{flag.replace('_', '-')} {value} must be >= {least}")
    if ns.gpus_per_node > 0 and ns.tasks_per_node not in (None, ns.gpus_per_node):
        raise SlurmError(
            f"--tasks-per-node {ns.tasks_per_node} with --gpus-per-node {ns.gpus_per_node}: a GPU job runs one task per GPU; "
            f"drop --tasks-per-node (it is for CPU jobs, --gpus-per-node 0)"
        )
    if ns.signal_seconds > 65535:
        raise SlurmError(f"--signal-seconds {ns.signal_seconds}: SLURM takes at most 65535")
    seconds = parse_time(ns.time)
    need = ns.signal_seconds + ns.startup_seconds
    if seconds <= need:
        raise SlurmError(
            f"--time {ns.time} is shorter than one checkpoint interval: SIGUSR1 (checkpoint + requeue) comes --signal-seconds "
            f"{ns.signal_seconds} s before the limit and start-up takes about --startup-seconds {ns.startup_seconds} s, so the "
            f"job would requeue before training a step; ask for more than {format_time(need)} or lower --signal-seconds"
        )
    if ns.seconds_per_step is not None:
        interval = cfg.val.every_n_steps * ns.seconds_per_step
        if seconds - need < interval:
            raise SlurmError(
                f"--time {ns.time} is shorter than one checkpoint interval: val.every_n_steps={cfg.val.every_n_steps} steps x "
                f"--seconds-per-step {ns.seconds_per_step:g} = {interval:.0f} s, but only {seconds - need} s are left after "
                f"start-up and the USR1 warning; ask for at least {format_time(int(need + interval) + 1)} or lower val.every_n_steps"
            )
    return seconds


def check_partition(ns: argparse.Namespace, part: Partition, seconds: int) -> None:
    if ns.nodes > part.nodes:
        raise SlurmError(f"--nodes {ns.nodes}: partition {part.name!r} has {part.nodes} node{'s' * (part.nodes != 1)}")
    if ns.gpus_per_node > part.gpus:
        hint = "; for a CPU job pass --gpus-per-node 0 --tasks-per-node T" if part.gpus == 0 else ""
        raise SlurmError(
            f"--gpus-per-node {ns.gpus_per_node}: partition {part.name!r} has {part.gpus} GPUs per node{hint}"
        )
    tasks = ns.gpus_per_node or ns.tasks_per_node or 1
    cpus = tasks * (ns.cpus_per_task or 1)
    if cpus > part.cpus:
        raise SlurmError(
            f"{tasks} tasks x {ns.cpus_per_task or 1} CPUs per task = {cpus} CPUs per node: partition {part.name!r} has "
            f"{part.cpus} CPUs per node; lower --tasks-per-node / --cpus-per-task"
        )
    if part.max_seconds is not None and seconds > part.max_seconds:
        raise SlurmError(f"--time {ns.time}: partition {part.name!r} allows at most {format_time(part.max_seconds)}")


def resolve(ns: argparse.Namespace) -> Config:
    """The config the job runs: files + overrides + the resource flags, with an absolute out_dir."""

    files, overrides = split_args(ns.config)
    cfg = load_config(files, overrides)  # a bad config fails here, before any flag or cluster check
    if cfg.resume not in (None, "auto"):
        raise SlurmError(
            f"resume={cfg.resume!r}: a submitted job always continues its own run (resume=auto, from {cfg.run_dir}); "
            f"to start from another run's weights use init_policy=<its policy.pt>"
        )
    cpu = ns.gpus_per_node == 0
    flags = [
        f"trainer.num_nodes={ns.nodes}",
        f"trainer.devices={ns.tasks_per_node or 1 if cpu else ns.gpus_per_node}",
        f"trainer.accelerator={'cpu' if cpu else 'gpu'}",
        f"out_dir={Path(cfg.out_dir).resolve()}",
        f"tracking.tracking_uri={cfg.tracking_uri}",
        "resume=auto",
    ]
    final = load_config(files, overrides + flags)
    check_files(final)  # the job would fail at its start, after hours in the queue
    return final


def snapshot_yaml(cfg: Config) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))


def _comparable(d: dict) -> dict:
    """A config as flat keys, with what `train` and `submit` write differently made equal: resume (submit forces
    auto), a relative out_dir, the default tracking URI."""
    flat = {k: v for k, v in flatten(d).items() if k != "resume"}
    if flat.get("out_dir") is not None:
        flat["out_dir"] = str(Path(flat["out_dir"]).resolve())
    if "tracking.tracking_uri" in flat and flat["tracking.tracking_uri"] is None:
        flat["tracking.tracking_uri"] = Config().tracking_uri
    return flat


def check_run_dir(cfg: Config) -> None:
    """An existing run folder must hold this very config: its checkpoints are what resume=auto loads."""
    from omegaconf import OmegaConf

    old_path = next((p for p in (cfg.run_dir / "config.yaml", cfg.run_dir / "config.json") if p.is_file()), None)
    if old_path is None:
        return
    try:
        old = _comparable(OmegaConf.to_container(OmegaConf.load(old_path)))
    except Exception as e:
        raise SlurmError(
            f"{old_path} is not readable ({first_line(str(e))}): remove {cfg.run_dir} or change name="
        ) from None
    new = _comparable(to_dict(cfg))
    diff = sorted(k for k in set(old) & set(new) if old[k] != new[k])  # a key only one side has: the schema grew
    if diff:
        shown = ", ".join(f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}" for k in diff[:3])
        more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
        raise SlurmError(
            f"{cfg.run_dir} holds a run of another config ({shown}{more}): its checkpoints would be resumed under this one; "
            f"change name= or remove {cfg.run_dir}"
        )


# ------------------------------------------------------------------------------------------------
# The script


def render(
    cfg: Config, ns: argparse.Namespace, partition: str | None, python: str = sys.executable, cwd: Path | None = None
) -> str:
    run_dir = cfg.run_dir
    tasks = ns.gpus_per_node or ns.tasks_per_node or 1
    cmd = [
        "srun",
        "--kill-on-bad-exit=1",
        python,
        "-m",
        "score_lit",
        "train",
        str(run_dir / "config.yaml"),
        "resume=auto",
    ]
    lines = [
        "#!/bin/bash",
        f"# Rendered by `python -m score_lit submit` ({datetime.now().isoformat(timespec='seconds')}); resubmit: sbatch {run_dir}/submit.sh",
        f"#SBATCH --job-name={cfg.name}",
        f"#SBATCH --nodes={ns.nodes}",
        f"#SBATCH --ntasks-per-node={tasks}",
        *([f"#SBATCH --gpus-per-node={ns.gpus_per_node}"] if ns.gpus_per_node else []),
        *([f"#SBATCH --cpus-per-task={ns.cpus_per_task}"] if ns.cpus_per_task else []),
        *([f"#SBATCH --mem={ns.mem}"] if ns.mem else []),
        f"#SBATCH --time={ns.time}",
        *([f"#SBATCH --partition={partition}"] if partition else []),
        *([f"#SBATCH --account={ns.account}"] if ns.account else []),
        f"#SBATCH --output={run_dir}/slurm-%j.out",
        f"#SBATCH --error={run_dir}/slurm-%j.out",
        "#SBATCH --open-mode=append",  # a requeued job appends to the first run's log instead of truncating it
        f"#SBATCH --signal=USR1@{ns.signal_seconds}",  # to the srun tasks: Lightning checkpoints and requeues
        "#SBATCH --requeue",
        f"#SBATCH --chdir={cwd or Path.cwd()}",
        "",
        "set -euo pipefail",
        "export PYTHONUNBUFFERED=1",
        'echo "score_lit: job $SLURM_JOB_ID restart ${SLURM_RESTART_COUNT:-0} on $(hostname) at $(date -Is)"',
        shlex.join(cmd),
        "",
    ]
    return "\n".join(lines)


def git_info(root: Path = PROJECT_ROOT) -> str:
    """The commit and a dirty flag, read-only (no index refresh, no lock)."""
    git = ["git", "--no-optional-locks", "-C", str(root)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=20)
        status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"commit: unknown ({e})\n"
    if head.returncode != 0:
        return f"commit: unknown ({first_line(head.stderr)})\n"
    changed = status.stdout.splitlines()
    dirty = f"yes, {len(changed)} changed paths:\n" + "\n".join(changed) if changed else "no"
    return f"commit: {head.stdout.strip()}\nrepository: {root}\ndirty: {dirty}\n"


def prepare_tracking(cfg: Config) -> None:
    """Create a sqlite MLflow store's tables once, here: every rank's MLFlowLogger opens a client, and on a fresh
    file their schema migrations race ("duplicate column name: step") and kill a rank."""
    from score_lit.training.resume import ensure_store

    ensure_store(cfg.tracking_uri)


# ------------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    ns = parse_args(argv)
    cfg = resolve(ns)
    seconds = check_flags(ns, cfg)
    check_run_dir(cfg)
    partition = ns.partition
    try:
        require_slurm()
        partition = partition or default_partition()
        check_partition(ns, query_partition(partition), seconds)
    except SlurmError as e:
        if not ns.dry_run:
            raise
        print(f"score_lit submit: not checked against a cluster ({e})", file=sys.stderr)
    script = render(cfg, ns, partition)
    if ns.dry_run:
        print(script, end="")
        print(f"# --dry-run: nothing written to {cfg.run_dir}, nothing submitted", file=sys.stderr)
        return 0
    test = run_slurm(
        ["sbatch", "--test-only"], stdin=script
    )  # SLURM's own verdict (account, QOS, ...) before any write
    if test.returncode != 0:
        raise SlurmError(f"SLURM would refuse this job: {first_line(test.stderr)}")
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(snapshot_yaml(cfg))
    (run_dir / "submit.sh").write_text(script)
    (run_dir / "git.txt").write_text(git_info())
    prepare_tracking(cfg)
    out = run_slurm(["sbatch", "--parsable", str(run_dir / "submit.sh")])
    if out.returncode != 0:
        raise SlurmError(f"sbatch refused {run_dir / 'submit.sh'}: {first_line(out.stderr)}")
    job = out.stdout.strip().split(";")[0]
    print(f"submitted batch job {job}: {cfg.name} on {ns.nodes} node(s), log {run_dir}/slurm-{job}.out")
    print(f"snapshot          : {run_dir}/config.yaml, submit.sh, git.txt")
    return 0
