"""The evidence benchmark's families (score_lit.toy.evidence): what each promises, checked on pixels."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from score_lit.toy.evidence import (
    COLOURS,
    DIRECTIONS,
    FAMILIES,
    SETTINGS,
    VERSION,
    VERSIONS,
    FamilyParamError,
    check_params,
)

CELL = 16
N = 40  # samples per family per check


def cell_of(video: np.ndarray, r: int, c: int) -> np.ndarray:
    return video[:, r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL].astype(np.float32)


@pytest.mark.parametrize("fam", sorted(FAMILIES))
def test_deterministic_and_sized(fam):
    a, b, c = FAMILIES[fam](0, "test", 5), FAMILIES[fam](0, "test", 5), FAMILIES[fam](0, "test", 6)
    assert np.array_equal(a.frames, b.frames) and a.question == b.question and a.answer == b.answer
    assert not np.array_equal(a.frames, c.frames)
    assert a.frames.shape == (32, 96, 96, 3) and a.frames.dtype == np.uint8
    assert a.answer in a.options
    # 16 temporal units x 6 x 6 merged tokens = 576 at the default setting; 32 x 8 x 8 = 2048 long
    for name, want in (("default", 576), ("long", 2048)):
        f, s = SETTINGS[name]["frames"], SETTINGS[name]["size"]
        x = FAMILIES[fam](0, "test", 1, frames=f, size=s)
        assert (x.frames.shape[0] // 2) * (s // CELL) ** 2 == want


def test_train_and_test_digits_are_disjoint():
    train = {o["digit_index"] for i in range(N) for o in FAMILIES["colour"](0, "train", i).evidence["objects"]}
    test = {o["digit_index"] for i in range(N) for o in FAMILIES["colour"](0, "test", i).evidence["objects"]}
    assert train and test and not train & test


def _shown(video, obj) -> bool:
    """The object's 2x2 block differs from the frames before/after it during its frames (it is there)."""
    f0, f1 = obj["frames"]
    r, c = obj["cell"]
    block = video[:, r * CELL : r * CELL + 32, c * CELL : c * CELL + 32].astype(np.float32)
    inside = block[f0:f1]
    return bool(np.all(inside == inside[0])) and (f0 == 0 or np.abs(inside[0] - block[f0 - 1]).mean() > 5)


