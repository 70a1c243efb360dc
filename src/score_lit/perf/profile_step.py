"""Where a training step's time and memory go, on the toy setup (a benchmark, not a test).

    python -m score_lit.perf.profile_step            # about 2 min on 2 cores; writes measurements/train_step_cpu.json

1. Stage 1 with the toy MLLM (K=8, batch 4, 16 frames of 64x64), 120 steps: the medians of the
   step's timed phases from the run's MLflow history (steps 20+), the share of step time inside the
   frozen model's forward passes (perf/frozen_share: vision tower + the one padded LLM batch), and
   rollouts per second.
2. The PyTorch profiler over 20 of those steps: the top operators by self CPU time.
3. Peak memory of one training step at K=8 and 64 frames (batch 4): on CPU the process's resident
   set is sampled every millisecond during the step (psutil), and the peak above the level before
   the step is reported; on CUDA, torch.cuda.max_memory_allocated over the step.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil
import torch
from lightning.pytorch.callbacks import Callback
from mlflow.tracking import MlflowClient

from score_lit.config import PROJECT_ROOT as ROOT
from score_lit.config import load_config
from score_lit.training.fit import fit


class Profile(Callback):
    def __init__(self, start: int, steps: int):
        self.start, self.stop, self.prof = start, start + steps, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.start:
            self.prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            self.prof.__enter__()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.prof is not None and trainer.global_step == self.stop:
            self.prof.__exit__(None, None, None)


class PeakMemory(Callback):
    """Peak memory of the training step at `step` (CPU: sampled RSS above the pre-step level)."""

    def __init__(self, step: int):
        self.step, self.result = step, {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step != self.step:
            return
        if module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(module.device)
            self.result["before_mib"] = torch.cuda.memory_allocated(module.device) / 2**20
            return
        proc = psutil.Process()
        self.base, self.peak, self.running = proc.memory_info().rss, 0, True

        def sample():
            while self.running:
                self.peak = max(self.peak, proc.memory_info().rss)
                time.sleep(0.001)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step != self.step + 1:
            return
        if module.device.type == "cuda":
            self.result["peak_mib"] = torch.cuda.max_memory_allocated(module.device) / 2**20
            return
        self.running = False
        self.thread.join()
        self.result = {
            "rss_before_mib": self.base / 2**20,
            "rss_peak_mib": self.peak / 2**20,
            "step_peak_above_before_mib": (self.peak - self.base) / 2**20,
        }


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="profile_step."))
    common = [
        f"out_dir={tmp / 'runs'}",
        f"tracking.tracking_uri=sqlite:///{tmp / 'mlflow.db'}",
        "val.every_n_steps=100000",
    ]
    prof = Profile(start=40, steps=20)
    res = fit(load_config([ROOT / "conf/stage1.yaml"], common + ["name=profile", "stage1.steps=120"]), callbacks=[prof])
    client = MlflowClient(res.tracking_uri)
    keys = [
        "time/step",
        "time/data",
        "time/encode",
        "time/frozen_vision",
        "time/rollout",
        "time/frozen_llm",
        "time/reward",
        "time/update",
        "perf/frozen_share",
        "perf/rollouts_per_s",
    ]
    med = {
        k: statistics.median(m.value for m in client.get_metric_history(res.run_id, k) if m.step >= 20) for k in keys
    }
    table = prof.prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)

    mem = PeakMemory(step=3)
    big = ["name=memory64", "stage1.steps=5", "stage1.data.frames=64", "rl.group_size=8", "stage1.data.batch_size=4"]
    fit(load_config([ROOT / "conf/stage1.yaml"], common + big), callbacks=[mem])

    out = ROOT / "measurements" / "train_step_cpu.json"
    out.parent.mkdir(exist_ok=True)
    report = {
        "setup": "toy MLLM, stage 1, K=8, batch 4, 16 frames 64x64 (128 visual tokens); medians over steps 20-119",
        "medians": med,
        "outside_frozen_share": 1 - med["perf/frozen_share"],
        "peak_memory_one_step_K8_64frames": mem.result,
        "profiler_top_self_cpu": table.splitlines(),
    }
    out.write_text(json.dumps(report, indent=2))
    for k, v in med.items():
        print(f"{k:22s} {1000 * v if k.startswith('time') else v:9.2f}{' ms' if k.startswith('time') else ''}")
    print(f"outside the frozen passes: {100 * report['outside_frozen_share']:.1f}% of step time")
    print("peak memory, one step at K=8, 64 frames:", {k: round(v, 1) for k, v in mem.result.items()})
    print(table)
    print(out)


if __name__ == "__main__":
    main()
