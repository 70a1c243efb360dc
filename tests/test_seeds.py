"""seeds-table (score_lit.evaluation.seeds, seeds_table): accuracies over training seeds, bootstrap intervals and
margins, on tiny sweep folders whose numbers are worked out by hand in the comments."""

import csv
import json
import math

import numpy as np
import pytest

from score_lit.cli import main as cli_main
from score_lit.compressors.flops import matched_compute
from score_lit.errors import ConfigError
from score_lit.evaluation import seeds_table
from score_lit.evaluation.records import BatchRecord, Outcome
from score_lit.evaluation.seeds import (
    Sweeps,
    draw_counts,
    draw_questions,
    eligible,
    estimate,
    family_weights,
    replicates,
    seed_mean,
)

# Two families: A = a0 a1 a2, B = b0 b1. An accuracy is the mean of the two families' accuracies.
IDS = ["a0", "a1", "a2", "b0", "b1"]
VANILLA = [1, 1, 0, 1, 0]  # A 2/3, B 1/2 -> 7/12
SEEDS = {  # the recipe's three training seeds at ratios 0.5 (4 TFLOPs) and 0.25 (2 TFLOPs)
    0.5: [[1, 1, 0, 1, 1]] * 3,  # A 2/3, B 1 -> 5/6 for every seed
    0.25: [
        [1, 1, 1, 1, 0],  # A 1,   B 1/2 -> 3/4 = 9/12
        [1, 0, 0, 1, 1],  # A 1/3, B 1   -> 2/3 = 8/12
        [1, 1, 0, 0, 0],  # A 2/3, B 0   -> 1/3 = 4/12
    ],
}
TFLOPS = {0.5: 4.0, 0.25: 2.0}
RULES = {  # (method, ratio): (correct, TFLOPs)
    ("uniform", 0.5): ([1, 1, 0, 1, 0], 4.0),  # 7/12; exactly the recipe's FLOPs at 0.5: eligible there
    ("uniform", 0.25): ([1, 0, 0, 1, 0], 2.0),  # A 1/3, B 1/2 -> 5/12; exactly the recipe's at 0.25
    ("uniform", 0.1): ([0, 0, 0, 1, 0], 1.0),  # A 0, B 1/2 -> 3/12
    ("fastv", 0.5): ([1, 1, 1, 1, 1], 6.0),  # 1; costs more than the recipe at 0.5
    ("fastv", 0.25): ([1, 1, 0, 1, 1], 2.0000001),  # A 2/3, B 1 -> 5/6; just above the recipe's 2 TFLOPs at 0.25
}


def outcome(correct, tflops):
    return Outcome([bool(c) for c in correct], [1] * len(correct), [tflops * 1e12] * len(correct))


def write_sweep(folder, bench, methods, vanilla=VANILLA, ids=IDS, b_first=False):
    """A sweep folder: sweep.json naming the toy benchmark `bench`, questions.jsonl of two batches (A's questions,
    then B's; b_first: the other way round); methods: {(method, ratio): (correct [5], TFLOPs)}."""
    folder.mkdir()
    batches = [slice(0, 3), slice(3, 5)][:: -1 if b_first else 1]
    lines = [
        BatchRecord(
            list(ids[s]),
            vanilla=outcome(vanilla[s], 10.0),
            methods={key: outcome(c[s], f) for key, (c, f) in methods.items()},
        ).to_json()
        for s in batches
    ]
    (folder / "questions.jsonl").write_text("".join(line + "\n" for line in lines))
    ident = {"eval.benchmark": "toy", "eval.root": str(bench), "eval.split": "test", "eval.limit": None}
    (folder / "sweep.json").write_text(json.dumps({"identity": ident, "finished": True}))
    return folder


