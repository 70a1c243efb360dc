"""Surviving kills, preemption and requeues: which checkpoint to resume, atomic writes, one MLflow run.

* `resolve_resume(cfg)`: resume=PATH, or resume=auto = the newest of the run's SLURM checkpoints
  (`<run_dir>/hpc_ckpt_<n>.ckpt`, written by Lightning's SLURMEnvironment on SIGUSR1 before it requeues
  the job) and its periodic `<run_dir>/checkpoints/last.ckpt`; None when there is none (a fresh start).
* `AtomicCheckpointIO`: every Lightning checkpoint is written to a temporary file in the same folder,
  fsynced, then renamed over the old one (os.replace is atomic on POSIX): a kill -9 while writing leaves
  the previous checkpoint intact and no half-written file under the real name. (Lightning's own
  `_atomic_save` goes through an fsspec transaction whose temporary file lives in the system temp
  folder; when that is another filesystem, the final move is a copy, which a kill can cut short.)
* `requeue_on_signal()`: the SLURM preemption callback (checkpoint at a step boundary, requeue, stop).
* `SlurmPlacement`: under SLURM, one line per rank at every start of training: the SLURM node it runs on and the
  step (and checkpoint) it starts from, so a job's log shows where each rank ran and that every rank resumed.
* `TrackingIdentity`: every checkpoint carries the MLflow run it belongs to (id, tracking URI,
  experiment), also kept in `<run_dir>/tracking.json`; a resumed run reopens that run, so metrics of a
  killed, preempted or requeued run continue in ONE MLflow run. The config is logged once as params;
  a key whose value changed on resume (e.g. resume=auto, a longer last phase) is recorded as the tag
  `resumed.<key>` instead, since MLflow params cannot change.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from score_lit.config import Config, ConfigError

KEY = "score_lit"  # our section of a Lightning checkpoint


def resolve_resume(cfg: Config) -> str | None:
    """The checkpoint this run continues from (module docstring), or None."""
    if cfg.resume is None:
        return None
    if cfg.resume != "auto":
        return cfg.resume  # existence checked by Config
    found = list(cfg.run_dir.glob("hpc_ckpt_*.ckpt")) + [
        p for p in [cfg.run_dir / "checkpoints" / "last.ckpt"] if p.exists()
    ]
    if not found:
        return None
    # The furthest step wins; on a tie (a signal on a checkpoint step writes both) the SLURM one, then the newest.
    return str(
        max(
            found,
            key=lambda p: (
                checkpoint_meta(str(p)).get("global_step") or -1,
                p.name.startswith("hpc_"),
                p.stat().st_mtime_ns,
            ),
        )
    )


def checkpoint_meta(path: str) -> dict[str, Any]:
    """{"plan": the curriculum plan, "tracking": {"run_id", ...}} of a checkpoint file ({} for a directory)."""
    p = Path(path)
    if p.is_dir():  # DeepSpeed: a folder of shards; rank 0's model-states file holds Lightning's own state
        states = sorted(p.glob("checkpoint/*mp_rank_00_model_states.pt"))
        if not states:
            return {}
        p = states[0]
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ConfigError(
            f"resume checkpoint {path!r} cannot be read ({type(e).__name__}: {e}); pass another one"
        ) from None
    states = ckpt.get("loops", {}).get("fit_loop", {}).get("state_dict", {}).get("combined_loader") or [{}]
    return {
        "plan": states[0].get("plan"),
        "tracking": ckpt.get(KEY, {}).get("tracking"),
        "global_step": ckpt.get("global_step"),
    }


def previous_run_id(cfg: Config, meta: dict) -> str | None:
    """The MLflow run a resumed run continues: from the checkpoint, else from <run_dir>/tracking.json."""
    tracking = meta.get("tracking")
    sidecar = cfg.run_dir / "tracking.json"
    if tracking is None and sidecar.is_file():
        tracking = json.loads(sidecar.read_text())
    if tracking and tracking.get("tracking_uri") == cfg.tracking_uri:
        return tracking.get("run_id")
    return None  # another store (or none recorded): a new run, as for a fresh start


def ensure_store(tracking_uri: str) -> None:
    """Create a fresh sqlite MLflow store's tables once, under a file lock beside it: processes that open the
    same new store at once (two trainings, the ranks of a job) otherwise race in its schema migrations
    ("duplicate column name") and one of them dies. Other stores: nothing to do."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    import fcntl
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables"
    db = Path(tracking_uri[len("sqlite:///") :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(f".{db.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        MlflowClient(tracking_uri).search_experiments(max_results=1)


def log_params_once(client, run_id: str, params: dict[str, Any]) -> None:
    """Log the config as params; on a resumed run, only keys it lacks, and changed values as tags."""
    have = client.get_run(run_id).data.params
    new = {k: str(v)[:6000] for k, v in params.items() if k not in have}
    changed = {f"resumed.{k}": str(v)[:5000] for k, v in params.items() if k in have and have[k] != str(v)[:6000]}
    from mlflow.entities import Param

    items = list(new.items())
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i : i + 100]])
    for k, v in changed.items():
        client.set_tag(run_id, k, v)


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        from score_lit.durable import atomic_torch_save

        atomic_torch_save(checkpoint, path)


