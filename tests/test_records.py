"""The sweep's record type: a batch's results -> one questions.jsonl line -> the same record; batches merged
give the report's rows by hand; a torn last line and a line written before this type existed read back;
tools/compare_sweeps.py finds a changed answer."""

import json
import math
import sys
from pathlib import Path

from score_lit.data.common import Problem
from score_lit.evaluation.records import BatchRecord, KeptMap, Outcome, read_records
from score_lit.evaluation.report import result_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import compare_sweeps

FAMILY = {"a1": "a", "a2": "a", "b1": "b"}


def _batches():
    one = BatchRecord(
        ["a1", "b1"],
        [Problem("x.jsonl", 3, "bad video", "c1", "c1.mp4")],
        Outcome([True, False], [8, 8], [100.0, 200.0], [0.0, 0.0], prefill_s=0.2),
        {
            ("score", 0.25): Outcome([True, True], [2, 2], [30.0, 60.0], [5.0, 5.0], 0.02, 0.004),
            ("uniform", 0.25): Outcome([False, False], [4, 4], [40.0, 80.0], [0.0, 0.0], 0.03, 0.0),
        },
        [KeptMap("a1", "score", 0.25, [True, False] * 4, (2, 2, 2))],
        n_tokens=8,
        grid=(2, 2, 2),
    )
    two = BatchRecord(
        ["a2"],
        [],
        Outcome([True], [8], [100.0], [0.0], prefill_s=0.1),
        {
            ("score", 0.25): Outcome([False], [2], [30.0], [5.0], 0.01, 0.002),
            ("uniform", 0.25): Outcome([True], [4], [40.0], [0.0], 0.01, 0.0),
        },
        n_tokens=8,
        grid=(2, 2, 2),
    )
    empty = BatchRecord(
        [], [Problem("x.jsonl", 9, "missing", "c2")], n_tokens=8, grid=(2, 2, 2)
    )  # every video left out
    return [one, empty, two]


def test_a_record_reads_back_as_itself_and_merged_batches_give_the_rows_by_hand(tmp_path):
    batches = _batches()
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(b.to_json() + "\n" for b in batches))
    back = read_records(path)
    assert back == batches  # every field, the Problem and the kept map included
    total = BatchRecord.merge(back, keys=[("score", 0.25), ("uniform", 0.25)])
    assert total.ids == ["a1", "b1", "a2"] and [p.sample_id for p in total.left_out] == ["c1", "c2"]
    assert total.methods[("score", 0.25)].correct == [True, True, False] and total.vanilla.prefill_s == 0.2 + 0.1
    rows = {(r["method"], r["family"]): r for r in result_rows(total, FAMILY, "t")}
    same = json.dumps(
        result_rows(BatchRecord.merge(batches), FAMILY, "t")
    )  # NaN (b's share of vanilla's 0) == NaN here
    assert json.dumps(result_rows(total, FAMILY, "t")) == same
    van, score = rows[("vanilla", "all")], rows[("score", "all")]
    assert van["accuracy"] == 0.5 and van["n"] == 3  # families a: 2/2, b: 0/1 -> mean 0.5
    assert score["accuracy"] == 0.75 and score["pct_of_vanilla"] == 150.0  # a: 1/2, b: 1/1
    assert score["kept_tokens_mean"] == 2 and score["budget_tokens"] == 2 and score["over_budget"] == 0
    assert score["prefill_tflops"] * 1e12 == 40.0 and score["flops_pct_of_vanilla"] == 30.0  # 40 / (400 / 3)
    assert score["select_ms"] == round(1000 * 0.006 / 3, 3) and rows[("score", "b")]["prefill_tflops"] * 1e12 == 60.0

    path.write_text(path.read_text() + '{"ids": ["b2"], "left_')  # a kill mid-write: the torn batch is measured again
    assert read_records(path) == batches


def test_a_line_from_before_the_record_type_reads_back():
    # vanilla without select_s, a FLOPs entry never measured (None): NaN, so the means say "not measured"
    old = {
        "ids": ["a1"],
        "left_out": [],
        "vanilla": {"correct": [True], "kept": [8], "flops": [1.0], "select_flops": [0], "prefill_s": 0.5},
        "methods": {
            "fastv@0.1": {
                "correct": [False],
                "kept": [1],
                "flops": [None],
                "select_flops": [None],
                "prefill_s": 0.1,
                "select_s": 0.2,
            }
        },
        "viz": [],
        "n_tokens": 8,
        "grid": [2, 2, 2],
    }
    rec = BatchRecord.from_json(json.dumps(old))
    assert rec.vanilla == Outcome([True], [8], [1.0], [0.0], 0.5, 0.0)
    out = rec.methods[("fastv", 0.1)]
    assert out.correct == [False] and out.kept == [1] and math.isnan(out.flops[0]) and out.select_s == 0.2
    assert rec.grid == (2, 2, 2) and rec.n_tokens == 8


def test_compare_sweeps_counts_a_changed_answer_and_a_missing_question(tmp_path, capsys):
    batches = _batches()
    for name in ("before", "after"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "questions.jsonl").write_text("".join(b.to_json() + "\n" for b in batches))
    assert compare_sweeps.main([str(tmp_path / "before"), str(tmp_path / "after")]) == 0
    batches[0].methods[("score", 0.25)].correct[1] = False  # one answer changes
    batches[2].methods[("uniform", 0.25)].flops[0] *= 1 + 1e-6  # a FLOPs count moves beyond 1e-9
    (tmp_path / "after" / "questions.jsonl").write_text(
        "".join(b.to_json() + "\n" for b in batches[:2]) + batches[2].to_json() + "\n"
    )
    capsys.readouterr()
    assert compare_sweeps.main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    lines = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert lines == {"vanilla@1": ["3", "0", "0"], "score@0.25": ["3", "1", "0"], "uniform@0.25": ["3", "1", "0"]}
    (tmp_path / "after" / "questions.jsonl").write_text(batches[0].to_json() + "\n")  # a2 missing on one side
    capsys.readouterr()
    assert compare_sweeps.main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == "3 method@ratio, 9 results: 1 mismatches, 3 on one side only"
