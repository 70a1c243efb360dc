"""The GPU check: the paper's speed claims measured on one GPU, in one run (tools/gpu_check.sh, make bench-gpu).

    bash tools/gpu_check.sh OUT              # one GPU, sized for 8 min on an H200 (not yet run on one); OUT/gpu_check.{json,md} + the log
    bash tools/gpu_check.sh OUT --tiny       # the same code on the tiny random architectures, on CPU (the test)

Parts, in order of importance (a part that fails is recorded with its error and the next one runs; once the
time budget is spent, the remaining parts are recorded as skipped):
1. prefill, Qwen2.5-VL-7B architecture (random weights, bf16; FlashAttention 2 where importable, else SDPA) at
   32 / 64 / 128 / 256 frames of 448x448 (128 visual tokens per frame) and ratios 1.0 ... 0.05: score_lit.perf.bench
   on synthetic frames. Per ratio the medians of vision / policy / prefill, the prefill speedup, the FLOP-ideal
   speedup and their ratio (share of ideal), and the policy's share of end-to-end time.
2. profile: where the time goes at the largest frame count, ratios 1.0 and 0.1 (torch.profiler, top operators by
   self device time).
3. train step, the same 7B at K = 8 and 32 / 64 frames: score_lit.perf.step (time per phase, peak memory, frozen
   share) with conf/stage1.yaml's settings.
4. prefill, Qwen3-VL-8B architecture: the table of part 1.

What is timed (stated in the outputs too): per run, CUDA-synchronised at every border, `vision` (preprocessing
on the device + vision tower + merger), `policy` (surprise state + policy + top-k), `prefill` (the kept tokens'
positions, embedding, the LLM over text + kept tokens with the KV cache built, lm_head on the last position: the
first output token). `model` = vision + policy + prefill, the time to the first token given decoded frames.
`decode` here draws synthetic frames (the GPU image has neither decord nor PyAV; `make bench` times real decoding
on CPU) and is left out of `model`; `ttft` = decode + model, as `make bench` reports it (with its speedup over
vanilla in the same run). Not timed: model build, tokenizing the question once.

Needs torch, transformers and lightning; omegaconf for part 3 (carried as a wheel: make gpu-wheels). No MLflow,
no decoder, no network.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from score_lit.perf.gpu_report import TARGETS, check_targets, markdown, summarise

RATIOS = [1.0, 0.5, 0.25, 0.1, 0.05]
COVERS = (
    "vision = preprocessing on the device + vision tower + merger; policy = surprise state + policy (the paper's "
    "mlp, 256 wide) + top-k; prefill = kept tokens' M-RoPE ids + LLM over text + kept tokens with the KV cache "
    "built + lm_head on the last position (the first output token); model = vision + policy + prefill (time to "
    "the first token from decoded frames); decode = drawing synthetic frames (no codec on the GPU image), not in "
    "model; TTFT = decode + model (make bench's ttft_ms; on real video decode is larger). CUDA-synchronised at every border; medians over the repeats after warm-up, ratios interleaved."
)

# Per mode: the prefill architectures (name, family, frames, repeats), the frame size, warm-up, the train-step
# settings (arch, family, K, frame counts, warm-up, repeats).
PLANS = {
    "full": {
        "prefill": [
            ("qwen2_5_vl_7b", "qwen2_5_vl", [32, 64, 128, 256], 4),
            ("qwen3_vl_8b", "qwen3_vl", [32, 64, 128, 256], 3),
        ],
        "size": 448,
        "warmup": 1,
        "step": ("qwen2_5_vl_7b", "qwen2_5_vl", 8, [32, 64], 1, 3),
    },
    "tiny": {
        "prefill": [("tiny", "qwen2_5_vl", [4, 8], 2), ("tiny", "qwen3_vl", [4, 8], 1)],
        "size": 64,
        "warmup": 1,
        "step": ("tiny", "qwen2_5_vl", 4, [4, 8], 1, 2),
    },
}


def environment() -> dict:
    import lightning
    import torch
    import transformers
    from transformers.utils import is_flash_attn_2_available

    from score_lit.perf.bench_setup import decoders_missing

    cuda = torch.cuda.is_available()
    try:
        import omegaconf

        omega = omegaconf.__version__
    except ImportError:
        omega = None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "lightning": lightning.__version__,
        "omegaconf": omega,
        "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine(),
        "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
        "flash_attention_2": bool(cuda and is_flash_attn_2_available()),
        "decoders_missing": decoders_missing(),
    }


def profile(chain, ratios: list[float], rows: int = 12) -> dict:
    """Top operators by self device time (CPU time on CPU) of one run of the chain at each ratio."""
    import torch
    from torch.profiler import ProfilerActivity

    cuda = chain.dev.type == "cuda"
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    key = "self_cpu_time_total"
    if cuda:  # torch >= 2.4 names it device time; older ones cuda time
        key = (
            "self_device_time_total"
            if hasattr(torch.autograd.profiler_util.FunctionEventAvg(), "self_device_time_total")
            else "self_cuda_time_total"
        )
    out = {}
    for r in ratios:
        chain.run(r)  # warm
        with torch.profiler.profile(activities=acts) as prof:
            chain.run(r)
        avg = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
        total = sum(getattr(e, key) for e in avg) or 1.0
        out[str(r)] = [
            {"op": e.key[:60], "self_ms": getattr(e, key) / 1000, "share": getattr(e, key) / total, "calls": e.count}
            for e in avg[:rows]
        ]
    return out


class Check:
    """Runs the parts in order under a time budget; each part's result, error or skip reason goes into `parts`."""

    def __init__(self, out: Path, budget_s: float, head: dict):
        self.out, self.budget_s, self.head, self.t0 = out, budget_s, head, time.perf_counter()
        self.parts: dict[str, dict] = {}

    def save(self) -> dict:
        """Writes gpu_check.json and .md as they stand (after every part: a run killed at its time limit keeps the
        parts it finished)."""
        doc = {**self.head, "total_s": self.elapsed(), "parts": self.parts}
        (self.out / "gpu_check.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        (self.out / "gpu_check.md").write_text(markdown(doc))
        return doc

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def part(self, name: str, fn) -> dict | None:
        if self.elapsed() > self.budget_s:
            self.parts[name] = {
                "status": "skipped",
                "why": f"time budget of {self.budget_s:.0f} s spent ({self.elapsed():.0f} s)",
            }
            print(f"gpu_check: {name}: skipped (budget spent)", flush=True)
            return None
        print(f"gpu_check: {name} (at {self.elapsed():.0f} s)", flush=True)
        t = time.perf_counter()
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 -- one part's failure must not lose the others' numbers
            traceback.print_exc()
            self.parts[name] = {
                "status": "failed",
                "error": f"{type(e).__name__}: {e}"[:2000],
                "seconds": time.perf_counter() - t,
            }
            self.save()
            return None
        self.parts[name] = {"status": "ok", "seconds": time.perf_counter() - t, **result}
        self.save()
        return result


def run(out: Path, mode: str = "full", budget_s: float = 360.0, dtype: str = "auto") -> Path:
    import torch

    from score_lit.perf import bench, bench_setup
    from score_lit.perf.step import StepBenchConfig, measure_steps

    plan = PLANS[mode]
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"gpu_check: {env}", flush=True)
    head = {"mode": mode, "environment": env, "what_is_timed": COVERS, "targets": TARGETS, "budget_s": budget_s}
    check = Check(out, budget_s, head)
    step_arch = plan["step"][0]
    for arch, family, frames, repeats in plan["prefill"]:
        cfg = bench_setup.BenchConfig(
            name=f"gpu_{arch}",
            family=family,
            arch=arch,
            frames=frames,
            size=plan["size"],
            ratios=RATIOS,
            warmup=plan["warmup"],
            repeats=repeats,
            video=bench_setup.SYNTHETIC,
            dtype=dtype,
            out_dir=str(out),
        )
        dev, model_dtype, attn = bench_setup.resolve_device(cfg)
        built = {}

        def build(cfg=cfg, dev=dev, model_dtype=model_dtype, attn=attn, built=built):
            t = time.perf_counter()
            built["adapter"] = bench_setup.build_adapter(cfg, dev, model_dtype, attn)
            return {
                "build_s": time.perf_counter() - t,
                "parameters": sum(p.numel() for p in built["adapter"].model.parameters()),
            }

        if check.part(f"build_{arch}_{family}", build) is None:
            continue
        adapter = built["adapter"]

        def prefill(cfg=cfg, adapter=adapter, dev=dev, model_dtype=model_dtype, attn=attn):
            doc = bench.measure(cfg, adapter, dev, model_dtype, attn)
            for res in doc["results"]:
                print("\n" + bench.table(res) + "\n", flush=True)
            rows = summarise(doc)
            return {"bench": doc, "summary": rows, "targets": check_targets(rows)}

        done = check.part(f"prefill_{arch}_{family}", prefill)
        if done is not None:

            def prof(cfg=cfg, adapter=adapter, dev=dev):
                chain = bench.Chain(
                    cfg, adapter, bench.timed_policy(cfg, adapter, dev), bench_setup.SYNTHETIC, max(cfg.frames)
                )
                return {"frames": max(cfg.frames), "top_ops": profile(chain, [1.0, 0.1])}

            check.part(f"profile_{arch}_{family}", prof)
        if arch == step_arch and family == plan["step"][1]:
            _, _, k, step_frames, warm, reps = plan["step"]
            for f in step_frames:

                def step(f=f, cfg=cfg, adapter=adapter):
                    return measure_steps(
                        StepBenchConfig(frames=f, size=cfg.size, group_size=k, warmup=warm, repeats=reps), adapter
                    )

                check.part(f"train_step_{arch}_{family}_K{k}_{f}f", step)
        del adapter, built
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    print(markdown(check.save()), flush=True)
    return out / "gpu_check.json"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder for gpu_check.json and gpu_check.md")
    p.add_argument("--tiny", action="store_true", help="the tiny random architectures (the CPU test of this script)")
    p.add_argument("--budget-s", type=float, default=360.0, help="no part starts after this many seconds (default 360)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bfloat16", "float32"],
        help="the models' dtype (auto: bfloat16 on a GPU, float32 on CPU; the test runs bfloat16 on CPU, as the GPU does)",
    )
    a = p.parse_args(argv)
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        print(f"gpu_check: error: {out} is a file; give a folder (it is created if missing)", file=sys.stderr)
        return 2
    print(run(out, "tiny" if a.tiny else "full", a.budget_s, a.dtype), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
