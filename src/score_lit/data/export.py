"""Write a generated split to disk once, as a dataset like any other: mp4 files plus a JSONL.

    python -m score_lit export-split --out artifacts/toy-bench --split test --n 200

    <out>/videos/<family>_<index>.mp4   H.264 High 4:4:4, qp 0 (lossless in YUV; RGB round trip within 2 grey levels)
    <out>/<split>.jsonl                 {"id", "video" (relative), "question", "options", "answer", "family", "evidence", "fps"}
    <out>/manifest.json                 what was generated (families, n, seed, frames, size, fps)

The folder is built under a temporary name and renamed into place, so a killed export leaves nothing
half-written; an existing export with the same manifest is kept as it is (written once).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .synthetic import SOURCES


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    """frames [F, H, W, 3] uint8 RGB -> an H.264 mp4 that decord and PyAV decode.

    Known: decord 0.6.0 cannot copy out yuv444p frames of some small widths (16 and 48 px seen: "from_size ==
    to_size" check); 32, 64, 80-176 px work. The toy exports are 64 px."""
    from fractions import Fraction

    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "preset": "veryfast"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def export_split(
    out: str | Path, split: str = "test", n: int = 200, families: list[str] | None = None, seed: int = 0,
    frames: int = 16, size: int = 64, fps: float = 2.0,
) -> Path:  # fmt: skip
    """Generate n samples per family of `split` and write them under `out`. Returns the JSONL path."""
    out = Path(out)
    families = families or sorted(SOURCES)
    manifest = {"split": split, "n": n, "families": families, "seed": seed, "frames": frames, "size": size, "fps": fps}
    jsonl = out / f"{split}.jsonl"
    if jsonl.is_file() and (out / "manifest.json").is_file():
        if json.loads((out / "manifest.json").read_text()) == manifest:
            return jsonl
        raise FileExistsError(f"{out} holds a different export (see its manifest.json): choose another --out or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "videos").mkdir()
        rows = []
        for fam in families:
            for i in range(n):
                s = SOURCES[fam](seed, split, i, frames=frames, size=size)
                rel = f"videos/{fam}_{i:05d}.mp4"
                write_mp4(tmp / rel, s.frames, fps)
                ev = {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.evidence.items()}
                rows.append({"id": s.id, "video": rel, "question": s.question, "options": s.options, "answer": s.answer,
                             "family": fam, "evidence": ev, "fps": fps})  # fmt: skip
        (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return jsonl
