"""Shared builders of the tests (pytest puts this folder on sys.path, so test modules import them by name)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LMMS_VENV = ROOT / ".venv-lmms"


def tiny_run(tmp_path: Path, name: str | None = None, steps: dict[str, int] | int = 4, *, data: dict | None = None,
             group: int = 4, hidden: int = 16, val_every: int = 2, extra: tuple | list = ()) -> list[str]:  # fmt: skip
    """key=value overrides of a tiny CPU training run that writes only under tmp_path (runs/, a sqlite MLflow store).

    steps: {phase: steps} (an int = stage1 only, the default phase list); every listed phase gets the tiny data
    settings (4 frames of 32 px, batches of 2) updated by `data`; group = rl.group_size, hidden = policy.hidden,
    val_every = val.every_n_steps; `extra` overrides go last."""
    steps = {"stage1": steps} if isinstance(steps, int) else steps
    data = {"frames": 4, "size": 32, "batch_size": 2, **(data or {})}
    over = [f"name={name}"] if name else []
    over += [f"out_dir={tmp_path / 'runs'}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    if list(steps) != ["stage1"]:
        over.append(f"phases=[{','.join(steps)}]")
    over += [f"{p}.steps={n}" for p, n in steps.items()]
    over += [f"rl.group_size={group}", f"policy.hidden={hidden}", f"val.every_n_steps={val_every}"]
    over += [f"{p}.data.{k}={v}" for p in steps for k, v in data.items()]
    return over + list(extra)


INTEGRATION = ("lmms", "slurm", "distributed", "resume")  # markers whose tests are all integration tests too


def pytest_collection_modifyitems(config, items):
    """Every lmms / slurm / distributed / resume test is also `integration`: `make test` (-m "not integration")
    leaves them to `make test-all` and `make test-integration`."""
    for item in items:
        if any(item.get_closest_marker(m) for m in INTEGRATION):
            item.add_marker(pytest.mark.integration)


def need_lmms(*paths: Path) -> None:
    """Skip without .venv-lmms (or `paths`, e.g. the toy bench), unless REQUIRE_LMMS=1 (`make test-all` sets it after building
    both): then their absence is a failure, so CI cannot pass with the lmms-eval tests silently skipped."""
    missing = [str(p.relative_to(ROOT)) for p in (LMMS_VENV / "bin/lmms-eval", *paths) if not p.exists()]
    if missing:
        msg = f"missing {missing}: `make test-all` / `make test-lmms` build .venv-lmms and the toy bench"
        pytest.fail(msg + " (REQUIRE_LMMS=1)") if os.environ.get("REQUIRE_LMMS") == "1" else pytest.skip(msg)


def lmms_env(tmp_path: Path) -> dict:
    """The environment of an lmms-eval CLI run: offline hubs, its datasets cache under tmp_path, no plugin variable."""
    env = {k: v for k, v in os.environ.items() if k not in ("LMMS_EVAL_PLUGINS", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_DATASETS_CACHE=str(tmp_path / "hf-datasets"))
    return env
