"""Stage-1 pseudo-videos from image QA: both row formats, the run structure, determinism, and every planted fault."""

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageFile
from skimage import data as skdata

from score_lit.data.common import SampleError
from score_lit.data.pseudo_video import ImageQARecord, PseudoVideoDataset, check_image_qa, load_image, read_image_qa

NAMES = ("astronaut", "camera", "coffee", "chelsea", "rocket")
SIZE = 32


@pytest.fixture
def images(tmp_path):
    """Five real pictures (quarter size, to stay fast): PNG and JPEG, one greyscale."""
    out = {}
    for k, name in enumerate(NAMES):
        im = Image.fromarray(getattr(skdata, name)()).reduce(4)
        out[name] = str(tmp_path / f"{name}.{'png' if k % 2 == 0 else 'jpg'}")
        im.save(out[name])
    return out


def _jsonl(path, rows):
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


def _qa_file(tmp_path, images, extra=()):
    rows = [
        {"id": n, "image": os.path.basename(p), "question": f"what is {n} ?", "answer": n} for n, p in images.items()
    ]
    return _jsonl(tmp_path / "qa.jsonl", [*rows, *extra])


def _runs(video):
    """[(f0, f1)] of maximal runs of identical frames."""
    cuts = [f for f in range(1, len(video)) if not np.array_equal(video[f - 1], video[f])]
    edges = [0, *cuts, len(video)]
    return list(zip(edges[:-1], edges[1:]))


# ------------------------------------------------------------------------------------------------ reading


def test_plain_rows_with_list_dict_and_no_options(tmp_path, images):
    src = _jsonl(
        tmp_path / "plain.jsonl",
        [
            {
                "id": "q1",
                "image": "astronaut.png",
                "question": "Who is this?",
                "answer": "an astronaut",
                "options": ["a cat", "an astronaut"],
                "split": "train",
            },
            {"image": "coffee.png", "question": "What drink?", "answer": "(B)", "options": {"B": "coffee", "A": "tea"}},
            {"id": "q3", "image": images["rocket"], "question": "Describe it.", "answer": " A rocket. "},
            {"id": "q4", "image": "chelsea.jpg", "question": "Which?", "answer": 0, "options": ["cat", "dog"]},
        ],
    )
    records, problems = read_image_qa(src)
    assert problems == []
    root = str(tmp_path)
    assert records == [
        ImageQARecord(
            "q1",
            f"{root}/astronaut.png",
            "Who is this?",
            "an astronaut",
            ["a cat", "an astronaut"],
            1,
            {"split": "train", "source": src},
        ),
        ImageQARecord("plain:2", f"{root}/coffee.png", "What drink?", "coffee", ["tea", "coffee"], 2, {"source": src}),
        ImageQARecord("q3", images["rocket"], "Describe it.", "A rocket.", [], 3, {"source": src}),
        ImageQARecord("q4", f"{root}/chelsea.jpg", "Which?", "cat", ["cat", "dog"], 4, {"source": src}),
    ]