def test_colour_asks_one_of_several_coloured_digits():
    for i in range(N):
        s = FAMILIES["colour"](0, "test", i)
        objs, (asked,) = s.evidence["objects"], s.evidence["asked"]
        assert len(objs) == 4 and len({o["label"] for o in objs}) == 4 and len({o["colour"] for o in objs}) == 4
        assert s.question == f"which {objs[asked]['colour']} digit appeared ?" and s.answer == objs[asked]["label"]
        for o in objs:
            assert _shown(s.frames, o)
            f0, (r, c) = o["frames"][0], o["cell"]
            block = s.frames[f0, r * CELL : r * CELL + 32, c * CELL : c * CELL + 32].reshape(-1, 3).astype(int)
            ink = block[np.abs(block - np.array(COLOURS[o["colour"]])).sum(-1) < 40]  # pixels in the digit's colour
            assert len(ink) >= 20, (i, o)
        # more evidence than a 5% budget (29 of 576 tokens) could keep of every candidate
        assert sum(4 * (o["frames"][1] - o["frames"][0]) // 2 for o in objs) > 29


def test_order_shows_one_digit_after_the_other():
    seen = set()
    for i in range(N):
        s = FAMILIES["order"](0, "test", i)
        a, b = s.evidence["objects"]
        assert a["frames"][1] <= b["frames"][0] and a["label"] != b["label"] and a["cell"] != b["cell"]
        assert _shown(s.frames, a) and _shown(s.frames, b)
        want = b["label"] if s.question.endswith("last ?") else a["label"]
        assert s.answer == want
        seen.add(s.question)
    assert seen == {"which digit appeared first ?", "which digit appeared last ?"}


def test_move_slides_one_cell_at_a_time_in_the_answered_direction():
    answers = set()
    for i in range(N):
        s = FAMILIES["move"](0, "test", i)
        objs = s.evidence["objects"]
        dr, dc = DIRECTIONS[s.answer]
        assert 3 <= len(objs) <= 5
        for p, q in zip(objs, objs[1:]):
            assert (q["cell"][0] - p["cell"][0], q["cell"][1] - p["cell"][1]) == (dr, dc)
            assert p["frames"][1] == q["frames"][0]
        for o in objs:
            r, c = o["cell"]
            assert 0 <= r <= 4 and 0 <= c <= 4
            f0, f1 = o["frames"]
            assert np.all(
                s.frames[f0:f1, r * CELL : r * CELL + 32, c * CELL : c * CELL + 32]
                == s.frames[f0, r * CELL : r * CELL + 32, c * CELL : c * CELL + 32]
            )
        answers.add(s.answer)
    assert answers == set(DIRECTIONS)


@pytest.mark.parametrize("fam", sorted(FAMILIES))
def test_largest_change_is_mostly_distractors(fam):
    """Property 4: ranking 16-px cells by their change from the previous unit (the pixel-level 'surprise'),
    the top 5% (29 of 576) are mostly distractor cells, not the evidence."""
    hits = []
    for i in range(10):
        s = FAMILIES[fam](0, "test", i)
        units = s.frames[::2].astype(np.float32)  # [16, 96, 96, 3], one frame per unit
        change = np.abs(np.diff(units, axis=0)).reshape(15, 6, 16, 6, 16, 3).mean(axis=(2, 4, 5))  # [15, 6, 6]
        top = np.argsort(change.ravel())[::-1][:29]
        ev = np.zeros((15, 6, 6), bool)
        for o in s.evidence["objects"]:
            u0, u1 = o["frames"][0] // 2, o["frames"][1] // 2
            r, c = o["cell"]
            ev[max(u0 - 1, 0) : u1, r : r + 2, c : c + 2] = True
        hits.append(ev.ravel()[top].mean())
    assert np.mean(hits) < 0.5, hits


@pytest.mark.parametrize(
    "fam, kw, word",
    [
        ("colour", dict(frames=32, size=16), "size=16"),
        ("colour", dict(frames=32, size=96, objects=5), "objects=5"),
        ("order", dict(frames=8, size=96), "frames=8"),
        ("move", dict(frames=32, size=32), "size=32"),
        ("colour", dict(frames=32, size=96, distractors=30), "distractors=30"),
        ("order", dict(frames=31, size=96), "frames=31"),
        ("move", dict(frames=32, size=100), "size=100"),
    ],
)
def test_params_that_cannot_hold_a_family_are_refused(fam, kw, word):
    with pytest.raises(FamilyParamError, match=word):
        check_params(fam, **kw)
    with pytest.raises(FamilyParamError, match=word):
        FAMILIES[fam](0, "test", 0, **kw)


def test_export_cli_refuses_bad_parameters_in_one_line(tmp_path):
    out = tmp_path / "bench"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "score_lit",
            "export-split",
            "--benchmark",
            "evidence",
            "--size",
            "16",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "size=16" in lines[0], r.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_export_and_read_back(tmp_path):
    from score_lit.data.benchmarks import load_benchmark
    from score_lit.data.video_qa import load_video
    from score_lit.toy.export import export_split

    jsonl = export_split(tmp_path / "ev", n=2, benchmark="evidence", setting="default")
    man = json.loads((tmp_path / "ev" / "manifest.json").read_text())
    assert man["benchmark"] == "evidence" and man["version"] == VERSION and man["setting"] == "default"
    assert (man["frames"], man["size"], man["families"]) == (32, 96, ["colour", "order"])
    bench = load_benchmark("evidence", str(tmp_path / "ev"))
    assert bench.name == f"evidence-v{VERSION}" and len(bench.records) == 4 and not bench.problems
    assert {r.meta["family"] for r in bench.records} == {"colour", "order"}
    frames, _ = load_video(bench.records[0].video, 32, 96, "pad", None)
    s = FAMILIES[bench.records[0].meta["family"]](0, "test", 0)
    assert frames.shape == (32, 96, 96, 3) and np.abs(frames.astype(int) - s.frames.astype(int)).max() <= 3
    assert jsonl.name == "test.jsonl"
    export_split(tmp_path / "toy", n=1, families=["flash"])
    with pytest.raises(FileNotFoundError, match="not an evidence-benchmark export"):
        load_benchmark("evidence", str(tmp_path / "toy"))


def test_version_2_is_version_1_without_move(tmp_path, capsys):
    """Version 2 only drops `move` from the exported set: colour's and order's rows and videos are version 1's. An
    export of version 1 still reads, named evidence-v1, with a note that it is not the current version."""
    from score_lit.data.benchmarks import load_benchmark
    from score_lit.toy.export import export_split

    assert VERSION == 2 and VERSIONS == {1: ("colour", "order", "move"), 2: ("colour", "order")}
    v1 = export_split(tmp_path / "v1", n=1, benchmark="evidence", version=1)
    v2 = export_split(tmp_path / "v2", n=1, benchmark="evidence")
    assert json.loads((tmp_path / "v1" / "manifest.json").read_text())["version"] == 1
    rows1 = [json.loads(line) for line in v1.read_text().splitlines()]
    rows2 = [json.loads(line) for line in v2.read_text().splitlines()]
    assert [r["family"] for r in rows1] == ["colour", "order", "move"] and [r["family"] for r in rows2] == [
        "colour",
        "order",
    ]
    assert rows2 == rows1[:2]
    assert load_benchmark("evidence", str(tmp_path / "v1")).name == "evidence-v1"
    assert "is version 1 of the evidence benchmark, the current one is 2" in capsys.readouterr().err
    assert load_benchmark("evidence", str(tmp_path / "v2")).name == "evidence-v2" and capsys.readouterr().err == ""
    for r in rows2:
        assert (tmp_path / "v2" / r["video"]).read_bytes() == (tmp_path / "v1" / r["video"]).read_bytes()


@pytest.mark.parametrize(
    "argv, says",
    [
        (["--benchmark", "evidence", "--version", "3"], "--version 3: use one of [1, 2]"),
        (["--version", "1"], "--version 1: only the evidence benchmark has versions"),
    ],
)
def test_export_refuses_an_unknown_version_in_one_line(tmp_path, argv, says):
    out = tmp_path / "bench"
    r = subprocess.run(
        [sys.executable, "-m", "score_lit", "export-split", *argv, "--out", str(out)], capture_output=True, text=True
    )
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and says in lines[0], r.stderr
    assert not out.exists()
