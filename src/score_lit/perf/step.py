"""Training-step benchmark: where one SCORE training step's time and memory go, on a named architecture.

    from score_lit.perf.step import StepBenchConfig, measure_steps
    measure_steps(StepBenchConfig(frames=64, group_size=8), adapter)   # tools/gpu_check.sh, on the 7B's adapter

The step is the real one: ScoreModule.training_step in a real Lightning Trainer (one device), the run's settings
from a stage config (conf/stage1.yaml: the policy, the sampler, the estimator, the optimizer), K = group_size
rollouts per sample. Per step the module itself times its phases (training/module.py):

    encode        frozen_vision (vision tower + projector) and tokenizing
    rollout       policy forward + K masks + frozen_llm (all B*K rollouts and the full-video baseline in one
                  padded LLM batch, no grad)
    reward        fidelity, sparsity, advantage
    update        policy-gradient loss, backward through the policy, clip, AdamW step
    step          all of it, plus Lightning's own work between steps
    frozen_share  (frozen_vision + frozen_llm) / step

Peak memory: torch.cuda.max_memory_allocated over each timed step (on CUDA; None on CPU, where
score_lit.perf.profile_step samples the resident set instead), and what was allocated when the step began (the
frozen weights). The batch is bench's synthetic video of `frames` frames (the same frames for every step, which
leaves the step's cost unchanged); every step has new sample ids, so its
full-video baseline pass is part of it, as in a first epoch. Medians over `repeats` steps after `warmup`.
Needs omegaconf (the stage config) and lightning; no MLflow: the per-step metrics go to an in-memory logger.
"""

from __future__ import annotations

import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field

from score_lit.config import ConfigError

# A SLURM install on a workstation is not a SLURM job (the same filter as training/quiet.py's).
warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system")
PHASES = ("frozen_vision", "encode", "frozen_llm", "rollout", "reward", "update", "step")


@dataclass
class StepBenchConfig:
    config: str = "conf/stage1.yaml"  # the stage config whose policy / rl / optim settings the step uses
    overrides: list[str] = field(default_factory=list)  # key=value on top of it (e.g. rl.sampler=bernoulli)
    frames: int = 32
    size: int = 448
    group_size: int = 8  # K, rollouts per sample (rl.group_size)
    batch_size: int = 1  # samples per step on the device
    warmup: int = 1
    repeats: int = 3

    def __post_init__(self) -> None:
        if self.frames < 2 or self.frames % 2:
            raise ConfigError(f"frames={self.frames}: an even count >= 2 (Qwen merges 2 frames per temporal unit)")
        if self.group_size < 2 or self.batch_size < 1:
            raise ConfigError(
                f"group_size={self.group_size}, batch_size={self.batch_size}: need K >= 2 and a batch >= 1"
            )
        if self.warmup < 0 or self.repeats < 1:
            raise ConfigError(f"warmup={self.warmup}, repeats={self.repeats}: need warmup >= 0 and repeats >= 1")


def _recorder():
    """A Lightning logger that keeps every step's metrics in memory (the module logs its timings to its logger)."""
    from lightning.pytorch.loggers import Logger

    class Recorder(Logger):
        def __init__(self):
            super().__init__()
            self.steps: dict[int, dict[str, float]] = {}

        name, version = "memory", 0

        def log_metrics(self, metrics, step=None):
            self.steps.setdefault(step, {}).update({k: float(v) for k, v in metrics.items()})

        def log_hyperparams(self, params, *args, **kwargs):
            pass

    return Recorder()


def _peak_memory():
    """Per step: MiB allocated at its start and the peak during it (CUDA only)."""
    import torch
    from lightning.pytorch.callbacks import Callback

    class PeakMemory(Callback):
        def __init__(self):
            self.steps: dict[int, dict[str, float]] = {}

        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if module.device.type == "cuda":
                torch.cuda.synchronize(module.device)
                torch.cuda.reset_peak_memory_stats(module.device)
                self.steps[trainer.global_step] = {
                    "allocated_at_start_mib": torch.cuda.memory_allocated(module.device) / 2**20
                }

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if module.device.type == "cuda":
                torch.cuda.synchronize(module.device)
                self.steps[trainer.global_step - 1]["peak_mib"] = torch.cuda.max_memory_allocated(module.device) / 2**20

    return PeakMemory()