class TrackingIdentity(Callback):
    """Puts the MLflow run's identity into every checkpoint (and <run_dir>/tracking.json once)."""

    def __init__(self, cfg: Config, run_id: str, experiment: str):
        self.info = {"run_id": run_id, "tracking_uri": cfg.tracking_uri, "experiment": experiment}
        self.sidecar = cfg.run_dir / "tracking.json"

    def on_fit_start(self, trainer, module) -> None:
        if trainer.is_global_zero and self.info["run_id"]:
            tmp = self.sidecar.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.info, indent=2))
            os.replace(tmp, self.sidecar)

    def on_save_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        checkpoint.setdefault(KEY, {})["tracking"] = self.info
        # Before the checkpoint is written: the metrics of every step it counts as done reach the store first
        # (MLflow's async queue would otherwise lose them to a kill -9 right after the write; fit.RunLogger).
        for logger in trainer.loggers:
            flush = getattr(logger, "flush_queued", None)
            if flush is not None:
                flush()


class SlurmPlacement(Callback):
    """Every rank prints where SLURM placed it and the step it trains from (after any restore), e.g.
    `score_lit: rank 1/2 on SLURM node 1 (gpu-017), job 4242 restart 1: training from step 17 (resumed from ...)`.
    SLURMD_NODENAME is the node's name as SLURM knows it (its hostname on a real cluster)."""

    def on_train_start(self, trainer, pl_module) -> None:
        env = os.environ
        where = f"SLURM node {env.get('SLURM_NODEID', '?')} ({env.get('SLURMD_NODENAME', '?')})"
        job = f"job {env.get('SLURM_JOB_ID', '?')} restart {env.get('SLURM_RESTART_COUNT', '0')}"
        resumed = f" (resumed from {trainer.ckpt_path})" if trainer.ckpt_path else ""
        print(
            f"score_lit: rank {trainer.global_rank}/{trainer.world_size} on {where}, {job}: "
            f"training from step {trainer.global_step}{resumed}",
            flush=True,
        )


def requeue_on_signal(signum: int = signal.SIGUSR1):
    """A Lightning callback for train.fit under SLURM: on `signum`, checkpoint to <run_dir>/hpc_ckpt_<n>.ckpt at the
    next step boundary, `scontrol requeue` the job, and stop.

    Use it with SLURMEnvironment(auto_requeue=False): Lightning's own auto-requeue saves the checkpoint INSIDE the
    signal handler, which runs at any bytecode of each rank; with DDP one rank can enter save_checkpoint's barrier
    while another is inside the step's all-reduce, and the job hangs until SLURM kills it (seen here about one run
    in two; Lightning issue #21406, fix proposed in PR #21407). Here the handler only sets a flag; the ranks agree
    on it with one all-reduce per step, save together, and no step runs after the checkpoint (so the resumed job
    logs each step once)."""

    class RequeueOnSignal(Callback):
        def __init__(self) -> None:
            self.received = False

        def _flag(self, *_) -> None:
            self.received = True

        def setup(self, trainer, pl_module, stage: str) -> None:
            signal.signal(signum, self._flag)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if not trainer.strategy.reduce_boolean_decision(self.received, all=False):
                return
            path = trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)
            trainer.save_checkpoint(path)
            if trainer.is_global_zero:
                array = os.environ.get("SLURM_ARRAY_JOB_ID")
                job = f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array else os.environ["SLURM_JOB_ID"]
                # Said BEFORE the requeue: SLURM ends this process as it requeues the job, so a line printed after
                # `scontrol requeue` returns is sometimes never written (seen under load).
                print(
                    f"score_lit: signal {signum} at step {trainer.global_step}: saved {path}; requeueing job {job}",
                    flush=True,
                )
                rc = subprocess.call(["scontrol", "requeue", job])
                if rc != 0:
                    print(
                        f"score_lit: scontrol requeue FAILED ({rc}) for job {job}: resume it with resume=auto",
                        flush=True,
                    )
            trainer.should_stop = True

    return RequeueOnSignal()
