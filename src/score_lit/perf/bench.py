"""Inference benchmark: where the time of one video question goes, per retention ratio.

    python -m score_lit bench conf/bench_cpu.yaml                  # CPU default, under 2 min on 2 cores
    python -m score_lit bench conf/bench_qwen2_5_vl_7b.yaml        # GPU: 7B architecture, bf16, 32/64/128 frames

The model is a local checkpoint (`path`) or a named architecture built in code with random weights
(`arch`, score_lit.perf.archs.ARCHS): prefill time does not depend on the weights' values. On the target device the
model is built directly there (`torch.device` context + dtype), so a 7B never materialises on CPU.

One timed run is the whole chain for one video, synchronised (torch.cuda.synchronize) at each border:

    decode   load_video (PyAV integrity probe + decord get_batch of the sampled frames, scaled in the decoder with
             decode_resize=decoder (the default) or resized after with processor + pad to size x size) -> uint8 tensor
             on the device; with video=synthetic (also where decord or PyAV is missing) drawing the frames in memory
    vision   adapter.encode: preprocessing (normalise, patchify, on the device) + vision tower + patch merger
    policy   surprise_state [LN(x); LN(dx)] + a randomly initialised policy (policy_name, policy_hidden wide; query_mlp
             also embeds the question) + global top-k
    prefill  gather the kept tokens and their FULL-sequence M-RoPE ids, embed the text, LLM forward over
             text + kept tokens (use_cache=True: the KV cache is built, as generate's prefill does),
             lm_head on the last position and argmax = the first output token
    e2e      wall time of the four together (to the first output token)
Time to first token (TTFT): per ratio, ttft_ms = decode_ms + vision_ms + policy_ms + prefill_ms, the sum of the
stages' medians (so the stacked bar of the picture adds up to it; the prefill ends with the first generated token,
lm_head + argmax, as generate's first step does); ttft_speedup = vanilla's ttft_ms / this ratio's, in the same run.
e2e_ms (the median of the measured sums) stays beside it as a check. The picture <name>.png (beside the JSON): one
stacked bar per ratio and frame count.
clock=cpu times each stage by the process's CPU time (time.process_time, every thread of the process) instead of
the wall clock: with threads=1 (and decord's single decoding thread) that is the one-core wall time the stage would
take on an idle machine, and other jobs on a shared machine barely move it (CPU only; a GPU's time is not in it).
Not timed: model build, tokenizing the fixed question (once). Warm-up runs first; the repeats
interleave the ratios (r1, r2, ..., r1, r2, ...) so slow drift hits every ratio alike. Per stage:
median, quartiles, min, max.

FLOP-ideal prefill: `prefill_flops` of score_lit.compressors.flops (its docstring has the formula: linear layers with
GQA and SwiGLU, causal attention, lm_head on the last position). With V visual tokens and L_text text
tokens, ideal_speedup(r) = prefill_flops(L_text + V) / prefill_flops(L_text + k),
k = ceil(r V) (config.keep_count). share_of_ideal = measured prefill speedup / ideal speedup;
policy_share = policy time / e2e time. Targets (the paper's claims): share_of_ideal >= 0.9 at r = 0.1,
policy_share < 0.01.

Gaps filled here: with `arch` the tokenizer is the tiny word-level one of score_lit.mllm.tiny (the
question has about as many tokens as with Qwen's BPE; the count used is in the JSON as text_tokens).
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from score_lit.compressors.flops import prefill_flops
from score_lit.config import ConfigError, PolicyConfig, keep_count, split_args
from score_lit.perf.bench_setup import (
    SYNTHETIC,
    SYNTHETIC_SPF,
    BenchConfig,
    build_adapter,
    load_bench_config,
    resolve_device,
    synthetic_video,
    video_source,
)

STAGES = ("decode", "vision", "policy", "prefill", "e2e")
TTFT_STAGES = ("decode", "vision", "policy", "prefill")  # ttft_ms = the sum of their medians (module docstring)


# ---------------------------------------------------------------------------------------------- FLOPs


def ideal_speedup(cfg_text: Any, text_tokens: int, visual_tokens: int, ratio: float) -> float:
    """prefill_flops(all tokens) / prefill_flops(text + ceil(ratio * visual)): the speedup compute alone allows."""
    kept = keep_count(ratio, visual_tokens)
    return prefill_flops(cfg_text, text_tokens + visual_tokens) / prefill_flops(cfg_text, text_tokens + kept)


# ---------------------------------------------------------------------------------------------- timing


class Chain:
    """decode -> vision -> policy -> prefill for one video at `frames` frames; `run(ratio)` returns ms per stage."""

    def __init__(self, cfg: BenchConfig, adapter, policy, video: str, frames: int):
        import torch

        self.torch, self.cfg, self.adapter, self.policy, self.video, self.frames = (
            torch,
            cfg,
            adapter,
            policy,
            video,
            frames,
        )
        self.dev = adapter.device
        batch = self._decode()
        prompts = self.prompts = adapter.tokenize(batch)  # once, untimed: the text part of the prompt up to the answer
        self.text_tokens = len(prompts.pre_ids[0]) + prompts.answer_start[0]
        self.visual = adapter.encode(batch)

    def _decode(self):
        from score_lit.data.video_qa import load_video
        from score_lit.types import VideoBatch

        if self.video == SYNTHETIC:
            video, spf = synthetic_video(self.frames, self.cfg.size), SYNTHETIC_SPF
        else:
            video, spf = load_video(
                self.video, self.frames, self.cfg.size, self.cfg.fit, decode_resize=self.cfg.decode_resize
            )
        x = self.torch.from_numpy(video).permute(0, 3, 1, 2)[None].to(self.dev)  # [1, F, 3, H, W] uint8
        return VideoBatch(
            ids=["bench"],
            frames=x,
            questions=[self.cfg.question],
            answers=["A"],
            options=[[]],
            answer_index=self.torch.tensor([-1]),
            seconds_per_frame=[spf],
        )

    def _policy(self, visual, ratio: float):
        from score_lit.rl.policy import topk_mask
        from score_lit.rl.state import surprise_state

        state = surprise_state(visual.tokens)
        if getattr(self.policy, "needs_question", False):  # the question's embedding is part of the policy's cost
            return topk_mask(self.policy(state, question=self.adapter.question_embedding(self.prompts)), ratio)
        return topk_mask(self.policy(state), ratio)  # [1, T*N] bool

    def _prefill(self, visual, keep):
        # The adapter's prefill: text + kept tokens (+ the family's video suffix) up to the answer, KV cache on,
        # lm_head on the last position only: the first output token.
        return self.adapter.prefill(visual, self.prompts, keep)

    def _mark(self, marks: list[float]) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize(self.dev)
        marks.append(time.process_time() if self.cfg.clock == "cpu" else time.perf_counter())

    def run(self, ratio: float) -> dict[str, float]:
        marks: list[float] = []
        with self.torch.inference_mode():
            self._mark(marks)
            batch = self._decode()
            self._mark(marks)
            visual = self.adapter.encode(batch)
            self._mark(marks)
            keep = self._policy(visual, ratio)
            self._mark(marks)
            self._prefill(visual, keep)
            self._mark(marks)
        ms = [1000 * (b - a) for a, b in zip(marks, marks[1:])]
        return dict(zip(STAGES, ms + [1000 * (marks[-1] - marks[0])]))


def _stats(xs: list[float]) -> dict[str, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "p25": q[0], "p75": q[2], "min": min(xs), "max": max(xs), "n": len(xs)}


def bench_frames(cfg: BenchConfig, adapter, policy, video: str, frames: int, ratios: list[float]) -> dict:
    """Warm-up, then `repeats` interleaved rounds over the ratios; per ratio the stage statistics and the speedups."""
    chain = Chain(cfg, adapter, policy, video, frames)
    v, text = chain.visual.num_tokens, chain.text_tokens
    print(f"frames {frames}: {v} visual tokens (grid {chain.visual.grid}), {text} text tokens", flush=True)
    for i in range(cfg.warmup):
        for r in ratios:
            chain.run(r)
        print(f"frames {frames}: warm-up {i + 1}/{cfg.warmup} done", flush=True)
    times: dict[float, list[dict]] = {r: [] for r in ratios}
    for i in range(cfg.repeats):
        for r in ratios:
            times[r].append(chain.run(r))
        line = "  ".join(f"r{r:.2f} {times[r][-1]['prefill']:.1f}/{times[r][-1]['e2e']:.1f}" for r in ratios)
        print(f"frames {frames} repeat {i + 1}/{cfg.repeats}: prefill/e2e ms  {line}", flush=True)
    text_cfg = adapter.model.config.text_config
    rows = []
    for r in ratios:
        spread = {s: _stats([t[s] for t in times[r]]) for s in STAGES}
        med = {f"{s}_ms": spread[s]["median"] for s in STAGES}
        k = keep_count(r, v)
        ttft = sum(med[f"{s}_ms"] for s in TTFT_STAGES)
        rows.append(dict(retention_ratio=r, kept_tokens=k, seq_len=text + k, **med, ttft_ms=ttft, spread_ms=spread))
    full = next(row for row in rows if row["retention_ratio"] == 1.0)
    for row in rows:
        row["ttft_speedup"] = full["ttft_ms"] / row["ttft_ms"]
        row["prefill_speedup"] = full["prefill_ms"] / row["prefill_ms"]
        row["ideal_speedup"] = ideal_speedup(text_cfg, text, v, row["retention_ratio"])
        row["share_of_ideal"] = row["prefill_speedup"] / row["ideal_speedup"]
        # Secondary, from the fastest runs: less sensitive to other load on a shared machine than the medians.
        best = full["spread_ms"]["prefill"]["min"] / row["spread_ms"]["prefill"]["min"]
        row["share_of_ideal_from_min"] = best / row["ideal_speedup"]
        row["policy_share"] = row["policy_ms"] / row["e2e_ms"]
    at10 = [row for row in rows if abs(row["retention_ratio"] - 0.1) < 1e-9]
    targets = {}
    if at10:
        share, pol = at10[0]["share_of_ideal"], at10[0]["policy_share"]
        targets = {
            "share_of_ideal_at_0.1": share,
            "share_of_ideal_at_0.1_ge_0.9": share >= 0.9,
            "policy_share_at_0.1": pol,
            "policy_share_at_0.1_lt_0.01": pol < 0.01,
        }
    grid = list(chain.visual.grid)
    return {"frames": frames, "grid": grid, "visual_tokens": v, "text_tokens": text, "ratios": rows, "targets": targets}


def table(result: dict) -> str:
    """A markdown table of one frame count's results (medians; prefill with its interquartile range)."""
    head = (
        "| ratio | kept | seq | decode ms | vision ms | policy ms | prefill ms [p25, p75] | TTFT ms | TTFT speedup "
        "| prefill speedup | ideal | share of ideal | policy share |"
    )
    lines = [
        f"frames {result['frames']}, {result['visual_tokens']} visual + {result['text_tokens']} text tokens",
        "",
        head,
        "|" + "---|" * 13,
    ]
    for r in result["ratios"]:
        p = r["spread_ms"]["prefill"]
        lines.append(
            f"| {r['retention_ratio']:.2f} | {r['kept_tokens']} | {r['seq_len']} | {r['decode_ms']:.1f} | {r['vision_ms']:.1f} "
            f"| {r['policy_ms']:.2f} | {r['prefill_ms']:.1f} [{p['p25']:.1f}, {p['p75']:.1f}] | {r['ttft_ms']:.1f} "
            f"| {r['ttft_speedup']:.2f}x | {r['prefill_speedup']:.2f}x | {r['ideal_speedup']:.2f}x "
            f"| {100 * r['share_of_ideal']:.0f}% | {100 * r['policy_share']:.2f}% |"
        )
    return "\n".join(lines)