def test_llava_conversations_multi_turn_and_root(tmp_path, images):
    (tmp_path / "ann").mkdir()
    src = str(tmp_path / "ann" / "llava.json")
    rows = [
        {
            "id": "r1",
            "image": "camera.jpg",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is held?\nA. a camera\nB. a cup\nAnswer with the letter."},
                {"from": "gpt", "value": "A"},
                {"from": "human", "value": "Describe the scene."},
                {"from": "gpt", "value": "A man with a camera."},
            ],
        },
        {
            "id": "r2",
            "image": ["rocket.png"],
            "conversations": [
                {"from": "human", "value": "<image>\nPick one\nA. red\nB. blue"},
                {"from": "gpt", "value": "It is white."},
            ],
        },
        {"id": "r3", "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
    ]
    with open(src, "w") as f:
        json.dump(rows, f)
    records, problems = read_image_qa(src, root=str(tmp_path))
    cam, rocket = f"{tmp_path}/camera.jpg", f"{tmp_path}/rocket.png"
    assert records == [
        ImageQARecord(
            "r1#1",
            cam,
            "What is held?\nA. a camera\nB. a cup\nAnswer with the letter.",
            "a camera",
            ["a camera", "a cup"],
            1,
            {"source": src, "turn": 1},
        ),
        ImageQARecord("r1#2", cam, "Describe the scene.", "A man with a camera.", [], 1, {"source": src, "turn": 2}),
        ImageQARecord("r2", rocket, "Pick one\nA. red\nB. blue", "It is white.", [], 2, {"source": src}),
    ]
    assert [(p.line, p.sample_id) for p in problems] == [(3, "r3")] and "has no image" in problems[0].reason
    # without root, paths resolve against the annotation's folder, where the images are not
    records, problems = read_image_qa(src)
    assert records == [] and [p.reason.split(" (")[0] for p in problems] == ["image file not found"] * 2 + [
        "has no image"
    ]
    assert read_image_qa(src, check_files=False)[0][0].image == f"{tmp_path}/ann/camera.jpg"


# ------------------------------------------------------------------------------------------------ pseudo-videos


def test_pseudo_video_runs_cuts_and_evidence(tmp_path, images):
    records, _ = read_image_qa(_qa_file(tmp_path, images))
    ds = PseudoVideoDataset(records, frames=16, size=SIZE, distractors=3, min_run=2, max_run=6, seed=0)
    assert len(ds) == 5
    for i in range(len(ds)):
        s, rec = ds[i], records[i]
        assert s.frames.shape == (16, SIZE, SIZE, 3) and s.frames.dtype == np.uint8
        assert (s.id, s.question, s.answer, s.options) == (rec.id, rec.question, rec.answer, rec.options)
        runs = _runs(s.frames)  # consecutive runs differ: a cut at every run border
        assert len(runs) == len(s.meta["images"]) == 4  # the question's image + 3 distractors, each once
        assert all((b - a) % 2 == 0 and 2 <= b - a <= 6 for a, b in runs)
        assert sorted(s.meta["images"]) == sorted(set(s.meta["images"]))
        assert [r for r, p in zip(runs, s.meta["images"]) if p == rec.image] == s.evidence["frames"]
        assert s.evidence["image"] == s.meta["image"] == rec.image and s.meta["line"] == rec.line
        ((f0, f1),) = s.evidence["frames"]
        assert np.array_equal(s.frames[f0:f1], np.broadcast_to(load_image(rec.image, SIZE), (f1 - f0, SIZE, SIZE, 3)))
        others = {r.image for r in records} - {rec.image}
        for (a, _), p in zip(runs, s.meta["images"]):
            assert p == rec.image or p in others
            assert np.array_equal(s.frames[a], load_image(p, SIZE))
        assert s.meta["bad_images"] == [] and s.meta["source"] == rec.meta["source"]


def test_same_seed_and_index_same_video_other_seed_differs(tmp_path, images):
    records, _ = read_image_qa(_qa_file(tmp_path, images))
    make = lambda seed: PseudoVideoDataset(records, frames=16, size=SIZE, distractors=4, max_run=8, seed=seed)  # noqa: E731
    a, b, c = make(0), make(0), make(1)
    assert all(np.array_equal(a[i].frames, b[i].frames) for i in range(5))
    assert a.cache_inputs(2) == b.cache_inputs(2) != c.cache_inputs(2)
    plans = lambda ds: [(_runs(ds[i].frames), ds[i].meta["images"]) for i in range(5)]  # noqa: E731
    assert plans(a) != plans(c)
    assert len({str(p) for p in plans(a)}) > 1  # indices differ from each other too


