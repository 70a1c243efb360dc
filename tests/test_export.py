"""The generated test split on disk: real mp4 files that decord decodes back to the generated frames."""

import json

import decord
import numpy as np
import pytest

from score_lit.toy.export import export_split
from score_lit.toy.synthetic import FAMILIES


def test_export_decodes_back_with_decord(tmp_path):
    out = tmp_path / "bench"
    jsonl = export_split(out, split="test", n=2, families=["flash", "distracted"], frames=8, size=32, fps=2.0)
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [r["family"] for r in rows] == ["flash", "flash", "distracted", "distracted"]
    for r in rows:
        idx = int(r["id"].rsplit("/", 1)[1])
        want = FAMILIES[r["family"]](0, "test", idx, frames=8, size=32)
        vr = decord.VideoReader(str(out / r["video"]))
        got = vr.get_batch(list(range(len(vr)))).asnumpy()
        assert got.shape == want.frames.shape
        assert np.abs(got.astype(int) - want.frames.astype(int)).max() <= 3  # lossless H.264 4:4:4, RGB<->YUV rounding
        assert r["answer"] == want.answer and r["options"][int(r["answer"])] == r["answer"]
        assert r["evidence"]["cell"] == list(want.evidence["cell"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_export_is_written_once(tmp_path):
    out = tmp_path / "bench"
    jsonl = export_split(out, n=1, families=["flash"], frames=4, size=16)
    mtime = jsonl.stat().st_mtime_ns
    assert export_split(out, n=1, families=["flash"], frames=4, size=16) == jsonl
    assert jsonl.stat().st_mtime_ns == mtime
    with pytest.raises(FileExistsError, match="different export"):
        export_split(out, n=2, families=["flash"], frames=4, size=16)


def test_export_split_command(tmp_path, capsys):
    from score_lit.cli import main

    assert (
        main(
            [
                "export-split",
                "--out",
                str(tmp_path / "b"),
                "--n",
                "1",
                "--families",
                "flash",
                "--frames",
                "4",
                "--size",
                "16",
            ]
        )
        == 0
    )
    jsonl = tmp_path / "b" / "test.jsonl"
    assert capsys.readouterr().out.strip() == str(jsonl)
    assert json.loads(jsonl.read_text())["family"] == "flash"
