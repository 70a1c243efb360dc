"""What `python -m score_lit submit` asks the cluster (score_lit.training.slurm renders and submits the job):
SLURM's --time formats, the partitions sinfo reports (nodes, CPUs and GPUs per node, time limit), and the
SLURM commands run with a timeout. SlurmError is the one-line error of a submission that cannot work.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from score_lit.config import ConfigError


class SlurmError(ConfigError):
    """A submission that cannot work (missing SLURM, impossible resources); one line that says what to change."""


# ------------------------------------------------------------------------------------------------
# Time limits in SLURM's formats


def parse_time(text: str) -> int:
    """SLURM --time formats -> seconds: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise SlurmError(f"--time {text!r} is not a SLURM time: use HH:MM:SS (e.g. 24:00:00), MM, or D-HH:MM:SS")
    days, a, b, c = m.groups()
    a, b, c = int(a), int(b or 0), int(c or 0)
    if days is not None:  # D-HH[:MM[:SS]]
        return int(days) * 86400 + a * 3600 + b * 60 + c
    if m.group(4) is not None:  # HH:MM:SS
        return a * 3600 + b * 60 + c
    if m.group(3) is not None:  # MM:SS
        return a * 60 + b
    return a * 60  # MM


def format_time(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


# ------------------------------------------------------------------------------------------------
# What the cluster offers (sinfo), and what the job asks for


@dataclass
class Partition:
    name: str
    nodes: int  # nodes in the partition
    cpus: int  # CPUs per node (the smallest node)
    gpus: int  # GPUs per node (the largest node; 0 without gpu GRES)
    max_seconds: int | None  # the partition's time limit; None = infinite


def _gpus(gres: str) -> int:
    """'gpu:8', 'gpu:a100:4(S:0-1)', 'gpu:2,nvme:1', '(null)' -> GPUs per node."""
    n = 0
    for item in gres.split(","):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] == "gpu":
            n += int(parts[-1]) if parts[-1].isdigit() else 1
    return n


def parse_sinfo(text: str, name: str) -> Partition | None:
    """Lines of `sinfo -h -p NAME -o %P|%D|%c|%G|%l` (one per node group) -> one Partition; None if no line."""
    rows = [line.split("|") for line in text.splitlines() if line.strip()]
    if not rows:
        return None
    limits = [r[4].strip() for r in rows]
    infinite = any(t in ("infinite", "UNLIMITED", "n/a") for t in limits)
    return Partition(
        name=name,
        nodes=sum(int(r[1]) for r in rows),
        cpus=min(int(re.match(r"\d+", r[2]).group()) for r in rows),
        gpus=max(_gpus(r[3].strip()) for r in rows),
        max_seconds=None if infinite else max(parse_time(t) for t in limits),
    )


def run_slurm(cmd: list[str], timeout: float = 30, stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"`{' '.join(cmd)}` did not answer in {timeout:.0f} s: is slurmctld up (scontrol ping)?"
        ) from None


def require_slurm() -> None:
    missing = [b for b in ("sbatch", "sinfo") if shutil.which(b) is None]
    if missing:
        raise SlurmError(
            f"SLURM is not installed or not on PATH: {', '.join(missing)} not found; submit from a login node of the "
            f"cluster (or apt-get install slurm-wlm for a local one), or pass --dry-run to print the script"
        )


def default_partition() -> str:
    out = run_slurm(["sinfo", "-h", "-o", "%P"])
    if out.returncode != 0:
        raise SlurmError(f"sinfo failed: {first_line(out.stderr)}; is the cluster reachable (scontrol ping)?")
    default = [p[:-1] for p in out.stdout.split() if p.endswith("*")]
    if not default:
        raise SlurmError("the cluster has no default partition: pass --partition (sinfo lists them)")
    return default[0]


def query_partition(name: str) -> Partition:
    out = run_slurm(["sinfo", "-h", "-p", name, "-o", "%P|%D|%c|%G|%l"])
    if out.returncode != 0:
        raise SlurmError(f"sinfo failed: {first_line(out.stderr)}; is the cluster reachable (scontrol ping)?")
    part = parse_sinfo(out.stdout, name)
    if part is None:
        names = run_slurm(["sinfo", "-h", "-o", "%P"]).stdout.split()
        raise SlurmError(
            f"partition {name!r} does not exist on this cluster; available: {[n.rstrip('*') for n in names]}"
        )
    return part


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"
