"""The LightningModule: wires the phases of a SCORE step and logs them; the math lives elsewhere.

training_step reads as the named, timed phases of docs/METHOD.md:
    encode   video -> frozen vision tower + projector -> VisualTokens; the text arrives tokenized (batch.prompts,
             built by the DataLoader's collate in its workers; tokenized here only when the loader was given no builder)
    rollout  state -> policy logits -> K masks (rl.sampler) -> one batched frozen-LLM pass -> CE per rollout
    reward   fidelity and sparsity rewards -> advantage estimator (by name)
    update   policy-gradient loss -> backward -> clip -> optimizer step   (manual optimization, so it is timed;
             under DeepSpeed: engine.backward, and engine.step clips by its config)

The frozen MLLM is registered as the submodule `frozen` only so that Lightning moves it between
devices; it has no trainable parameters, is kept in eval mode, is not given to the optimizer, and is
stripped from every checkpoint (on_save_checkpoint). Given no adapter (ZeRO-3 with a checkpoint, train.fit),
the module builds it in `configure_model`, which Lightning runs inside DeepSpeed's zero.Init: every frozen
parameter is partitioned over the ranks as it is created, so no process ever holds the whole model (a 72B
backbone would otherwise need ~144 GB of CPU memory per process before ZeRO-3 partitions it).
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import lightning as L
import torch
from torchmetrics import MeanMetric

from score_lit.config import Config, retention_label
from score_lit.data.encode import encode
from score_lit.mllm import build_mllm
from score_lit.mllm.adapter import VideoMLLM
from score_lit.rl.advantage import compute_advantage
from score_lit.rl.loss import policy_gradient_loss
from score_lit.rl.policy import build_policy, topk_mask
from score_lit.rl.rewards import fidelity_reward, sparsity_reward
from score_lit.rl.rollout import BaselineCache, collect_rollouts, score_with_baseline
from score_lit.rl.samplers import sample_rollouts
from score_lit.rl.state import surprise_state
from score_lit.training.strategies import is_deepspeed, keep_whole
from score_lit.types import VideoBatch

FROZEN_PREFIX = "frozen."


class ScoreModule(L.LightningModule):
    def __init__(self, cfg: Config, mllm: VideoMLLM | None, identity: dict | None = None):
        """mllm: the frozen adapter, or None to build it in configure_model (then `identity`, its
        checkpoint_identity, sizes the policy)."""
        super().__init__()
        self.cfg = cfg
        self.mllm = mllm  # plain attribute: the adapter (not an nn.Module)
        self.frozen = None
        if mllm is not None:
            self.frozen = mllm.model  # the HF model, registered for device moves only
            self.frozen.requires_grad_(False).eval()
        elif identity is None:
            raise ValueError(
                "ScoreModule without an adapter needs identity=checkpoint_identity(cfg.mllm) to size the policy"
            )
        self.policy = build_policy(2 * (mllm.hidden_size if mllm is not None else identity["hidden_size"]), cfg.policy)
        self.automatic_optimization = False
        self.strict_loading = False  # checkpoints carry no frozen weights
        self.baseline = BaselineCache()
        self.val_ratios = list(cfg.val.ratios)
        self.val_acc = torch.nn.ModuleList([MeanMetric() for _ in self.val_ratios])  # one per ratio, same order
        self.val_dce = torch.nn.ModuleList([MeanMetric() for _ in self.val_ratios])
        self.val_acc_full = MeanMetric()
        self._full_logged = False
        self._timings: dict[str, float] = {}
        self._step = 0
        self._step_end: float | None = None  # when the previous step's hooks ended (time/data = the wait since)

    # ---- frozen model bookkeeping ------------------------------------------------------------------
    def configure_model(self) -> None:
        """Build the frozen MLLM if it was not given (Lightning calls this inside the strategy's model context:
        DeepSpeed's zero.Init under ZeRO-3). HfDeepSpeedConfig tells transformers' from_pretrained that ZeRO-3 is
        on, so it loads each weight into its partitions; it stays referenced here (transformers keeps a weakref)."""
        if self.mllm is not None:
            return
        strategy = self.trainer.strategy
        if is_deepspeed(strategy) and strategy.zero_stage_3:
            from transformers.integrations import HfDeepSpeedConfig

            self._hf_deepspeed = HfDeepSpeedConfig(strategy.config)
        self.mllm = build_mllm(self.cfg.mllm)
        self.frozen = self.mllm.model

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen is not None:
            self.frozen.eval()  # never dropout / train-mode behaviour in the frozen MLLM
        return self

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        sd = checkpoint.get("state_dict", {})
        for k in [k for k in sd if k.startswith(FROZEN_PREFIX)]:
            del sd[k]

    def on_fit_start(self) -> None:
        keep_whole(self.trainer.strategy, self.policy)  # ZeRO-3: the policy stays whole on every rank (see there)

    def configure_optimizers(self):
        o = self.cfg.optim
        return torch.optim.AdamW(self.policy.parameters(), lr=o.lr, weight_decay=o.weight_decay)

    @contextmanager
    def _phase(self, name: str):
        """Times a named phase into time/<name> (synchronising CUDA, so GPU work is counted where it runs)."""
        sync = torch.cuda.synchronize if self.device.type == "cuda" else (lambda: None)
        sync()
        t0 = time.perf_counter()
        yield
        sync()
        self._timings[f"time/{name}"] = time.perf_counter() - t0

    def _mask_generator(self, device: torch.device) -> torch.Generator:
        """The K masks of a step are a pure function of (seed, step, rank): a resumed run samples exactly
        what an uninterrupted one would have, with no RNG state to carry in the checkpoint."""
        g = torch.Generator(device=device)
        g.manual_seed((self.cfg.seed * 1_000_003 + self.global_step) * 4099 + self.global_rank)
        return g

    def _question(self, prompts):
        """The question's representation for a question-conditioned policy (policy.name=query_mlp), else None."""
        return self.mllm.question_embedding(prompts) if getattr(self.policy, "needs_question", False) else None

    # ---- training ----------------------------------------------------------------------------------
    def training_step(self, batch: VideoBatch, batch_idx: int):
        rl = self.cfg.rl
        self._step = self.global_step  # the step this batch trains (metrics are logged at it)
        t_start = time.perf_counter()
        self._timings = {}  # this step's phases only: a step after a validation has no time/data
        if self._step_end is not None:  # loading + decoding the batch, and Lightning's own work in between
            self._timings["time/data"] = t_start - self._step_end
        with self._phase("encode"):
            with self._phase("frozen_vision"):  # vision tower + projector (skipped for cached rows)
                visual = encode(self.mllm, batch)
            prompts = self.mllm.tokenize(batch)
        with self._phase("rollout"):
            logits = self.policy(surprise_state(visual.tokens), self._question(prompts))  # [B, T*N]
            masks, budgets = sample_rollouts(
                rl.sampler, logits, rl.group_size, self._mask_generator(logits.device), rl.budgets
            )
            with self._phase("frozen_llm"):  # all B*K rollouts (+ uncached baselines) in one padded LLM batch
                rollout = collect_rollouts(
                    self.mllm, visual, prompts, masks, batch.ids, self.baseline, batch.answer_index, budgets
                )
        with self._phase("reward"):
            rollout.fidelity = fidelity_reward(rollout.ce, rollout.ce_base)
            rollout.sparsity = sparsity_reward(rollout.masks)
            rollout.advantages, rollout.extras = compute_advantage(
                rl.estimator, rollout.fidelity, rollout.sparsity, rollout.dce, rl
            )
        with self._phase("update"):
            loss, stats = policy_gradient_loss(
                logits, rollout.masks, rollout.advantages, rl.entropy_coef, rollout.budgets
            )
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            if self.cfg.optim.grad_clip > 0 and not is_deepspeed(
                self.trainer.strategy
            ):  # DeepSpeed clips in engine.step
                self.clip_gradients(opt, gradient_clip_val=self.cfg.optim.grad_clip, gradient_clip_algorithm="norm")
            opt.step()
        t = self._timings
        t["time/step"] = time.perf_counter() - t_start + t.get("time/data", 0.0)
        t["perf/frozen_share"] = (t["time/frozen_vision"] + t["time/frozen_llm"]) / t["time/step"]
        t["perf/rollouts_per_s"] = masks.shape[0] * masks.shape[1] / t["time/step"]
        self._log_train(loss, stats, rollout)
        return loss.detach()

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self._step_end = time.perf_counter()  # after the callbacks (checkpoints): they are not data time

    def on_validation_start(self) -> None:
        self._step_end = None  # the step after a validation has no data time measured

    def _log_train(self, loss, stats, rollout) -> None:
        metrics = {
            "loss": loss.detach(),
            "reward/fidelity": rollout.fidelity.mean(),
            "reward/sparsity": rollout.sparsity.mean(),
            "dce/mean": rollout.dce.mean(),
            "keep_ratio/mean": rollout.keep_fraction.mean(),
            "advantage/std": rollout.advantages.std(correction=0),
            **stats,
        }
        if "gate" in rollout.extras:
            metrics["advantage/gate_open"] = rollout.extras["gate"].mean()
        values = dict(
            zip(metrics, torch.stack([v.detach().float() for v in metrics.values()]).tolist())
        )  # one host sync
        self.log_step_metrics({**values, **self._timings})
        self.log_dict(
            {"keep": values["keep_ratio/mean"], "dce": values["dce/mean"]},
            prog_bar=True,
            logger=False,
            batch_size=len(rollout.ce),
        )

    def log_step_metrics(self, metrics: dict[str, float]) -> None:
        """Per-step scalars straight to the logger (MLflow), at the step being trained.

        Lightning's self.log costs about 0.7 ms per metric on this machine (its result collection), which
        for ~25 metrics a step was a fifth of a toy step; the logger call is one batched write. Each rank's
        logger call is a no-op except on rank 0, as with self.log(rank_zero_only)."""
        if self.logger is not None and self.trainer.is_global_zero:
            self.logger.log_metrics(metrics, step=self._step)

    # ---- validation: the policy's deterministic top-k at each retention ratio ---------------------
    def validation_step(self, batch: VideoBatch, batch_idx: int) -> None:
        visual = encode(self.mllm, batch)
        prompts = self.mllm.tokenize(batch)
        scores_p = self.policy(surprise_state(visual.tokens), self._question(prompts))  # [B, T*N]
        per_frame = self.cfg.policy.selection == "per_frame"
        masks = torch.stack(
            [topk_mask(scores_p, r, visual.grid, per_frame) for r in self.val_ratios], dim=1
        )  # [B, R, T*N]
        scores, ce_base = score_with_baseline(
            self.mllm, visual, prompts, masks, batch.ids, self.baseline, batch.answer_index
        )
        dce = scores.ce - ce_base.unsqueeze(1)  # [B, R]
        mc = batch.answer_index >= 0  # [B] multiple-choice rows: open-ended ones have no accuracy, only dCE
        for j in range(len(self.val_ratios)):
            self.val_dce[j].update(dce[:, j])
        if mc.any():
            correct = (scores.option_logits[mc].argmax(-1) == batch.answer_index[mc].unsqueeze(1)).float()  # [B_mc, R]
            for j in range(len(self.val_ratios)):
                self.val_acc[j].update(correct[:, j])
            ids = [i for i, m in zip(batch.ids, mc.tolist()) if m]
            self.val_acc_full.update(self.baseline.get_correct(ids, dce.device).float())

    def on_validation_epoch_end(self) -> None:
        logs = {}
        for r, acc, dce in zip(self.val_ratios, self.val_acc, self.val_dce):
            lab = retention_label(r)
            logs[f"val/accuracy_{lab}"], logs[f"val/dce_{lab}"] = acc.compute(), dce.compute()
            acc.reset()
            dce.reset()
        smallest = retention_label(min(self.val_ratios))
        logs["val/dce_bound_ok"] = (logs[f"val/dce_{smallest}"] <= self.cfg.val.dce_bound).float()
        if not self._full_logged and not self.trainer.sanity_checking:
            logs[f"val/accuracy_{retention_label(1.0)}"] = self.val_acc_full.compute()  # frozen model: once per run
            self._full_logged = True
        self.val_acc_full.reset()
        self.log_dict(logs, prog_bar=False)
