"""Benchmark readers on tiny fixtures written in each published layout (real mp4 files): ids, the exact prompt
(options block and post-prompt), letters, answer letter, family, video path, Problems, limit, and decoding."""

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from score_lit.data.benchmarks import BENCHMARKS, load_benchmark
from score_lit.data.video_qa import VideoQADataset
from score_lit.toy.export import export_split, write_mp4

DIRECT = "Answer with the option's letter from the given choices directly."


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    """The bytes of one real 8-frame mp4, copied wherever a fixture needs a video."""
    p = tmp_path_factory.mktemp("clip") / "c.mp4"
    write_mp4(p, np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), 4.0)
    return p.read_bytes()


def _put(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _check(bench, n: int, missing: str):
    assert len(bench.records) == n, bench.problems
    assert [p.reason for p in bench.problems] == ["video file not found"] and bench.problems[0].sample_id == missing
    for r in bench.records:
        assert os.path.isabs(r.video) and os.path.isfile(r.video)
        assert r.answer in r.options and r.options == [chr(65 + i) for i in range(len(r.options))]
    sample = VideoQADataset(bench.records[:1], frames=4, size=16)[0]
    assert sample.frames.shape == (4, 16, 16, 3) and sample.options == bench.records[0].options


def test_videomme(tmp_path, clip):
    rows = [
        {
            "video_id": "001",
            "duration": "short",
            "domain": "Knowledge",
            "sub_category": "Law",
            "url": "u",
            "videoID": v,
            "question_id": f"001-{i}",
            "task_type": "Counting Problem",
            "question": f"How many {i}?",
            "options": ["A. one", "B. two", "C. three", "D. four"],
            "answer": "BCA"[i],
        }
        for i, v in enumerate(["vA", "vB", "gone"])
    ]
    (tmp_path / "videomme").mkdir()
    pq.write_table(
        pa.Table.from_pylist(rows), str(tmp_path / "videomme" / "test-00000-of-00001.parquet")
    )  # the HF layout
    for v in ("vA", "vB"):
        _put(tmp_path / "data" / f"{v}.mp4", clip)
    b = load_benchmark("videomme", tmp_path)
    _check(b, 2, "001-2")
    r = b.records[1]
    assert (r.id, r.answer, r.meta["family"], r.meta["task_type"]) == ("001-1", "C", "short", "Counting Problem")
    assert r.video == str(tmp_path / "data" / "vB.mp4")
    assert r.question == (
        "Select the best answer to the following multiple-choice question based on the video and the subtitles. "
        "Respond with only the letter (A, B, C, or D) of the correct option.\nHow many 1?\n"
        f"A. one\nB. two\nC. three\nD. four\n\n{DIRECT}"
    )
    assert b.metric == "videomme_perception_score"
    assert [r.id for r in load_benchmark("videomme", tmp_path, limit=1).records] == ["001-0"]


def test_mvbench(tmp_path, clip):
    _put(
        tmp_path / "json" / "action_localization.json",
        [
            {
                "video": "a.mp4",
                "question": "When?",
                "candidates": ["start", "end", "middle"],
                "answer": "end",
                "start": 1,
                "end": 3,
            },
            {"video": "gone.mp4", "question": "When?", "candidates": ["start", "end"], "answer": "start"},
        ],
    )
    _put(
        tmp_path / "json" / "object_shuffle.json",
        [{"video": "o.mp4", "question": "Where?", "candidates": ["x", "y"], "answer": "y"}],
    )
    _put(tmp_path / "sta" / "sta_video_segment" / "a.mp4", clip)  # the `video` revision: already cut
    _put(tmp_path / "perception" / "videos" / "o.mp4", clip)
    b = load_benchmark("mvbench", tmp_path, split="action_localization,object_shuffle")
    _check(b, 2, "action_localization/2")
    r = b.records[0]
    assert (r.id, r.answer, r.meta["family"], r.start, r.end) == (
        "action_localization/1",
        "B",
        "action_localization",
        None,
        None,
    )
    assert r.question == "Question:When?\nOption:\n(A) start\n(B) end\n(C) middle\nOnly give the best option.\n"
    assert b.records[1].meta["family"] == "object_shuffle" and b.records[1].video == str(
        tmp_path / "perception/videos/o.mp4"
    )
    # the main-branch tree holds the uncut video: the bounds apply there
    os.remove(tmp_path / "sta" / "sta_video_segment" / "a.mp4")
    _put(tmp_path / "video" / "sta" / "sta_video" / "a.mp4", clip)
    r = load_benchmark("mvbench", tmp_path, split="action_localization", limit=1).records[0]
    assert (r.start, r.end, r.video) == (1.0, 3.0, str(tmp_path / "video/sta/sta_video/a.mp4"))
    assert b.metric == "mvbench_accuracy"


def test_mlvu(tmp_path, clip):
    q = {"duration": 300, "question": "What is the needle?", "candidates": ["a cat", "a dog", "a car", "a hat"]}
    needle = {**q, "question_type": "findNeedle"}
    _put(
        tmp_path / "MLVU" / "json" / "2_needle.json",
        [{**needle, "video": "n.mp4", "answer": "a car"}, {**needle, "video": "gone.mp4", "answer": "a cat"}],
    )
    _put(
        tmp_path / "MLVU" / "json" / "4_count.json",
        [{**q, "video": "c.mp4", "answer": "a dog", "question_type": "count"}],
    )
    _put(tmp_path / "MLVU" / "json" / "9_summary.json", [{"video": "s.mp4", "question": "Sum up", "answer": "..."}])
    _put(tmp_path / "MLVU" / "video" / "needle" / "n.mp4", clip)
    _put(tmp_path / "MLVU" / "video" / "count" / "c.mp4", clip)
    b = load_benchmark("mlvu", tmp_path)
    _check(b, 2, "2_needle/2")
    r = b.records[0]
    assert (r.id, r.answer, r.meta["family"]) == ("2_needle/1", "C", "findNeedle")
    assert r.video == str(tmp_path / "MLVU/video/needle/n.mp4")
    assert r.question == (
        "\nQuestion: What is the needle?\nOptions:\n(A) a cat\n(B) a dog\n(C) a car\n(D) a hat"
        "\nOnly give the best option.\n\nBest option: ("
    )
    assert b.records[1].meta["family"] == "count" and b.metric == "mlvu_percetion_score"


def test_longvideobench(tmp_path, clip):
    row = {"question": "What happens?", "candidates": ["x", "y", "z"], "duration": 20.0, "question_category": "TOS"}
    _put(
        tmp_path / "lvb_val.json",
        [
            {**row, "id": "q1", "video_path": "v1.mp4", "correct_choice": 2, "duration_group": 15},
            {**row, "id": "q2", "video_path": "gone.mp4", "correct_choice": 0, "duration_group": 60},
            {**row, "id": "q3", "video_path": "v1.mp4", "correct_choice": 0, "duration_group": 600},
        ],
    )
    _put(tmp_path / "videos" / "v1.mp4", clip)
    b = load_benchmark("longvideobench", tmp_path)
    _check(b, 2, "q2")
    r = b.records[0]
    assert (r.id, r.answer, r.meta["family"], r.video) == ("q1", "C", "15", str(tmp_path / "videos/v1.mp4"))
    assert r.question == f"What happens?\nA. x\nB. y\nC. z\n{DIRECT}\n"
    assert b.metric == "lvb_acc"


def test_egoschema(tmp_path, clip):
    qs = [
        {"q_uid": u, "google_drive_id": "g", "question": f"Why {u}?", **{f"option {i}": f"o{i}" for i in range(5)}}
        for u in ("u1", "u2", "u3", "u4")
    ]
    _put(tmp_path / "questions.json", qs)
    _put(tmp_path / "subset_answers.json", {"u1": 3, "u2": 0, "u4": 1})  # u3: no public answer, not read
    _put(tmp_path / "videos" / "u1.mp4", clip)
    _put(tmp_path / "videos" / "u4.mp4", clip)
    b = load_benchmark("egoschema", tmp_path)
    _check(b, 2, "u2")
    r = b.records[0]
    assert (r.id, r.answer, r.meta["family"], r.video) == ("u1", "D", "all", str(tmp_path / "videos/u1.mp4"))
    assert r.question == f"Why u1?\nA. o0\nB. o1\nC. o2\nD. o3\nE. o4\n{DIRECT}"
    assert b.metric == "score" and [r.id for r in b.records] == ["u1", "u4"]


def test_nextqa(tmp_path, clip):
    head = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
    _put(
        tmp_path / "MC" / "val.csv",
        head + "111,100,640,480,why did the boy run ,1,4,CW,a,b,c,d,e\n"
        "222,100,640,480,what is next,4,7,TN,a,b,c,d,e\n"
        "111,100,640,480,where is he,0,9,DL,p,q,r,s,t\n",
    )
    _put(tmp_path / "map_vid_vidorid.json", {"111": "0001/111", "222": "0002/222"})
    _put(tmp_path / "NExTVideo" / "0001" / "111.mp4", clip)
    b = load_benchmark("nextqa", tmp_path, split="val")
    _check(b, 2, "222_7")
    r = b.records[0]
    assert (r.id, r.answer, r.meta["family"], r.meta["group"]) == ("111_4", "B", "CW", "C")
    assert r.video == str(tmp_path / "NExTVideo/0001/111.mp4")
    assert r.question == "why did the boy run\nA. a\nB. b\nC. c\nD. d\nE. e"
    assert b.records[1].meta["family"] == "DL" and b.metric == "exact_match"
    assert len(load_benchmark("nextqa", tmp_path, limit=1).records) == 1  # default: test, else val


def test_toy_reader_on_an_export(tmp_path):
    out = tmp_path / "toy"
    export_split(out, split="test", n=2, families=["flash", "distracted"], frames=8, size=32)
    b = load_benchmark("toy", out)
    assert len(b.records) == 4 and not b.problems
    r = b.records[0]
    assert r.question == "which digit appeared ?" and r.options == [str(d) for d in range(10)] and r.answer in r.options
    assert [x.meta["family"] for x in b.records] == ["flash", "flash", "distracted", "distracted"]
    assert len(load_benchmark("toy", out / "test.jsonl", limit=3).records) == 3
    assert VideoQADataset(b.records[:1], frames=8, size=32)[0].frames.shape == (8, 32, 32, 3)


def test_unknown_name_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'vmme'.*egoschema.*videomme"):
        load_benchmark("vmme", tmp_path)
    assert set(BENCHMARKS) == {
        "toy",
        "evidence",
        "videomme",
        "mvbench",
        "mlvu",
        "longvideobench",
        "egoschema",
        "nextqa",
    }
    for name in BENCHMARKS:
        with pytest.raises(FileNotFoundError):
            load_benchmark(name, tmp_path / "empty")


def test_bad_rows_are_problems(tmp_path, clip):
    _put(
        tmp_path / "lvb_val.json",
        [
            {
                "id": "q1",
                "video_path": "v.mp4",
                "question": "?",
                "candidates": ["x", "y"],
                "correct_choice": 5,
                "duration_group": 15,
            },
            {"id": "q2", "video_path": "v.mp4", "question": "?", "candidates": ["x", "y"]},
        ],
    )
    _put(tmp_path / "videos" / "v.mp4", clip)
    b = load_benchmark("longvideobench", tmp_path)
    assert not b.records and [p.line for p in b.problems] == [1, 2]
    assert "outside the 2 options" in b.problems[0].reason and "correct_choice" in b.problems[1].reason
