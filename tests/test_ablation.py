"""The ablation table (score_lit.evaluation.ablation): the best policy and the matched-compute margins, by hand."""

import csv

import pytest

from score_lit.errors import ConfigError
from score_lit.evaluation.ablation import (
    best_by_margin,
    best_label,
    main,
    pool_families,
    read_sweep,
    sweep_matched,
    versus_rules,
)

FIELDS = [
    "benchmark",
    "family",
    "method",
    "retention_ratio",
    "accuracy",
    "pct_of_vanilla",
    "prefill_tflops",
    "select_ms",
    "n",
]


def sweep(folder, rows, vanilla=0.8, colour=()):
    """results.csv of family `all` rows: (method, ratio, accuracy, tflops), plus vanilla at 1.0 (10 TFLOPs); `colour`:
    rows of family colour (its vanilla: 0.9)."""
    folder.mkdir(parents=True)
    with (folder / "results.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        fam = [("all", m, r, a, fl) for m, r, a, fl in [("vanilla", 1.0, vanilla, 10.0), *rows]]
        fam += [("colour", m, r, a, fl) for m, r, a, fl in ([("vanilla", 1.0, 0.9, 10.0), *colour] if colour else [])]
        for family, m, r, a, fl in fam:
            w.writerow(
                {
                    "benchmark": "evidence",
                    "family": family,
                    "method": m,
                    "retention_ratio": r,
                    "accuracy": a,
                    "pct_of_vanilla": 100 * a / vanilla,
                    "prefill_tflops": fl,
                    "select_ms": 0.1,
                    "n": 600,
                }
            )
    return folder


@pytest.fixture
def sweeps(tmp_path):
    rules = sweep(
        tmp_path / "rules",
        [
            ("fastv", 0.1, 0.78, 2.5),
            ("fastv", 0.05, 0.70, 2.0),
            ("fastv", 0.25, 0.79, 4.0),
            ("uniform", 0.1, 0.50, 1.0),
            ("uniform", 0.05, 0.40, 0.5),
            ("uniform", 0.25, 0.75, 2.5),
        ],
    )
    a = sweep(tmp_path / "a", [("score", 0.1, 0.76, 1.0), ("score", 0.05, 0.74, 0.5)])
    b = sweep(tmp_path / "b", [("score", 0.1, 0.74, 1.0), ("score", 0.05, 0.72, 0.5)])
    return rules, a, b


def test_best_policy_and_matched_margins_by_hand(sweeps):
    rules, a, b = (read_sweep(x) for x in sweeps)
    assert best_label({"b": b, "a": a}, (0.1, 0.05)) == "a"  # (0.76 + 0.74) / 2 > (0.74 + 0.72) / 2
    got = {(v["ratio"], v["method"]): v for v in versus_rules(a, rules, (0.1, 0.05))}
    # r = 0.1, SCORE at 1.0 TFLOPs: fastv never gets that low (its cheapest is 2.0) -> not reached; uniform at 0.1
    # (1.0 TFLOPs, 0.50) beats its 0.05 (0.40): margin 76 - 50 = +26 points
    assert got[0.1, "fastv"]["matched_accuracy"] is None and got[0.1, "fastv"]["same_ratio_accuracy"] == 0.78
    assert got[0.1, "uniform"]["matched_ratio"] == 0.1 and got[0.1, "uniform"]["margin_points"] == pytest.approx(26.0)
    # r = 0.05, SCORE at 0.5 TFLOPs: uniform only at 0.05 (0.40) -> +34 points
    assert got[0.05, "uniform"]["matched_ratio"] == 0.05 and got[0.05, "uniform"]["margin_points"] == pytest.approx(
        34.0
    )


def test_the_command_prints_both_tables_and_refuses_other_questions(sweeps, tmp_path, capsys):
    rules, a, b = sweeps
    assert (
        main(["--rules", str(rules), f"mlp/bernoulli={b}", f"query_mlp/budget={a}", "--out", str(tmp_path / "out")])
        == 0
    )
    md = capsys.readouterr().out
    assert (
        "Best SCORE policy at r = 0.1, 0.05 (the largest smallest margin at matched compute): **query_mlp/budget**"
        in md
    )
    assert "| 0.1 | 76.0 | 1 | uniform | 0.1 | 50.0 | 1 | +26.0 | 50.0 | 1 |" in md
    assert "| mlp/bernoulli | 74.0 (92.5) | 1 | 0.10 | 72.0 (90.0) | 0.5 | 0.10 |" in md
    assert (tmp_path / "out" / "ablation.md").read_text() in md
    other = sweep(tmp_path / "other", [("score", 0.1, 0.7, 1.0), ("score", 0.05, 0.7, 0.5)], vanilla=0.9)
    with pytest.raises(ConfigError, match="evaluated different questions or models"):
        main(["--rules", str(rules), f"x={other}"])
    with pytest.raises(ConfigError, match="no results.csv there"):
        main(["--rules", str(rules), f"x={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match="give each policy sweep as LABEL=DIR"):
        main(["--rules", str(rules), str(a)])


def test_one_family_is_compared_on_its_own_rows(tmp_path, capsys):
    """--family colour: the colour rows only (here SCORE wins on colour, loses on the mean); an unknown family is one line."""
    rules = sweep(
        tmp_path / "rules",
        [("uniform", 0.1, 0.70, 1.0), ("uniform", 0.05, 0.60, 0.5)],
        colour=[("uniform", 0.1, 0.30, 1.0), ("uniform", 0.05, 0.25, 0.5)],
    )
    a = sweep(
        tmp_path / "a",
        [("score", 0.1, 0.60, 1.0), ("score", 0.05, 0.50, 0.5)],
        colour=[("score", 0.1, 0.85, 1.0), ("score", 0.05, 0.80, 0.5)],
    )
    assert (
        main(["--rules", str(rules), f"mlp/bernoulli={a}", "--family", "colour", "--out", str(tmp_path / "out")]) == 0
    )
    md = capsys.readouterr().out
    assert "Family `colour`. Vanilla (all tokens): accuracy 90.0%" in md
    assert "| 0.1 | 85.0 | 1 | uniform | 0.1 | 30.0 | 1 | +55.0 | 30.0 | 1 |" in md  # 85 - 30
    assert "| 0.05 | 80.0 | 0.5 | uniform | 0.05 | 25.0 | 0.5 | +55.0 | 25.0 | 0.5 |" in md
    assert (tmp_path / "out" / "ablation-colour.md").read_text() in md
    main(["--rules", str(rules), f"mlp/bernoulli={a}"])
    assert "| 0.1 | 60.0 | 1 | uniform | 0.1 | 70.0 | 1 | -10.0 | 70.0 | 1 |" in capsys.readouterr().out  # the mean
    with pytest.raises(ConfigError, match="--family move: the sweeps have no such family; they have all, colour"):
        main(["--rules", str(rules), f"mlp/bernoulli={a}", "--family", "move"])


def test_pooling_families_by_hand():
    """colour (200 questions) + order (100): accuracy the plain mean of the two, TFLOPs and ms weighted 2:1; move and
    a (method, ratio) that only colour has are left out."""

    def row(fam, m, r, acc, fl, n):
        return {
            "family": fam,
            "method": m,
            "retention_ratio": r,
            "accuracy": acc,
            "prefill_tflops": fl,
            "select_ms": fl / 10,
            "pct_of_vanilla": 0.0,
            "n": str(n),
        }

    rows = [
        row("colour", "vanilla", 1.0, 0.9, 10.0, 200),
        row("order", "vanilla", 1.0, 0.7, 13.0, 100),
        row("move", "vanilla", 1.0, 0.25, 10.0, 200),
        row("colour", "score", 0.1, 0.85, 1.0, 200),
        row("order", "score", 0.1, 0.55, 1.6, 100),
        row("colour", "score", 0.05, 0.8, 0.5, 200),
    ]
    got = {(r["method"], r["retention_ratio"]): r for r in pool_families(rows, ["colour", "order"])}
    assert set(got) == {("vanilla", 1.0), ("score", 0.1)} and {r["family"] for r in got.values()} == {"colour+order"}
    van, sc = got["vanilla", 1.0], got["score", 0.1]
    assert (van["accuracy"], van["prefill_tflops"], van["n"], van["pct_of_vanilla"]) == pytest.approx(
        (0.8, 11.0, 300, 100.0)
    )
    # (0.85 + 0.55) / 2 = 0.70 = 87.5% of 0.8; (200 x 1.0 + 100 x 1.6) / 300 = 1.2 TFLOPs; ms likewise 0.12
    assert (sc["accuracy"], sc["prefill_tflops"], sc["select_ms"], sc["pct_of_vanilla"]) == pytest.approx(
        (0.70, 1.2, 0.12, 87.5)
    )


def test_the_command_compares_a_pool_of_families(sweeps, tmp_path, capsys):
    rules, a, b = sweeps
    with pytest.raises(
        ConfigError, match="--family colour\\+order: the sweeps have no family colour, order; they have all"
    ):
        main(["--rules", str(rules), f"a={a}", "--family", "colour+order"])


def test_the_best_policy_by_margin_is_not_the_most_accurate_one_that_costs_more(sweeps, tmp_path):
    rules, a, _ = (read_sweep(x) for x in sweeps)
    # c: more accurate on the mean ((0.80 + 0.71) / 2 > (0.76 + 0.74) / 2) but at 3.0 TFLOPs at r = 0.1, where fastv
    # (0.1: 0.78 at 2.5) and uniform (0.25: 0.75 at 2.5) reach it: its smallest margin is 80 - 78 = +2, a's is +26
    c = read_sweep(sweep(tmp_path / "c", [("score", 0.1, 0.80, 3.0), ("score", 0.05, 0.71, 0.5)]))
    assert best_label({"a": a, "c": c}, (0.1, 0.05)) == "c"
    assert best_by_margin({"c": c, "a": a}, rules, (0.1, 0.05)) == "a"
    got = {(v["ratio"], v["method"]): v["margin_points"] for v in versus_rules(c, rules, (0.1, 0.05))}
    assert got[0.1, "fastv"] == pytest.approx(2.0) and got[0.1, "uniform"] == pytest.approx(5.0)


def test_the_eval_sweeps_own_matched_table_by_hand():
    """sweep_matched (what `score_lit eval` ends with): SCORE's rows below ratio 1 against the other methods of the same
    rows, FLOPs in the unit given, columns aligned; nothing without a SCORE row or without a method to compare."""

    def row(m, r, acc, tflops):
        return {"family": "all", "method": m, "retention_ratio": r, "accuracy": acc, "prefill_tflops": tflops}

    rows = [
        row("vanilla", 1.0, 0.8, 0.1),  # 100 GFLOPs
        row("score", 1.0, 0.8, 0.102),  # ratio 1 is not compared
        row("score", 0.1, 0.76, 0.01),
        row("fastv", 0.1, 0.78, 0.025),
        row("uniform", 0.25, 0.75, 0.025),
        row("uniform", 0.1, 0.5, 0.01),
        row("uniform", 0.05, 0.45, 0.005),
    ]
    md = sweep_matched(rows, unit=("G", 1e9))
    assert md.startswith("Matched compute, family `all` (vanilla: 80.0% at 100 GFLOPs per question).")
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len({len(line) for line in table}) == 1 and max(map(len, md.splitlines())) <= 120  # aligned, fits
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    head = "ratio, SCORE acc, SCORE GFLOPs, method, matched ratio, acc, GFLOPs, margin, same ratio acc, GFLOPs"
    assert cells[0] == head.split(", ")
    assert cells[2:] == [
        ["0.1", "76.0", "10", "fastv", "-", "-", "-", "-", "78.0", "25"],  # its cheapest, 25 GFLOPs, is above 10
        # uniform at 0.25 costs 25 > 10; at 0.1 (50.0) beats 0.05 (45.0): 76 - 50 = +26 points
        ["0.1", "76.0", "10", "uniform", "0.1", "50.0", "10", "+26.0", "50.0", "10"],
    ]
    assert sweep_matched([r for r in rows if r["method"] != "score"]) is None  # no SCORE in the sweep
    assert sweep_matched([r for r in rows if r["method"] in ("vanilla", "score")]) is None  # nothing to compare
