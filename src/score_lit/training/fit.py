"""One training run: build the frozen MLLM, the module and the data, fit, export the policy, report.

result = fit(load_config(["conf/stage1.yaml"], ["stage1.steps=20"]))
result.policy_path, result.run_id, result.tracking_uri
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from score_lit.config import Config, ConfigError, check_files, flatten, to_dict
from score_lit.data.datamodule import DataMonitor, build_datamodule
from score_lit.data.feature_cache import FeatureCache, model_key
from score_lit.data.order import check_plan
from score_lit.durable import SigintLatch
from score_lit.mllm import build_mllm, checkpoint_identity
from score_lit.training.checkpoint import load_policy, save_policy, save_policy_dir
from score_lit.training.curves import plot_training_curves
from score_lit.training.module import ScoreModule
from score_lit.training.quiet import quiet_run
from score_lit.training.resume import (
    AtomicCheckpointIO,
    TrackingIdentity,
    checkpoint_meta,
    ensure_store,
    log_params_once,
    previous_run_id,
    resolve_resume,
)
from score_lit.training.rundir import claim_run_dir, move_aside, release_all
from score_lit.training.strategies import build_strategy
from score_lit.training.tracking_server import Outage, bounded_retries, check_server, is_server, unreachable


@dataclass
class FitResult:
    run_dir: Path
    policy_path: Path
    checkpoint_dir: Path
    run_id: str
    tracking_uri: str
    experiment: str
    final_metrics: dict
    pending: Path | None = None  # <run_dir>/mlflow_pending.jsonl when the tracking server was still away at the end


class RunLogger(MLFlowLogger):
    """MLFlowLogger whose run ends KILLED, not FAILED, when the training was interrupted by Ctrl-C:
    Lightning finalizes every interrupted run as "failed"; `interrupted` is set by StopReport first.

    With a tracking server, `outage` is set: a metric batch that cannot reach the server is kept in the run folder
    and the training goes on (score_lit.training.tracking_server); Lightning's own logging is used otherwise."""

    interrupted = False
    outage: Outage | None = None

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        if self.outage is None:
            return super().log_metrics(metrics, step)
        if not self.outage.reconnect(self.experiment):
            return self.outage.keep(step, dict(metrics))
        try:
            super().log_metrics(metrics, step)
        except Exception as e:
            if not unreachable(e):
                raise
            self.outage.begin(e, step)
            self.outage.keep(step, dict(metrics), attempted=True)

    @rank_zero_only
    def flush_queued(self) -> None:
        """Returns once every metric queued by MLflow's async logging is in the store (nothing queues when
        synchronous). Called before each checkpoint is written (resume.TrackingIdentity): a run killed right after
        a checkpoint must not lack, after resume=auto, the metrics of the steps that checkpoint says are done."""
        if self._initialized:
            # the store of THIS logger's tracking URI (MLflow caches one per URI); mlflow.flush_async_logging()
            # would flush the store of the process-wide tracking URI, which training does not set
            self.experiment._tracking_client.store.flush_async_logging()

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        status = "KILLED" if status == "failed" and self.interrupted else status
        if self.outage is None:
            return super().finalize(status)
        if self.outage.reconnect(self.experiment, force=True):
            try:
                return super().finalize(status)
            except Exception as e:
                if not unreachable(e):
                    raise
                self.outage.begin(e, None)
        self.outage.keep_end({"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED"}.get(status, status))