def _batches(frames, n: int, batch_size: int):
    """n VideoBatches of the same frames ([F, 3, H, W] uint8 -> [B, F, 3, H, W]), each with new ids (no baseline-cache
    hits)."""
    import torch

    from score_lit.perf.bench_setup import SYNTHETIC_SPF
    from score_lit.types import VideoBatch

    x = frames[None].expand(batch_size, *frames.shape).contiguous()
    frames_count, spf = frames.shape[0], SYNTHETIC_SPF
    options = ["a red square", "a blue circle", "a green star", "nothing moves"]
    return [
        VideoBatch(
            ids=[f"step{i}_{b}" for b in range(batch_size)],
            frames=x,
            questions=[f"What moves across the {frames_count} frames of this video?"] * batch_size,
            answers=[options[0]] * batch_size,
            options=[options] * batch_size,
            answer_index=torch.zeros(batch_size, dtype=torch.long),
            seconds_per_frame=[spf] * batch_size,
        )
        for i in range(n)
    ]


def measure_steps(cfg: StepBenchConfig, adapter) -> dict:
    """Train warmup + repeats steps of a fresh ScoreModule around `adapter` (built, on its device) on a synthetic
    video of cfg.frames frames of cfg.size x cfg.size; returns the per-phase medians (ms), frozen share, rollouts/s
    and peak memory."""
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from score_lit.config import load_config
    from score_lit.perf.bench_setup import synthetic_video
    from score_lit.training.module import ScoreModule

    dev = adapter.device
    frames = (
        torch.from_numpy(synthetic_video(cfg.frames, cfg.size)).permute(0, 3, 1, 2).contiguous()
    )  # [F, 3, H, W] uint8
    run_cfg = load_config([cfg.config], [*cfg.overrides, f"rl.group_size={cfg.group_size}", "name=bench_step"])
    L.seed_everything(run_cfg.seed, verbose=False)
    module = ScoreModule(run_cfg, adapter)
    n = cfg.warmup + cfg.repeats
    loader = DataLoader(_batches(frames, n, cfg.batch_size), batch_size=None, shuffle=False)
    logger, memory = _recorder(), _peak_memory()
    trainer = L.Trainer(
        accelerator="gpu" if dev.type == "cuda" else "cpu",
        devices=[dev.index or 0] if dev.type == "cuda" else 1,
        max_steps=n,
        logger=logger,
        callbacks=[memory],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        precision=run_cfg.trainer.precision,
        default_root_dir=None,
        log_every_n_steps=1,
    )
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    wall = time.perf_counter() - t0
    timed = [s for s in sorted(logger.steps) if s >= cfg.warmup]
    if len(timed) != cfg.repeats:
        raise RuntimeError(f"bench_step: {len(timed)} timed steps recorded, expected {cfg.repeats}")
    rows = [logger.steps[s] for s in timed]
    med = {f"{p}_ms": 1000 * statistics.median(r[f"time/{p}"] for r in rows) for p in PHASES}
    peaks = [memory.steps[s].get("peak_mib") for s in timed if s in memory.steps]
    visual = adapter.encode(_batches(frames.to(dev), 1, 1)[0]).num_tokens
    return {
        "config": asdict(cfg),
        "settings": {
            "policy": f"{run_cfg.policy.name}/{run_cfg.policy.hidden}",
            "sampler": run_cfg.rl.sampler,
            "estimator": run_cfg.rl.estimator,
            "precision": run_cfg.trainer.precision,
        },
        "visual_tokens": visual,
        "medians_ms": med,
        "frozen_share": statistics.median(r["perf/frozen_share"] for r in rows),
        "rollouts_per_s": statistics.median(r["perf/rollouts_per_s"] for r in rows),
        "keep_fraction": statistics.median(r["keep_ratio/mean"] for r in rows),
        "peak_mib": max(peaks) if peaks and None not in peaks else None,
        "allocated_at_start_mib": memory.steps[timed[0]]["allocated_at_start_mib"]
        if timed[0] in memory.steps
        else None,
        "steps_wall_s": wall,
    }


def table(results: list[dict]) -> str:
    """Markdown: one row per (K, frames) measured."""
    head = (
        "| K | frames | visual tokens | kept (mean) | vision ms | LLM (K rollouts + baseline) ms | rollout ms | reward ms "
        "| update ms | step ms | frozen share | rollouts/s | peak GiB |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in results:
        m, c = r["medians_ms"], r["config"]
        peak = f"{r['peak_mib'] / 1024:.1f}" if r["peak_mib"] is not None else "n/a (CPU)"
        lines.append(
            f"| {c['group_size']} | {c['frames']} | {r['visual_tokens']} | {100 * r['keep_fraction']:.1f}% "
            f"| {m['frozen_vision_ms']:.1f} | {m['frozen_llm_ms']:.1f} | {m['rollout_ms']:.1f} | {m['reward_ms']:.2f} "
            f"| {m['update_ms']:.2f} | {m['step_ms']:.1f} | {100 * r['frozen_share']:.1f}% | {r['rollouts_per_s']:.1f} "
            f"| {peak} |"
        )
    return "\n".join(lines)