def test_few_frames_use_fewer_distractors_and_short_max_run_repeats(tmp_path, images):
    records, _ = read_image_qa(_qa_file(tmp_path, images))
    s = PseudoVideoDataset(records, frames=6, size=SIZE, distractors=5, min_run=2, max_run=4)[0]
    assert len(s.meta["images"]) == 3 and [b - a for a, b in _runs(s.frames)] == [2, 2, 2]
    s = PseudoVideoDataset(records, frames=8, size=SIZE, distractors=5, min_run=4, max_run=8)[1]
    assert len(_runs(s.frames)) == 2 and len(set(s.meta["images"])) == 2
    # 20 frames, runs of at most 2: 5 images cannot fill it, so they repeat in further runs (never back to back)
    s = PseudoVideoDataset(records, frames=20, size=SIZE, distractors=4, min_run=2, max_run=2)[3]
    runs = _runs(s.frames)
    assert len(runs) == len(s.meta["images"]) == 10 and set(s.meta["images"]) == {r.image for r in records}
    assert s.evidence["frames"] == [r for r, p in zip(runs, s.meta["images"]) if p == records[3].image]
    with pytest.raises(ValueError, match="even"):
        PseudoVideoDataset(records, frames=15, size=SIZE)
    with pytest.raises(ValueError, match="cannot be cut"):
        PseudoVideoDataset(records, frames=10, size=SIZE, min_run=8, max_run=8)


# ------------------------------------------------------------------------------------------------ faults