class StopReport(Callback):
    """On Ctrl-C: mark the MLflow run KILLED (RunLogger) and say how to continue, in one line. A Ctrl-C that was
    swallowed on its way up (inside a weakref callback or __del__: score_lit.durable) is raised again at the next batch
    boundary, so it always ends the run."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.latch = (
            SigintLatch()
        )  # installed around trainer.fit by `fit` (Lightning's own SIGINT handling nests inside)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.latch.check()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.latch.check()

    def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.latch.check()

    def on_exception(self, trainer, module, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            for logger in trainer.loggers:
                if isinstance(logger, RunLogger):
                    logger.interrupted = True
            print(
                f"interrupted at step {trainer.global_step}: continue this run with the same command and resume=auto "
                f"(its last checkpoint is in {self.cfg.run_dir / 'checkpoints'})",
                file=sys.stderr,
                flush=True,
            )


class PolicyExport(Callback):
    """Writes runs/<name>/policy.pt and the shareable folder runs/<name>/policy/ (atomically) after every validation
    and at the end of training. Their meta says where the weights come from (the folder's model card is made of it,
    score_lit.training.card): the step and phase, the run's name, seed and MLflow run id (`tracking`: the
    TrackingIdentity's info), the score_lit version and the run's whole resolved config."""

    def __init__(self, path: Path, cfg: Config, tracking: dict | None = None):
        self.path, self.cfg, self.tracking = path, cfg, tracking if tracking is not None else {}

    def meta(self, global_step: int, phase: str) -> dict:
        from importlib.metadata import PackageNotFoundError, version

        try:
            score_lit_version = version("score_lit")
        except PackageNotFoundError:  # run from a source tree that was never installed
            score_lit_version = None
        return {
            "global_step": global_step,
            "phase": phase,
            "run_name": self.cfg.name,
            "seed": self.cfg.seed,
            "mlflow_run_id": self.tracking.get("run_id"),
            "score_lit_version": score_lit_version,
            "config": to_dict(self.cfg),
        }

    def _save(self, trainer: L.Trainer, module: ScoreModule) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking:
            phase = trainer.datamodule.sampler().phase_of(max(trainer.global_step - 1, 0))[0]
            meta = self.meta(trainer.global_step, self.cfg.phases[phase])
            save_policy(self.path, module.policy, self.cfg.policy, module.mllm.identity(), meta)
            save_policy_dir(
                self.path.with_suffix(""), module.policy, self.cfg.policy, module.mllm.identity(), meta
            )  # policy/

    def on_validation_end(self, trainer, module):
        self._save(trainer, module)

    def on_train_end(self, trainer, module):
        self._save(trainer, module)


def _rank_world(cfg: Config) -> tuple[int, int]:
    """(rank, world size) the Trainer will have, known before it exists (the plan records the world size)."""
    import os

    return int(os.environ.get("RANK", 0)), cfg.trainer.devices * cfg.trainer.num_nodes


def fit(cfg: Config, callbacks: list[Callback] = ()) -> FitResult:
    """Train cfg's phases; `callbacks` are added to the Trainer's own (e.g. a profiler or a batch recorder). The
    warnings and log lines `quiet_run` names are silenced for the run's duration; MLflow's HTTP retries are bounded
    (an unreachable tracking server costs seconds, not minutes: score_lit.training.tracking_server)."""
    with quiet_run(), bounded_retries():
        return _prepare_and_fit(cfg, callbacks)


def _prepare_and_fit(cfg: Config, callbacks: list[Callback]) -> FitResult:
    check_files(cfg)  # every file the run reads, before anything is built or written
    check_server(cfg.tracking_uri)  # a tracking server that does not answer: one line, before anything is written
    ckpt_path = resolve_resume(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    # ZeRO-3 with a checkpoint: the frozen model is built later, partitioned as it is created (ScoreModule.configure_model).
    lazy = cfg.trainer.strategy == "deepspeed_zero3" and cfg.mllm.path is not None
    mllm = None if lazy else build_mllm(cfg.mllm)
    identity = checkpoint_identity(cfg.mllm) if lazy else mllm.identity()
    cache_dirs = {cfg.phase(p).data.cache_dir for p in cfg.phases} - {None}
    if len(cache_dirs) > 1:
        raise ConfigError(
            f"the phases name different data.cache_dir {sorted(cache_dirs)}: use one folder (keys never collide)"
        )
    cache = FeatureCache(cache_dirs.pop(), model_key(cfg.mllm, identity)) if cache_dirs else None
    module = ScoreModule(cfg, mllm, identity)
    if cfg.init_policy:
        policy, meta_ = load_policy(cfg.init_policy, expect_mllm=identity)
        saved = {k: meta_["policy_config"].get(k) for k in ("name", "hidden", "activation")}
        wanted = {k: getattr(cfg.policy, k) for k in saved}
        if saved != wanted:
            diff = ", ".join(f"policy.{k}={saved[k]} there, {wanted[k]} here" for k in saved if saved[k] != wanted[k])
            raise ConfigError(
                f"init_policy={cfg.init_policy} is another policy ({diff}): set the same policy.* as the run "
                "that wrote it, or give a policy of this architecture"
            )
        module.policy.load_state_dict(policy.state_dict())
    # the text is tokenized in the DataLoader's workers (collate) when the adapter exists now (not under lazy ZeRO-3)
    datamodule = build_datamodule(cfg, cache, prompts=None if mllm is None else mllm.prompt_builder)
    datamodule.setup("fit")  # read the annotation files now: bad data fails before anything is written
    meta = checkpoint_meta(ckpt_path) if ckpt_path else {}
    if meta.get("plan") is not None:
        check_plan(meta["plan"], datamodule.sampler(*_rank_world(cfg)).signature())  # before anything is overwritten

    rank0 = rank_zero_only.rank == 0
    try:
        taken = claim_run_dir(cfg) if rank0 else False  # the lock, and no other run in the folder (rundir.py)
        return _fit(cfg, module, datamodule, ckpt_path, meta, callbacks, rank0, taken)
    finally:
        release_all()


def _fit(cfg, module, datamodule, ckpt_path, meta, callbacks, rank0, taken) -> FitResult:
    run_dir = cfg.run_dir
    ckpt_dir = run_dir / "checkpoints"
    policy_path = run_dir / "policy.pt"
    tracking = TrackingIdentity(cfg, None, cfg.tracking.experiment)  # the MLflow run id is set once it exists
    callbacks = [
        ModelCheckpoint(dirpath=ckpt_dir, save_last=True, every_n_train_steps=cfg.val.every_n_steps, save_top_k=1),
        PolicyExport(policy_path, cfg, tracking.info),
        DataMonitor(),
        tracking,
        stop := StopReport(cfg),
        TQDMProgressBar(refresh_rate=10),  # plain lines: readable in SLURM logs, unlike rich's live display
        *callbacks,
    ]
    t = cfg.trainer
    strategy = build_strategy(cfg)
    plugins = (
        []
        if "deepspeed" in str(getattr(strategy, "__class__", "")).lower() + str(strategy).lower()
        else [AtomicCheckpointIO()]
    )
    if SLURMEnvironment.detect():  # SIGUSR1 before the time limit: hpc_ckpt_<n>.ckpt at a step boundary, requeue, stop
        from score_lit.training.resume import SlurmPlacement, requeue_on_signal

        plugins.append(SLURMEnvironment(auto_requeue=False))  # Lightning's saves inside the handler: can hang DDP
        callbacks += [requeue_on_signal(signal.SIGUSR1), SlurmPlacement()]  # the latter: a line per rank, its node
    # The Trainer is built (its arguments checked) before anything is written; its logger is attached below.
    try:
        trainer = L.Trainer(
            max_steps=cfg.max_steps,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=strategy,
            plugins=plugins,
            precision=t.precision,
            log_every_n_steps=t.log_every_n_steps,
            val_check_interval=cfg.val.every_n_steps,
            check_val_every_n_epoch=None,
            num_sanity_val_steps=0,
            logger=False,
            callbacks=callbacks,
            default_root_dir=str(run_dir),
            enable_model_summary=False,
            use_distributed_sampler=False,  # the curriculum sampler shards steps over ranks itself (one group per rank)
        )
    except (MisconfigurationException, ValueError, RuntimeError) as e:
        raise ConfigError(f"the Trainer refuses these trainer.* settings: {str(e).strip().splitlines()[0]}") from None

    if taken:
        moved = move_aside(run_dir)
        print(f"overwrite=true: the run that was in {run_dir} is now in {moved}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    logger = None
    server = is_server(cfg.tracking_uri)
    if rank0:  # only rank 0 writes the config and opens the store (ranks racing to create a fresh sqlite schema fail)
        (run_dir / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        ensure_store(cfg.tracking_uri)  # a fresh sqlite store: its tables once, whoever else opens it now
        logger = RunLogger(
            experiment_name=cfg.tracking.experiment,
            run_name=cfg.tracking.run_name or cfg.name,
            tracking_uri=cfg.tracking_uri,
            artifact_location=cfg.artifact_location,
            log_model=False,
            # MLflow's async queue drops a batch it fails to send (an error log line): a server's batches go one by one
            synchronous=server or not cfg.tracking.async_logging,
            run_id=previous_run_id(cfg, meta) if ckpt_path else None,  # a resumed run continues its MLflow run
        )
    try:
        if logger is not None:
            log_params_once(logger.experiment, logger.run_id, flatten(to_dict(cfg)))
            if server:
                logger.outage = Outage(run_dir, cfg.tracking_uri, logger.run_id, cfg.tracking.retry_every_s)
                logger.outage.upload_left(logger.experiment)  # what a previous attempt of this run kept
            trainer.loggers = [logger]
        run_id = logger.run_id if logger is not None else None
        tracking.info["run_id"] = run_id
        # The latch outside fit: Lightning records the SIGINT handler it finds at the start and puts it back at its
        # teardown (also after an exception), so installed inside fit the latch would outlive the run.
        with stop.latch:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except BaseException as e:  # Lightning ends the run inside fit; anything else must not leave it RUNNING
        offline = logger is not None and logger.outage is not None and logger.outage.offline
        if logger is not None and not offline and logger.experiment.get_run(logger.run_id).info.status == "RUNNING":
            logger.experiment.set_terminated(logger.run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    pending = None
    if logger is not None:
        logger.flush_queued()  # every queued metric is in the store before the curves read it back
        outage = logger.outage
        try:
            if outage is None or not outage.offline:
                logger.experiment.log_artifact(run_id, str(policy_path))
                curves = plot_training_curves(
                    cfg.tracking_uri, run_id, run_dir / "curves.png", f"{cfg.name} ({run_id[:8]})"
                )
                logger.experiment.log_artifact(run_id, str(curves))
        except Exception as e:
            if outage is None or not unreachable(e):
                raise
            outage.begin(e, None)
            outage.keep_end("FINISHED")  # mlflow-sync logs policy.pt and the curves before it ends the run
        if outage is not None and outage.offline:
            pending = outage.path
            outage.report_end()
    final = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    return FitResult(run_dir, policy_path, ckpt_dir, run_id, cfg.tracking_uri, cfg.tracking.experiment, final, pending)


def report(result: FitResult, out=sys.stdout) -> None:
    print(f"policy checkpoint : {result.policy_path}", file=out)
    if result.pending is not None:
        print(f"mlflow pending    : {result.pending} (python -m score_lit mlflow-sync {result.run_dir})", file=out)
    else:
        print(f"training curves   : {result.run_dir / 'curves.png'}", file=out)
    print(f"lightning ckpts   : {result.checkpoint_dir}", file=out)
    print(f"mlflow run        : {result.run_id} (experiment '{result.experiment}') in {result.tracking_uri}", file=out)
    if is_server(result.tracking_uri):
        print(f"open it at        : {result.tracking_uri}", file=out)
    else:
        print("open it with      : make mlflow-ui   (then http://127.0.0.1:5000)", file=out)
