"""A run folder belongs to one run.

`claim_run_dir(cfg)` is called by rank 0 after every check of the config, the data and the Trainer's
arguments, and before anything is written into runs/<name>/:

* a lock (`runs/.<name>.lock`, an exclusive `fcntl.flock` held until the process exits, so a kill -9
  frees it) makes a second training with the same name refuse while the first is running;
* a folder that already holds a run (any file in it) is only continued with `resume=auto` / `resume=PATH`;
  otherwise the new run refuses with one line, unless `overwrite=true`, which moves the old folder aside
  to runs/<name>.old-<time> (never deletes it).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from score_lit.config import Config, ConfigError

_HELD: list = []  # open lock files of this process (released when it exits)


def lock_path(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}.lock")


def run_files(run_dir: Path) -> list[str]:
    """The entries of a run folder, sorted (empty when the folder is missing or empty)."""
    return sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []


def free_path(base: Path) -> Path:
    """base, or base-1, base-2, ...: the first that does not exist (a new folder never lands on an old one)."""
    out, n = base, 1
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out


def aside_path(run_dir: Path) -> Path:
    """runs/<name>.old-<YYYYmmdd-HHMMSS>[-n]: a free name for an overwritten run's folder."""
    return free_path(run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}"))


def claim_run_dir(cfg: Config) -> bool:
    """Lock runs/<name> for this process and make sure it holds no other run (module docstring).

    Returns whether the folder holds a run that overwrite=true must move aside (`move_aside`, once the
    Trainer's arguments are checked too). Raises ConfigError, having written nothing but the lock file,
    when another process trains this name or the folder holds a run that this one neither resumes nor
    overwrites."""
    run_dir = cfg.run_dir
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(run_dir)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(
            f"another training (pid {holder}) is running as name={cfg.name} in {run_dir}: wait for it to finish "
            f"or pick another name=..."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD.append(fd)
    found = run_files(run_dir)
    if not found or cfg.resume is not None:
        return False
    if not cfg.overwrite:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise ConfigError(
            f"{run_dir} already holds a run ({shown}): continue it with resume=auto, pick another name=..., "
            f"or pass overwrite=true to move it aside (nothing is deleted)"
        )
    return True


def move_aside(run_dir: Path) -> Path:
    """overwrite=true: rename the old run's folder to a free runs/<name>.old-<time>; returns the new path."""
    moved = aside_path(run_dir)
    run_dir.rename(moved)
    return moved


def release_all() -> None:
    """Release this process's run locks (tests that train twice in one process)."""
    while _HELD:
        fd = _HELD.pop()
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