def _plant_faults(tmp_path, images):
    """Broken files next to the good ones; returns {fault: (file name, distinctive reason substring)}."""
    png = open(images["astronaut"], "rb").read()
    (tmp_path / "empty.png").write_bytes(b"")
    corrupt = bytearray(png)
    corrupt[200:-100] = np.random.default_rng(0).integers(0, 256, len(png) - 300, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.png").write_bytes(bytes(corrupt))
    (tmp_path / "half.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "text.jpg").write_text("this is not a picture\n")
    return {
        "missing": ("gone.png", "image file not found"),
        "empty": ("empty.png", "0 bytes"),
        "corrupt": ("corrupt.png", "broken data stream"),
        "truncated": ("half.png", "truncated"),
        "text": ("text.jpg", "cannot identify"),
    }


def test_load_image_faults_are_sample_errors(tmp_path, images):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    faults = _plant_faults(tmp_path, images)
    for name, (fname, reason) in faults.items():
        with pytest.raises(SampleError) as e:
            load_image(str(tmp_path / fname), SIZE)
        assert reason in e.value.reason and e.value.path == str(tmp_path / fname), name
    for p in images.values():
        assert load_image(p, SIZE, fit="crop").shape == (SIZE, SIZE, 3)


def test_read_time_faults_leave_good_rows(tmp_path, images):
    src = _qa_file(
        tmp_path,
        images,
        extra=[
            {"id": "x1", "image": "gone.png", "question": "q", "answer": "a"},
            {"id": "x2", "image": "rocket.png", "question": "q", "answer": "D", "options": ["a", "b"]},
            '{"id": "x3", "image": ',
            {"id": "x4", "question": "q", "answer": "a"},
            {"id": "x5", "image": "rocket.png", "answer": "a"},
            {"id": "astronaut", "image": "rocket.png", "question": "q", "answer": "a"},
        ],
    )
    records, problems = read_image_qa(src)
    assert [r.id for r in records] == list(NAMES)
    assert [(p.line, p.sample_id) for p in problems] == [
        (6, "x1"),
        (7, "x2"),
        (8, None),
        (9, "x4"),
        (10, "x5"),
        (11, "astronaut"),
    ]
    expect = [
        "image file not found",
        "not among the options ['a', 'b']",
        "malformed JSON line",
        "missing required field 'image'",
        "missing required field 'question'",
        "duplicate id (first at line 1)",
    ]
    assert all(e in p.reason for e, p in zip(expect, problems)), [p.reason for p in problems]
    assert problems[0].path == str(tmp_path / "gone.png")
    assert all(load_image(r.image, SIZE).shape == (SIZE, SIZE, 3) for r in records)


def test_bad_distractor_is_replaced_and_recorded(tmp_path, images):
    _plant_faults(tmp_path, images)
    src = _qa_file(tmp_path, images, extra=[{"id": "bad", "image": "half.png", "question": "q", "answer": "a"}])
    records, _ = read_image_qa(src)
    ds = PseudoVideoDataset(records, frames=16, size=SIZE, distractors=4, max_run=8)
    half = str(tmp_path / "half.png")
    hit = [i for i in range(5) if ds[i].meta["bad_images"]]
    assert hit  # with 5 other images and 4 distractors, the broken one is drawn for most questions
    for i in range(5):
        s = ds[i]
        assert len(s.meta["images"]) == 5 and half not in s.meta["images"]
        assert s.meta["bad_images"] in ([], [(half, "corrupt or truncated image (OSError: image file is truncated)")])
    assert ds.bad_images == {half: "corrupt or truncated image (OSError: image file is truncated)"}
    # the key names the broken file skipped and its replacement; a dataset that has not met it yet names
    # the broken file in the replacement's place: a different key (a cache miss), never a wrong hit
    i = hit[0]
    assert {p for p, _, _ in ds.cache_inputs(i)["images"]} == {half, *ds[i].meta["images"]}
    assert PseudoVideoDataset(records, frames=16, size=SIZE, distractors=4, max_run=8).cache_inputs(
        i
    ) != ds.cache_inputs(i)
    with pytest.raises(SampleError, match="truncated"):
        ds[5]  # the question's own image is broken: the caller skips this sample


def test_cache_inputs_follow_the_files(tmp_path, images):
    records, _ = read_image_qa(_qa_file(tmp_path, images))
    ds = PseudoVideoDataset(records, frames=8, size=SIZE, distractors=2, seed=3)
    key = ds.cache_inputs(0)
    assert {k: key[k] for k in ("seed", "index", "frames", "size", "fit", "distractors", "min_run", "max_run")} == {
        "seed": 3,
        "index": 0,
        "frames": 8,
        "size": SIZE,
        "fit": "pad",
        "distractors": 2,
        "min_run": 2,
        "max_run": 8,
    }
    assert sorted(p for p, _, _ in key["images"]) == sorted(ds[0].meta["images"])
    used = key["images"][1][0]
    st = os.stat(used)
    os.utime(used, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert ds.cache_inputs(0) != key and ds.cache_inputs(1) == ds.cache_inputs(1)


def test_check_image_qa_lists_exactly_the_planted_problems(tmp_path, images):
    faults = _plant_faults(tmp_path, images)
    rows = [{"id": name, "image": fname, "question": "q", "answer": "a"} for name, (fname, _) in faults.items()]
    rows += [
        {"id": "options", "image": "rocket.png", "question": "q", "answer": "C", "options": ["a", "b"]},
        "not json at all",
        {"id": "noimage", "conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]},
        {"id": "camera2", "image": "camera.jpg", "question": "again ?", "answer": "camera"},
    ]
    src = _qa_file(tmp_path, images, extra=rows)
    n, problems = check_image_qa(src, size=SIZE)
    assert n == 14
    expect = [
        (6, "missing", "image file not found"),
        (7, "empty", "0 bytes"),
        (8, "corrupt", "broken data stream"),
        (9, "truncated", "truncated"),
        (10, "text", "cannot identify"),
        (11, "options", "not among the options"),
        (12, None, "malformed JSON line"),
        (13, "noimage", "has no image"),
    ]
    assert [(p.line, p.sample_id) for p in problems] == [(line, sid) for line, sid, _ in expect]
    assert all(why in p.reason for (_, _, why), p in zip(expect, problems)), [str(p) for p in problems]
    assert [p.path for p in problems[:5]] == [str(tmp_path / f) for f, _ in faults.values()]
