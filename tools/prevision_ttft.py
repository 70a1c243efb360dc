"""Time to first token of vanilla, SCORE and SCORE behind the pre-vision gate, end to end on bench's model and video.

    PYTHONPATH=src .venv/bin/python tools/prevision_ttft.py conf/bench_cpu.yaml frames=[16,32,64] --ratio 0.1 \
        --out runs/bench/prevision_ttft.json

Any `python -m score_lit bench` config and override (the model, video, size, warm-up and repeats are bench's). Per
frame count, one chain per variant, interleaved (vanilla, score, prevision, vanilla, ...) after `warmup` untimed
rounds; medians of `repeats` timed rounds:

    vanilla    decode -> vision tower on every group -> (no policy) -> prefill over every token
    score      decode -> vision tower on every group -> policy + top-k at r -> prefill over the kept tokens
    prevision  decode -> gate (pixel surprise, unit 0 always) keeps min(1, looseness r) -> vision tower on those
               groups only (mllm.encode_groups) -> policy + top-k at r among them -> prefill over the kept tokens

The policy is bench's randomly initialised one (its cost does not depend on its weights), so which tokens are kept
is not what a trained policy keeps; the counts are. ttft_ms = decode + vision + policy + prefill, and ttft_no_decode_ms
leaves decoding out. The speedups are vanilla's median over the variant's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("args", nargs="*", help="bench config files and key=value overrides")
    ap.add_argument("--ratio", type=float, default=0.1)
    ap.add_argument("--looseness", type=float, default=3.0, help="the gate keeps looseness x the final budget")
    ap.add_argument("--floor", type=float, default=0.0, help="and at least this share of the tokens")
    ap.add_argument("--out", default="runs/bench/prevision_ttft.json")
    ns = ap.parse_args(argv)

    import torch

    from score_lit.compressors.prevision import gate_scores
    from score_lit.compressors.topk import keep_top
    from score_lit.config import split_args
    from score_lit.perf.bench import Chain, environment, timed_policy
    from score_lit.perf.bench_setup import build_adapter, load_bench_config, resolve_device, video_source
    from score_lit.rl.state import surprise_state

    cfg = load_bench_config(*split_args(ns.args))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev, dtype, attn = resolve_device(cfg)
    adapter = build_adapter(cfg, dev, dtype, attn)
    policy = timed_policy(cfg, adapter, dev)
    r = ns.ratio

    def mark(marks):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        marks.append(time.perf_counter())

    def run(chain: Chain, variant: str) -> dict:
        marks: list[float] = []
        with torch.inference_mode():
            mark(marks)
            batch = chain._decode()
            mark(marks)
            if variant == "prevision":
                video = adapter.video_inputs(batch)
                share = min(1.0, max(ns.looseness * r, ns.floor))
                pre = keep_top(gate_scores(adapter.group_inputs(video)), share, video.grid)
                visual = adapter.encode_groups(video, pre)
            else:
                visual = adapter.encode(batch)
            mark(marks)
            if variant == "vanilla":
                keep = torch.ones(1, visual.num_tokens, dtype=torch.bool, device=dev)
            else:
                logits = policy(surprise_state(visual.tokens)).float()
                if variant == "prevision":
                    logits = logits.masked_fill(~pre.to(dev), float("-inf"))
                keep = keep_top(logits, r, visual.grid)
            mark(marks)
            chain._prefill(visual, keep)
            mark(marks)
        ms = [1000 * (b - a) for a, b in zip(marks, marks[1:])]
        out = dict(zip(("decode_ms", "vision_ms", "policy_ms", "prefill_ms"), ms))
        out["ttft_ms"] = sum(ms)
        out["ttft_no_decode_ms"] = sum(ms[1:])
        out["kept"] = int(keep.sum())
        out["vision_groups"] = int(pre.sum()) if variant == "prevision" else visual.num_tokens
        return out

    variants = ("vanilla", "score", "prevision")
    results = []
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        video = video_source(cfg, tmp)
        for frames in cfg.frames:
            chain = Chain(cfg, adapter, policy, video, frames)
            for _ in range(cfg.warmup):
                for v in variants:
                    run(chain, v)
            times: dict[str, list[dict]] = {v: [] for v in variants}
            for i in range(cfg.repeats):
                for v in variants:
                    times[v].append(run(chain, v))
                line = "  ".join(f"{v} {times[v][-1]['ttft_ms']:.0f}" for v in variants)
                print(f"frames {frames} repeat {i + 1}/{cfg.repeats}: ttft ms  {line}", flush=True)
            rows = {}
            for v in variants:
                keys = [k for k in times[v][0] if k.endswith("_ms")]
                rows[v] = {k: statistics.median(t[k] for t in times[v]) for k in keys}
                rows[v]["ttft_ms_all"] = [t["ttft_ms"] for t in times[v]]
                rows[v]["kept"], rows[v]["vision_groups"] = times[v][0]["kept"], times[v][0]["vision_groups"]
            for v in variants:
                rows[v]["speedup"] = rows["vanilla"]["ttft_ms"] / rows[v]["ttft_ms"]
                rows[v]["speedup_no_decode"] = rows["vanilla"]["ttft_no_decode_ms"] / rows[v]["ttft_no_decode_ms"]
            results.append({"frames": frames, "visual_tokens": chain.visual.num_tokens, "variants": rows})
            print(table(results[-1], r), flush=True)
    doc = {
        "ratio": r,
        "looseness": ns.looseness,
        "floor": ns.floor,
        "config": vars(cfg),
        "environment": environment(dev, dtype, attn),
        "results": results,
    }
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(ns.out)
    return 0


def table(res: dict, ratio: float) -> str:
    head = (
        f"\nframes {res['frames']} ({res['visual_tokens']} visual tokens), ratio {ratio}\n\n"
        "| variant | vision groups | kept | decode ms | vision ms | policy ms | prefill ms | TTFT ms | speedup "
        "| TTFT w/o decode ms | speedup |\n" + "|---" * 11 + "|"
    )
    lines = [head]
    for v, x in res["variants"].items():
        lines.append(
            f"| {v} | {x['vision_groups']} | {x['kept']} | {x['decode_ms']:.0f} | {x['vision_ms']:.0f} "
            f"| {x['policy_ms']:.0f} | {x['prefill_ms']:.0f} | {x['ttft_ms']:.0f} | {x['speedup']:.2f}x "
            f"| {x['ttft_no_decode_ms']:.0f} | {x['speedup_no_decode']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
