"""The image-QA and video-QA readers parse a multiple-choice row the same way (score_lit.data.common.parse_options):
one row, written once with "image" and once with "video", gives the same (answer, options) or the same refusal.
Each case is one where the two readers used to differ."""

import json

import pytest

from score_lit.data.pseudo_video import read_image_qa
from score_lit.data.video_qa import read_video_qa

Q = {"id": "q", "question": "Which?"}


def both(tmp_path, row: dict) -> tuple:
    """(image reader's, video reader's) result on `row`: ("ok", answer, options) or ("refused", reason)."""
    out = []
    for media, read in (("image", read_image_qa), ("video", read_video_qa)):
        f = tmp_path / f"{media}.jsonl"
        f.write_text(json.dumps({**Q, media: "x.file", **row}) + "\n")
        records, problems = read(str(f), check_files=False)
        out.append(("ok", records[0].answer, records[0].options) if records else ("refused", problems[0].reason))
    return tuple(out)


@pytest.mark.parametrize(
    "row, want",
    [
        # a dict keyed by letters, in any order and case: options in letter order, an answer naming a key is that option
        ({"options": {"B": "coffee", "A": "tea"}, "answer": "B"}, ("ok", "coffee", ["tea", "coffee"])),
        ({"options": {"b": "coffee", "a": "tea"}, "answer": "b"}, ("ok", "coffee", ["tea", "coffee"])),
        # ... even when an option's text is another key: the key wins (the video reader used to pick the text "A")
        ({"options": {"A": "B", "B": "A"}, "answer": "A"}, ("ok", "B", ["B", "A"])),
        # the answer as the text, the "(B)" form or the index still resolve
        ({"options": {"A": "tea", "B": "coffee"}, "answer": "coffee"}, ("ok", "coffee", ["tea", "coffee"])),
        ({"options": {"A": "tea", "B": "coffee"}, "answer": "(B)"}, ("ok", "coffee", ["tea", "coffee"])),
        ({"options": ["tea", "coffee"], "answer": 1}, ("ok", "coffee", ["tea", "coffee"])),
    ],
)
def test_both_readers_accept_the_same_rows_with_the_same_answer(tmp_path, row, want):
    assert both(tmp_path, row) == (want, want)


@pytest.mark.parametrize(
    "row, reason",
    [
        # keys that are not the letters A, B, ... (the image reader sorted them as text: "10" before "2")
        (
            {"options": {"1": "one", "2": "two"}, "answer": "2"},
            "'options' as a dict needs the keys A, B, C, ...; got ['1', '2']",
        ),
        (
            {"options": {"A": "tea", "C": "milk"}, "answer": "C"},
            "'options' as a dict needs the keys A, B, C, ...; got ['A', 'C']",
        ),
        # an empty list (the image reader made the row open-ended)
        ({"options": [], "answer": "tea"}, "'options' is empty (leave the field out for open-ended QA)"),
        # options that are not non-empty texts (the image reader turned 3 into "3" and True into "True")
        ({"options": ["tea", 3], "answer": "tea"}, "'options' must all be non-empty texts; not so at 1: int"),
        ({"options": ["tea", True], "answer": "tea"}, "'options' must all be non-empty texts; not so at 1: bool"),
        ({"options": ["tea", " "], "answer": "tea"}, "'options' must all be non-empty texts; not so at 1: str"),
        (
            {"options": "tea, coffee", "answer": "tea"},
            "'options' must be a list of texts or a dict letter -> text; got str",
        ),
        # a bool or a list as the answer or the question (the image reader wrote str(True) as an open-ended answer)
        ({"answer": True}, "'answer' must be a text; got bool"),
        ({"answer": ["tea"]}, "'answer' must be a text; got list"),
        ({"question": False, "answer": "tea"}, "'question' must be a text; got bool"),
        ({"options": ["tea", "coffee"]}, "missing required field 'answer'"),
    ],
)
def test_both_readers_refuse_the_same_rows_with_the_same_reason(tmp_path, row, reason):
    assert both(tmp_path, row) == (("refused", reason), ("refused", reason))
