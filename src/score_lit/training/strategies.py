"""How the Trainer spreads a run over processes: cpu / ddp / deepspeed_zero2 / deepspeed_zero3 (conf/trainer/).

    Trainer(strategy=build_strategy(cfg))

trainer.strategy names:
    auto, ddp, ...      passed through to Lightning (ddp on CPU uses gloo, on GPU NCCL)
    deepspeed_zero2     DeepSpeed ZeRO-2: the policy's gradients and optimizer state are sharded over ranks
    deepspeed_zero3     DeepSpeed ZeRO-3: also every parameter is partitioned, the frozen MLLM's included;
                        that is what lets a 72B backbone fit. Each module gathers its weights on use (forward
                        pre-hooks on every submodule, so the adapter's direct calls `model.model.language_model(...)`,
                        `model.lm_head(...)`, `get_video_features(...)`, `get_input_embeddings()(ids)` gather too)
                        and releases them after.

The DeepSpeed config is built from ours (`deepspeed_config`): ZeRO stage, gradient_clipping =
optim.grad_clip (DeepSpeed clips inside engine.step, so ScoreModule does not call clip_gradients under
it), no offload, and no DeepSpeed optimizer: the torch AdamW of ScoreModule.configure_optimizers is
wrapped (DeepSpeed's own fused / CPU Adam JIT-compiles C++ for ~80 s on first use). Manual optimization
goes through the engine: manual_backward -> engine.backward, opt.step -> engine.step (Lightning's
DeepSpeed precision plugin does this).

Choices under ZeRO-3 (the why is in the functions):
- The policy is kept whole on every rank (`keep_whole`, called from ScoreModule.on_fit_start); its
  gradients and optimizer state stay partitioned. It is a few MB, and every reader of `module.policy`
  (PolicyExport's policy.pt on rank 0, validation) then sees real weights without a collective gather.
- Every rank must run the frozen model's modules the same number of times per step (each use is an
  all-gather). The training step does (one vision pass, one LLM pass per step); a feature cache
  (data.cache_dir) would let a rank skip the vision tower, so ZeRO-3 refuses it.
- Lightning's DeepSpeed checkpoints are directories (runs/<name>/checkpoints/last.ckpt/ holding the
  engine's shards), without the frozen weights (exclude_frozen_parameters).

GPU runs use Lightning's stock DeepSpeedStrategy. `CPUDeepSpeedStrategy` lifts only its CUDA-only check,
for CPU testing (tests/test_distributed.py, CPU smoke runs): gloo instead of NCCL, fp32, slow.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from score_lit.config import Config, ConfigError

DEEPSPEED_STAGES = {"deepspeed_zero2": 2, "deepspeed_zero3": 3}


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """DeepSpeedStrategy on CPU processes (gloo), for testing only: not a way to train a real model.

    Lightning's DeepSpeedStrategy refuses a CPU accelerator ("only supported on CUDA GPUs") and checks
    that the device indices are the local ranks (CPU devices have no index). DeepSpeed 0.19.8 itself
    trains ZeRO-2/3 on CPU (its CPU accelerator, gloo). This subclass skips those two checks and reports
    cpu:0 as the root device (DeepSpeed reads the device index as its device rank); everything else is
    the stock strategy, so a CPU run exercises the same engine, hooks and checkpoints as a GPU run."""

    def setup_environment(self) -> None:
        from deepspeed.accelerator import get_accelerator

        if get_accelerator().device_name() != "cpu":
            raise RuntimeError(
                "CPUDeepSpeedStrategy needs DeepSpeed's CPU accelerator: with GPUs present, set DS_ACCELERATOR=cpu"
            )
        DDPStrategy.setup_environment(self)  # the stock one, minus the CUDA-only check

    def _init_deepspeed_distributed(self) -> None:
        import importlib

        # DeepSpeed's CPU backend JIT-compiles a shared-memory all-reduce kernel (~40 s the first time) that
        # only its inference tensor parallelism uses; training collectives are plain gloo, so skip it.
        # (importlib: the attribute deepspeed.comm.torch is PyTorch itself, shadowing the submodule.)
        importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
        super()._init_deepspeed_distributed()

    def setup_distributed(self) -> None:
        reset_seed()  # as the stock one, minus _validate_device_index_selection
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", 0)


def deepspeed_config(cfg: Config, stage: int) -> dict[str, Any]:
    """The DeepSpeed config of a run (precision and gradient accumulation are added by Lightning)."""
    t = cfg.trainer
    zero: dict[str, Any] = {"stage": stage, "contiguous_gradients": True, "overlap_comm": t.accelerator != "cpu"}
    if stage == 3:
        zero["stage3_param_persistence_threshold"] = t.zero3_persistence_threshold
    return {
        "zero_optimization": zero,  # no offload_optimizer / offload_param: everything stays on the device
        "zero_allow_untested_optimizer": True,  # the torch AdamW of configure_optimizers, not a DeepSpeed one
        "gradient_clipping": cfg.optim.grad_clip,  # 0 = off, as optim.grad_clip
        # DeepSpeed uses it for throughput logging only; Lightning's guess reads the batch sampler's
        # batch_size, which the curriculum sampler does not have.
        "train_micro_batch_size_per_gpu": cfg.phase(cfg.phases[0]).data.batch_size,
        "wall_clock_breakdown": False,
    }


def build_strategy(cfg: Config) -> Any:
    """cfg: the whole Config; returns a strategy name (passed through) or a Lightning Strategy instance."""
    name = cfg.trainer.strategy
    if name not in DEEPSPEED_STAGES:
        return name
    stage = DEEPSPEED_STAGES[name]
    if stage == 3 and any(cfg.phase(p).data.cache_dir for p in cfg.phases):
        raise ConfigError(
            "trainer.strategy=deepspeed_zero3 with a feature cache (data.cache_dir): under ZeRO-3 every rank must run "
            "the frozen vision tower in every step, and cached rows skip it; unset data.cache_dir or use deepspeed_zero2"
        )
    kind = CPUDeepSpeedStrategy if cfg.trainer.accelerator == "cpu" else DeepSpeedStrategy
    # exclude_frozen_parameters: the frozen MLLM never enters a checkpoint (as on_save_checkpoint does otherwise).
    return kind(config=deepspeed_config(cfg, stage), exclude_frozen_parameters=True)


def is_deepspeed(strategy: Any) -> bool:
    return isinstance(strategy, DeepSpeedStrategy)


def keep_whole(strategy: Any, module: torch.nn.Module) -> None:
    """Under ZeRO-3, keep `module`'s parameters whole on every rank (no-op otherwise). Collective: call on all ranks.

    This is DeepSpeed's own "persistent parameter" mechanism (what it does by itself for parameters under
    stage3_param_persistence_threshold), applied to one module whatever its size: the parameter is
    gathered now, never released after a forward, and re-gathered after every optimizer step; its
    gradient and optimizer state stay partitioned. We use it for the policy (at most a few million
    parameters) so that rank 0 can read and export it (PolicyExport) with no collective gather;
    the alternative, deepspeed.zero.GatheredParameters around the export, must run on every rank."""
    if not (is_deepspeed(strategy) and strategy.zero_stage_3):
        return
    engine = strategy.deepspeed_engine
    persistent = engine.optimizer.persistent_parameters  # the list DeepSpeed re-gathers after each step
    new = [p for p in module.parameters() if not p.ds_persist]
    for p in new:
        p.ds_persist = True
    persistent.extend(new)
    if new:
        new[0].all_gather(new)