def plot_ttft(doc: dict, path: Path) -> Path:
    """Where the time to first token goes: per frame count one panel, per ratio one bar stacked decode / vision /
    policy / prefill (medians, ms), its total and its speedup over vanilla written above it. -> path (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = doc["results"]
    fig, axes = plt.subplots(1, len(results), figsize=(max(6.0, 4.5 * len(results)), 4.5), squeeze=False)
    colours = {"decode": "#8c8c8c", "vision": "#4c72b0", "policy": "#dd8452", "prefill": "#55a868"}
    for ax, res in zip(axes[0], results):
        rows = res["ratios"]
        x = list(range(len(rows)))
        bottom = [0.0] * len(rows)
        for s in TTFT_STAGES:
            h = [r[f"{s}_ms"] for r in rows]
            ax.bar(x, h, bottom=bottom, color=colours[s], label=s, width=0.7)
            bottom = [b + v for b, v in zip(bottom, h)]
        for i, r in enumerate(rows):
            ax.text(
                i, r["ttft_ms"], f"{r['ttft_ms']:.0f}\n{r['ttft_speedup']:.2f}x", ha="center", va="bottom", fontsize=8
            )
        ax.set_xticks(x, [f"{r['retention_ratio']:g}" for r in rows])
        ax.set_xlabel("retention ratio")
        ax.set_ylabel("ms (medians)")
        ax.set_ylim(0, 1.35 * max(r["ttft_ms"] for r in rows))
        ax.set_title(f"{res['frames']} frames, {res['visual_tokens']} visual tokens", fontsize=9)
        ax.legend(loc="upper center", ncol=4, fontsize=8, frameon=False)
    env = doc["environment"]
    cfg = doc["config"]
    fig.suptitle(
        f"time to first token (medians; speedup vs ratio 1)\n{cfg['path'] or cfg['arch']} on {env['device_name']} "
        f"({env['dtype']}, {env['threads']} threads, clock {cfg.get('clock', 'wall')}), "
        f"decode_resize={cfg.get('decode_resize', 'processor')}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def environment(dev, dtype: str, attn: str) -> dict:
    import torch
    import transformers

    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine())
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "device": str(dev),
        "device_name": name,
        "threads": torch.get_num_threads(),
        "dtype": dtype,
        "attn_implementation": attn,
    }


def output_path(cfg: BenchConfig, env: dict) -> Path:
    """<out_dir>/<name>.json on CPU; on GPU <name>_<frames>f_<device>.json (e.g. ..._32-64-128f_nvidia-h100-80gb-hbm3)."""
    if not env["device"].startswith("cuda"):
        return Path(cfg.out_dir) / f"{cfg.name}.json"
    slug = re.sub(r"[^a-z0-9]+", "-", env["device_name"].lower()).strip("-")
    return Path(cfg.out_dir) / f"{cfg.name}_{'-'.join(map(str, cfg.frames))}f_{slug}.json"


def timed_policy(cfg: BenchConfig, adapter, dev):
    """The policy bench times: cfg.policy_name, cfg.policy_hidden wide, randomly initialised (seed cfg.seed; its cost
    does not depend on its weights), on `dev`, in eval mode."""
    import torch

    from score_lit.rl.policy import build_policy

    torch.manual_seed(cfg.seed)
    return (
        build_policy(2 * adapter.hidden_size, PolicyConfig(name=cfg.policy_name, hidden=cfg.policy_hidden))
        .to(dev)
        .eval()
    )


def measure(cfg: BenchConfig, adapter, dev, dtype: str, attn: str) -> dict:
    """Every frame count of cfg on a built adapter, timing `timed_policy`: the JSON document (config, model, policy,
    video, environment, results)."""
    n_params = sum(p.numel() for p in adapter.model.parameters())
    policy = timed_policy(cfg, adapter, dev)
    ratios = sorted(set([1.0] + [float(r) for r in cfg.ratios]), reverse=True)
    env = environment(dev, dtype, attn)
    with tempfile.TemporaryDirectory() as tmp:
        video = video_source(cfg, tmp)
        print(f"bench: video {video}", flush=True)
        results = [bench_frames(cfg, adapter, policy, video, f, ratios) for f in cfg.frames]
    timed = {
        "class": type(policy).__name__,
        "parameters": sum(p.numel() for p in policy.parameters()),
    }  # what was timed
    return {
        "config": asdict(cfg),
        "model": {"arch": None if cfg.path else cfg.arch, "path": cfg.path, "parameters": n_params},
        "policy": timed,
        "video": video,
        "environment": env,
        "results": results,
    }


def run(cfg: BenchConfig) -> Path:
    """The whole benchmark: build, time every frame count, write the JSON, print the tables; returns the JSON path."""
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev, dtype, attn = resolve_device(cfg)
    t0 = time.perf_counter()
    print(f"bench: building {cfg.path or cfg.arch} on {dev} ({dtype}, {attn})", flush=True)
    adapter = build_adapter(cfg, dev, dtype, attn)
    n_params = sum(p.numel() for p in adapter.model.parameters())
    print(f"bench: model ready in {time.perf_counter() - t0:.1f} s, {n_params / 1e6:.1f} M parameters", flush=True)
    out = measure(cfg, adapter, dev, dtype, attn)
    path = output_path(cfg, out["environment"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"bench: picture {plot_ttft(out, path.with_suffix('.png'))}", flush=True)  # beside the JSON
    for res in out["results"]:
        print("\n" + table(res) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m score_lit bench [CONFIG.yaml ...] [key=value ...]`; prints the JSON's path as its last line."""
    cfg = load_bench_config(*split_args(list(argv or [])))  # before the heavy imports
    print(run(cfg), flush=True)
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(main(sys.argv[1:]))
    except ConfigError as e:
        print(f"score_lit bench: error: {e}", file=sys.stderr)
        sys.exit(2)