@pytest.fixture
def sweeps(tmp_path):
    """(rules folder, [seed folders]) over a toy benchmark of the five questions."""
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "v.mp4").write_bytes(b"")  # the reader only checks that the video exists
    row = {"video": "v.mp4", "question": "q", "options": ["0", "1"], "answer": "0"}
    rows = [{**row, "id": i, "family": i[0].upper()} for i in IDS]
    (bench / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rules = write_sweep(tmp_path / "rules", bench, RULES)
    seeds = [
        write_sweep(tmp_path / f"s{k}", bench, {("score", r): (SEEDS[r][k], TFLOPS[r]) for r in SEEDS}, b_first=k == 1)
        for k in range(3)
    ]
    return rules, seeds


def table(rules, seeds, family="all", boot=200):
    recs = {"rec": {str(f): seeds_table.read_sweep(f) for f in seeds}}
    rule_rec = seeds_table.read_sweep(rules)
    fam = seeds_table.question_families(str(rules), rule_rec.ids)
    sw, _, sizes = seeds_table.build_sweeps(rule_rec, recs, fam, family)
    accs, margins = estimate(sw, boot, seed=0)
    return {(a.method, a.ratio): a for a in accs}, {(m.label, m.ratio, m.versus, m.how): m for m in margins}, sizes


def test_per_seed_accuracy_mean_and_sample_std_by_hand(sweeps):
    accs, _, sizes = table(*sweeps)
    assert sizes == {"A": 3, "B": 2}
    a = accs["rec", 0.25]  # seed 1's batches were written B first: aligned by id
    assert a.seeds == pytest.approx([9 / 12, 8 / 12, 4 / 12])
    assert a.mean == pytest.approx(7 / 12)  # (9 + 8 + 4) / 36
    # deviations from 7/12: +2/12, +1/12, -3/12 -> (4 + 1 + 9) / 144 / (3 - 1) = 7/144 -> std = sqrt(7) / 12
    assert a.std == pytest.approx(math.sqrt(7) / 12)
    assert a.band == pytest.approx((4 / 12, 9 / 12)) and a.tflops == pytest.approx(2.0)
    assert accs["rec", 0.5].mean == pytest.approx(5 / 6) and accs["rec", 0.5].std == pytest.approx(0.0, abs=1e-12)
    assert accs["vanilla", 1.0].mean == pytest.approx(7 / 12) and accs["uniform", 0.1].mean == pytest.approx(3 / 12)
    assert a.lo <= a.mean <= a.hi
    only_a, _, _ = table(*sweeps, family="A")  # family A alone: seeds 1, 1/3, 2/3 -> mean 2/3
    assert only_a["rec", 0.25].seeds == pytest.approx([1, 1 / 3, 2 / 3])


def test_matched_compute_eligibility_max_and_margins_by_hand(sweeps):
    _, m, _ = table(*sweeps)
    # recipe at 0.25 (2 TFLOPs, 7/12): uniform 0.25 (2.0, equal: in) and 0.1; its best is 0.25 (5/12) -> +2/12
    u = m["rec", 0.25, "uniform", "matched"]
    assert u.eligible == [0.25, 0.1] and u.versus_ratio == 0.25 and u.point == pytest.approx(2 / 12)
    # fastv's cheapest is 2.0000001 TFLOPs, just above 2: it does not reach the recipe's compute
    f = m["rec", 0.25, "fastv", "matched"]
    assert f.eligible == [] and f.versus_ratio is None and math.isnan(f.point) and math.isnan(f.lo)
    # recipe at 0.5 (4 TFLOPs, 5/6): uniform 0.5 (4.0, equal), 0.25, 0.1 -> best 0.5 (7/12): +3/12
    u = m["rec", 0.5, "uniform", "matched"]
    assert u.eligible == [0.5, 0.25, 0.1] and u.versus_ratio == 0.5 and u.point == pytest.approx(3 / 12)
    # fastv: 0.25 (2.0000001) only, 0.5 costs 6 -> 5/6 - 5/6 = 0; at the same ratio 0.5: 5/6 - 1 = -1/6
    assert m["rec", 0.5, "fastv", "matched"].eligible == [0.25]
    assert m["rec", 0.5, "fastv", "matched"].point == pytest.approx(0.0)
    same = m["rec", 0.5, "fastv", "same ratio"]
    assert same.point == pytest.approx(-1 / 6) and same.versus_tflops == pytest.approx(6.0)
    # against vanilla (7/12): +3/12 at 0.5, 0 at 0.25
    assert m["rec", 0.5, "vanilla", "vanilla"].point == pytest.approx(3 / 12)
    assert m["rec", 0.25, "vanilla", "vanilla"].point == pytest.approx(0.0)
    for x in m.values():
        assert math.isnan(x.point) or x.lo <= x.hi
    # the full-data pick is the one flops.matched_compute makes from results rows of the same numbers
    acc = {("score", 0.5): 5 / 6, ("score", 0.25): 7 / 12, ("uniform", 0.5): 7 / 12, ("uniform", 0.25): 5 / 12}
    acc |= {("uniform", 0.1): 3 / 12, ("fastv", 0.5): 1.0, ("fastv", 0.25): 5 / 6}
    tflops = {("score", r): f for r, f in TFLOPS.items()} | {k: f for k, (_, f) in RULES.items()}
    rows = [
        {"method": m_, "retention_ratio": r, "family": "all", "accuracy": a, "prefill_tflops": tflops[m_, r]}
        for (m_, r), a in acc.items()
    ]
    for mc in matched_compute(rows):
        if mc["method"] != "score":
            assert m["rec", mc["reference_ratio"], mc["method"], "matched"].versus_ratio == mc["retention_ratio"]


def test_eligible_keeps_equal_drops_just_above_and_unmeasured():
    cost = {0.5: 4.0, 0.25: 2.0, 0.2: 2.0 * (1 + 1e-6), 0.1: 1.0, 0.05: math.nan}
    assert eligible(cost, 2.0) == [0.25, 0.1]


def sweeps_of(family, vanilla, labels=None, rules=None):
    """Sweeps of arrays (every TFLOPs 1.0)."""
    labels, rules = labels or {}, rules or {}
    return Sweeps(
        np.asarray(family),
        np.asarray(vanilla, dtype=bool),
        1.0,
        {k: {r: np.asarray(c, dtype=bool) for r, c in by.items()} for k, by in labels.items()},
        {k: {r: 1.0 for r in by} for k, by in labels.items()},
        {k: {r: np.asarray(c, dtype=bool) for r, c in by.items()} for k, by in rules.items()},
        {k: {r: 1.0 for r in by} for k, by in rules.items()},
    )


def test_identical_seeds_and_uniform_families_give_a_one_point_interval():
    # family 0 always right, family 1 always wrong: every stratified draw gives (1 + 0) / 2
    fam, c = [0, 0, 0, 1, 1], [1, 1, 1, 0, 0]
    accs, margins = estimate(sweeps_of(fam, c, labels={"rec": {0.1: [c, c, c]}}), boot=300)
    a = next(x for x in accs if x.method == "rec")
    assert (a.mean, a.std, a.lo, a.hi) == pytest.approx((0.5, 0.0, 0.5, 0.5))
    assert (margins[0].point, margins[0].lo, margins[0].hi) == pytest.approx((0.0, 0.0, 0.0))  # vs vanilla


def test_the_rule_is_taken_at_its_best_eligible_ratio_inside_each_replicate():
    # one family of two questions; rule ratio 0.2 answers q0 only, 0.1 answers q1 only; the recipe answers both.
    # Draws (q0, q0) and (q1, q1) give the rule's best 1, (q0, q1) / (q1, q0) give 1/2: margin 0 or 1/2, each half
    # the time, so the interval is [0, 1/2]. Taking the full-data pick (0.2, 1/2) in every replicate instead would
    # give margin 1 on the draws (q1, q1), a quarter of them: hi = 1.
    sw = sweeps_of([0, 0], [1, 1], labels={"rec": {0.2: [[1, 1]]}}, rules={"r": {0.2: [1, 0], 0.1: [0, 1]}})
    _, margins = estimate(sw, boot=2000)
    m = next(x for x in margins if x.how == "matched")
    assert m.eligible == [0.2, 0.1] and m.point == pytest.approx(0.5)
    assert (m.lo, m.hi) == pytest.approx((0.0, 0.5))


def test_vectorised_replicates_equal_a_loop_over_replicates_and_seeds():
    rng = np.random.default_rng(3)
    fam = np.array([0, 0, 0, 1, 1, 2])
    c = rng.random((4, 6)) < 0.5  # 4 seeds
    idx = draw_questions(np.random.default_rng(1), fam, 50)
    seed_draw = np.random.default_rng(2).integers(0, 4, size=(50, 4))
    got = seed_mean(replicates(c, draw_counts(idx, 6), family_weights(fam)), seed_draw)
    for b in range(50):
        per_seed = [
            np.mean([np.mean(c[s, [q for q in idx[b] if fam[q] == f]]) for f in range(3)]) for s in seed_draw[b]
        ]
        assert got[b] == pytest.approx(np.mean(per_seed))
        assert [np.sum(fam[idx[b]] == f) for f in range(3)] == [3, 2, 1]  # stratified: every family keeps its size


def test_a_fair_coin_over_400_questions_has_the_binomial_interval():
    # sd of a mean of 400 coin flips = sqrt(0.25 / 400) = 0.025 -> 95% width about 2 * 1.96 * 0.025 = 0.098
    coin = [1, 0] * 200
    accs, _ = estimate(sweeps_of([0] * 400, coin), boot=2000, seed=0)
    assert accs[0].mean == pytest.approx(0.5) and accs[0].hi - accs[0].lo == pytest.approx(2 * 1.96 * 0.025, abs=0.012)


def test_different_questions_or_vanilla_answers_are_one_line_naming_both_folders(sweeps, tmp_path):
    rules, seeds = sweeps
    bench = tmp_path / "bench"
    other = write_sweep(
        tmp_path / "x", bench, {("score", 0.5): (SEEDS[0.5][0], 4.0)}, ids=["a0", "a1", "a9", "b0", "b1"]
    )
    with pytest.raises(
        ConfigError, match=r"x and .*rules hold different questions .*'a9' only in the first, 'a2' only in the second"
    ) as e:
        seeds_table.main(["--rules", str(rules), f"rec={seeds[0]},{other}", "--out", str(tmp_path / "o")])
    assert "\n" not in str(e.value)
    flipped = write_sweep(tmp_path / "y", bench, {("score", 0.5): (SEEDS[0.5][0], 4.0)}, vanilla=[1, 1, 0, 1, 1])
    with pytest.raises(ConfigError, match=r"y and .*rules differ in vanilla's answer on 1 of 5 .*'b1'"):
        seeds_table.main(["--rules", str(rules), f"rec={seeds[0]},{flipped}", "--out", str(tmp_path / "o")])
    with pytest.raises(ConfigError, match="--family C: the sweeps have no family C; they have A, B"):
        seeds_table.main(["--rules", str(rules), f"rec={seeds[0]}", "--family", "C", "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()  # nothing written before the checks


def test_the_cli_writes_markdown_csv_and_picture(sweeps, capsys):
    rules, seeds = sweeps
    code = cli_main(["seeds-table", "--rules", str(rules), "--boot", "200", "rec=" + ",".join(map(str, seeds))])
    assert code == 0
    out = seeds[0].parent / "seeds"  # default: next to the first seed's folder
    assert {p.name for p in out.iterdir()} == {"seeds.md", "seeds.csv", "seeds.png"}
    printed = capsys.readouterr().out
    assert "| rec | 0.25 | 75.0, 66.7, 33.3 | 58.3 ± 22.0 |" in printed  # sqrt(7) / 12 = 0.2205
    assert "| rec | 0.5 | 4 | uniform | 0.5, 0.25, 0.1 | 0.5 | 58.3 | +25.0 [" in printed
    # the headline: at 0.25 (7/12 = 58.3 ± 22.0, 100% of vanilla's 7/12, +0 over it) the only rule that reaches the
    # recipe's compute is uniform (+2/12 = +16.7); fastv never gets as cheap
    line = next(x for x in printed.splitlines() if x.startswith("| rec | 0.25 | 58.3 ± 22.0 ["))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == "100.0" and cells[4].startswith("+0.0 [") and cells[5].startswith("uniform at 0.25: +16.7 [")
    assert cells[6] in ("0 of 1", "1 of 1")  # uniform's lower end, from 200 replicates of 5 questions
    rows = list(csv.DictReader((out / "seeds.csv").open()))
    value = {(r["method"], float(r["ratio"]), r["quantity"], r["versus"]): float(r["value"]) for r in rows}
    assert value["rec", 0.25, "accuracy", ""] == pytest.approx(7 / 12)
    assert value["rec", 0.25, "margin_matched", "uniform"] == pytest.approx(100 * 2 / 12)
    assert value["rec", 0.5, "margin_same_ratio", "fastv"] == pytest.approx(-100 / 6)
    assert value["rec", 0.5, "flops_share_of_vanilla", ""] == pytest.approx(0.4)
    assert math.isnan(value["rec", 0.25, "margin_matched", "fastv"])


def test_a_second_recipe_is_compared_with_the_first_on_the_same_questions(sweeps):
    rules, seeds = sweeps
    recs = {"rec": {str(f): seeds_table.read_sweep(f) for f in seeds}, "one": {str(seeds[0]): None}}
    recs["one"][str(seeds[0])] = seeds_table.read_sweep(seeds[0])
    rule_rec = seeds_table.read_sweep(rules)
    fam = seeds_table.question_families(str(rules), rule_rec.ids)
    sw, _, _ = seeds_table.build_sweeps(rule_rec, recs, fam, "all")
    _, margins = estimate(sw, 300, seed=0)
    between = {(m.label, m.ratio): m for m in margins if m.how == "recipe"}
    assert set(between) == {("one", 0.5), ("one", 0.25)}  # the first label is the reference, not compared with itself
    # at 0.25: seed 0 alone (9/12) minus the three seeds' mean (7/12) = +2/12; at 0.5 every seed is 5/6: 0, and the
    # interval is a point there (the same answers for every seed, so every replicate differs by 0)
    assert between["one", 0.25].point == pytest.approx(2 / 12) and between["one", 0.25].versus == "rec"
    assert between["one", 0.5].point == pytest.approx(0.0)
    assert between["one", 0.5].lo == pytest.approx(0.0) and between["one", 0.5].hi == pytest.approx(0.0)
