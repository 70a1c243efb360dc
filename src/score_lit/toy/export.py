"""Write a generated split to disk once, as a dataset like any other: mp4 files plus a JSONL.

    python -m score_lit export-split --out artifacts/toy-bench --split test --n 200
    python -m score_lit export-split --benchmark evidence --setting default --out artifacts/evidence-bench
    python -m score_lit export-split --benchmark evidence --setting long --out artifacts/evidence-bench-long --n 50

    <out>/videos/<family>_<index>.mp4   H.264 High 4:4:4, qp 0 (lossless in YUV; RGB round trip within 2 grey levels)
    <out>/<split>.jsonl                 {"id", "video" (relative), "question", "options", "answer", "family", "evidence", "fps"}
    <out>/manifest.json                 what was generated (benchmark, version, setting, families, n, seed, frames, size, fps)

The folder is built under a temporary name and renamed into place, so a killed export leaves nothing
half-written; an existing export with the same manifest is kept as it is (written once).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np

from score_lit.data import FAMILIES, build_family
from score_lit.toy import evidence


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
    out: str | Path,
    split: str = "test",
    n: int = 200,
    families: list[str] | None = None,
    seed: int = 0,
    frames: int | None = None,
    size: int | None = None,
    fps: float = 2.0,
    benchmark: str = "toy",
    setting: str | None = None,
    version: int | None = None,
) -> Path:
    """Generate n samples per family of `split` and write them under `out`. Returns the JSONL path.

    benchmark "toy": the first families (default stitched, flash, distracted) at frames x size.
    benchmark "evidence": score_lit.toy.evidence's families at a named setting ("default": 32 frames of
    96 px, "long": 64 of 128), unless frames / size are given; `version` (default the current one) picks the
    default families (evidence.VERSIONS) and is recorded in the manifest.
    Parameters that cannot hold a family stop here, before anything is written (one line naming it)."""
    out = Path(out)
    manifest: dict = {"benchmark": benchmark, "split": split}
    if benchmark == "evidence":
        version = evidence.VERSION if version is None else version
        if version not in evidence.VERSIONS:
            raise evidence.FamilyParamError(f"--version {version}: use one of {sorted(evidence.VERSIONS)}")
        if setting is not None and setting not in evidence.SETTINGS:
            raise evidence.FamilyParamError(f"--setting {setting!r}: use one of {sorted(evidence.SETTINGS)}")
        shape = evidence.SETTINGS[setting or "default"]
        named = (frames is None or frames == shape["frames"]) and (size is None or size == shape["size"])
        frames, size = shape["frames"] if frames is None else frames, shape["size"] if size is None else size
        families = families or list(evidence.VERSIONS[version])
        manifest.update(version=version, setting=(setting or "default") if named else "custom")
    elif version is not None:
        raise evidence.FamilyParamError(
            f"--version {version}: only the evidence benchmark has versions (--benchmark evidence)"
        )
    elif benchmark == "toy":
        frames, size = frames or 16, size or 64
        families = families or ["flash", "stitched", "distracted"]
    else:
        raise evidence.FamilyParamError(f"--benchmark {benchmark!r}: use toy or evidence")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise evidence.FamilyParamError(f"--families: unknown {unknown}; available: {sorted(FAMILIES)}")
    if n <= 0:
        raise evidence.FamilyParamError(f"--n {n}: the number of samples per family must be positive")
    for fam in families:
        if fam in evidence.FAMILIES:
            evidence.check_params(fam, frames, size)
    manifest.update(n=n, families=families, seed=seed, frames=frames, size=size, fps=fps)
    if benchmark == "toy":  # the first toy's manifests (written before the evidence benchmark) stay valid
        manifest = {k: v for k, v in manifest.items() if k != "benchmark"}
    jsonl = out / f"{split}.jsonl"
    if jsonl.is_file() and (out / "manifest.json").is_file():
        if json.loads((out / "manifest.json").read_text()) == manifest:
            return jsonl
        raise FileExistsError(
            f"{out} holds a different export (see its manifest.json): choose another --out or delete it"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "videos").mkdir()
        rows = []
        for fam in families:
            for i in range(n):
                s = build_family(fam)(seed, split, i, frames=frames, size=size)
                rel = f"videos/{fam}_{i:05d}.mp4"
                write_mp4(tmp / rel, s.frames, fps)
                ev = {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.evidence.items()}
                rows.append(
                    {
                        "id": s.id,
                        "video": rel,
                        "question": s.question,
                        "options": s.options,
                        "answer": s.answer,
                        "family": fam,
                        "evidence": ev,
                        "fps": fps,
                    }
                )
        (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return jsonl
