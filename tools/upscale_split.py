"""Upscale an exported split's videos (score_lit export-split) to a larger frame size, for measuring what the two
decode paths (eval.decode_resize=decoder | processor) change where the source is larger than the model's size.

    PYTHONPATH=src python tools/upscale_split.py artifacts/evidence-bench /tmp/ev240 --size 240

Each video is decoded whole (decord, no resize), upscaled with torch bicubic (align_corners=False, clamped and
rounded to uint8) and written lossless (score_lit.toy.export.write_mp4: H.264 qp 0, yuv444p) at the same frame rate;
test.jsonl (and manifest.json, when there) are copied unchanged.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def upscale(src: Path, dst: Path, size: int) -> int:
    import decord
    import torch
    import torch.nn.functional as F

    from score_lit.toy.export import write_mp4

    rows = [json.loads(line) for line in (src / "test.jsonl").read_text().splitlines() if line.strip()]
    done = set()
    for row in rows:
        rel = row["video"]
        if rel in done:
            continue
        done.add(rel)
        vr = decord.VideoReader(str(src / rel), ctx=decord.cpu(0), num_threads=1)
        x = torch.from_numpy(vr.get_batch(list(range(len(vr)))).asnumpy()).permute(0, 3, 1, 2).float()
        y = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp_(0, 255).round_()
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        write_mp4(out, y.to(torch.uint8).permute(0, 2, 3, 1).numpy(), float(vr.get_avg_fps()))
    shutil.copy(src / "test.jsonl", dst / "test.jsonl")
    if (src / "manifest.json").is_file():
        shutil.copy(src / "manifest.json", dst / "manifest.json")
    return len(done)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="upscale_split", description=__doc__.splitlines()[0])
    p.add_argument("src", help="an exported split folder (test.jsonl + videos/)")
    p.add_argument("dst", help="the folder written (created)")
    p.add_argument("--size", type=int, required=True, help="frame side of the written videos, px")
    a = p.parse_args(argv)
    src, dst = Path(a.src), Path(a.dst)
    if not (src / "test.jsonl").is_file():
        print(
            f"upscale_split: error: {src} has no test.jsonl (export one with python -m score_lit export-split)",
            file=sys.stderr,
        )
        return 2
    if a.size < 16:
        print(f"upscale_split: error: --size {a.size}: use a frame side of 16 px or more", file=sys.stderr)
        return 2
    dst.mkdir(parents=True, exist_ok=True)
    print(f"upscale_split: {upscale(src, dst, a.size)} videos -> {dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
