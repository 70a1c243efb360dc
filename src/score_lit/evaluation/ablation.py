"""The ablation table (issue 14): SCORE's variants x samplers x ratios, and the best of them against every
training-free method at matched compute.

    python -m score_lit ablation-table --rules runs/ablation/rules \\
        mlp/bernoulli=runs/ablation/mlp-bernoulli query_mlp/budget=runs/ablation/query_mlp-budget ... [--out DIR]

Each LABEL=DIR is an eval sweep (DIR/results.csv) whose `score` rows come from one trained policy; --rules is a
sweep of the training-free methods on the same questions with the same frozen MLLM (checked: every sweep's
vanilla accuracy must be the same, family by family). Family `all` (the mean over the families) is compared, or
the one `--family` names (e.g. a family the frozen model answers, when another sits at chance), or the mean over
the families `--family a+b` joins (e.g. `colour+order`: the evidence benchmark's version 2 read from version-1
sweeps, whose colour and order questions are version 2's).

Matched compute: for SCORE's row at ratio r (prefill TFLOPs F_r, its selection included), each rule is taken at
its best accuracy among its ratios whose prefill TFLOPs are <= F_r (score_lit.compressors.flops.matched_compute); a rule none
of whose ratios gets that low does not reach it ("-"). FastV is also shown at the same ratio, where it costs more.
The margin is SCORE's accuracy minus the rule's, in accuracy points.

`score_lit eval` ends with the same comparison inside one sweep (sweep_matched: SCORE at each of its ratios below 1
against every other method of that sweep, its matched.md), drawn by versus_rules and versus_table as here.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from score_lit.compressors.flops import TERA, matched_compute
from score_lit.errors import ConfigError

FAMILY = "all"


def read_sweep(folder: str | Path) -> list[dict]:
    """The rows of an eval sweep's results.csv, numbers parsed; one clear line if it is missing."""
    path = Path(folder) / "results.csv"
    if not path.is_file():
        raise ConfigError(f"{folder}: no results.csv there; give the out_dir of a finished `score_lit eval` sweep")
    rows = []
    for r in csv.DictReader(path.open()):
        for k in ("retention_ratio", "accuracy", "pct_of_vanilla", "prefill_tflops", "select_ms", "kept_tokens_mean"):
            r[k] = float(r[k]) if r.get(k) not in (None, "") else math.nan
        rows.append(r)
    return rows


def check_same_questions(sweeps: dict[str, list[dict]]) -> None:
    """Every sweep's vanilla accuracy per family must agree (same questions, same frozen MLLM), else one line."""
    ref_name, ref = None, None
    for name, rows in sweeps.items():
        van = {r["family"]: (r["accuracy"], r["n"]) for r in rows if r["method"] == "vanilla"}
        if not van:
            raise ConfigError(f"{name}: its sweep has no vanilla row; run eval with its default ratios (1.0 included)")
        if ref is None:
            ref_name, ref = name, van
        elif van != ref:
            raise ConfigError(
                f"{name} and {ref_name} evaluated different questions or models (vanilla {van} vs {ref}): "
                "sweep every policy with the same eval config"
            )


def pool_families(rows: list[dict], families: list[str]) -> list[dict]:
    """Rows of family "a+b+..." for every (method, ratio) that every one of `families` has, as eval's `all` is made:
    accuracy the mean of the families' accuracies (each family weighs the same), prefill TFLOPs and policy ms the
    question-weighted means, n the sum, % of vanilla against the pooled vanilla accuracy. Returns the new rows."""
    name = "+".join(families)
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        if r["family"] in families:
            groups.setdefault((r["method"], r["retention_ratio"]), {})[r["family"]] = r
    pooled = []
    for by in groups.values():
        if set(by) != set(families):
            continue
        n = {f: float(by[f]["n"]) for f in families}
        total = sum(n.values())
        weighted = {k: sum(n[f] * by[f][k] for f in families) / total for k in ("prefill_tflops", "select_ms")}
        pooled.append(
            {
                **by[families[0]],
                **weighted,
                "family": name,
                "n": int(total),
                "accuracy": sum(by[f]["accuracy"] for f in families) / len(families),
            }
        )
    van = next((r["accuracy"] for r in pooled if r["method"] == "vanilla"), math.nan)
    for r in pooled:
        r["pct_of_vanilla"] = 100 * r["accuracy"] / van if van > 0 else math.nan
    return pooled


def score_rows(rows: list[dict], family: str = FAMILY) -> list[dict]:
    return sorted(
        (r for r in rows if r["method"] == "score" and r["family"] == family), key=lambda r: -r["retention_ratio"]
    )


def best_label(policies: dict[str, list[dict]], ratios: tuple[float, ...], family: str = FAMILY) -> str:
    """The label whose SCORE accuracy, averaged over `ratios`, is highest (ties: the first given)."""

    def mean_acc(label: str) -> float:
        acc = {r["retention_ratio"]: r["accuracy"] for r in score_rows(policies[label], family)}
        return sum(acc.get(x, -math.inf) for x in ratios) / len(ratios)

    return max(policies, key=mean_acc)


def best_by_margin(
    policies: dict[str, list[dict]], rules: list[dict], ratios: tuple[float, ...], family: str = FAMILY
) -> str:
    """The label whose smallest margin over the training-free methods at matched compute (over `ratios` and methods
    that reach SCORE's FLOPs) is largest: the bar the ablation is held to. Ties: the first given."""

    def worst(label: str) -> float:
        margins = [
            v["margin_points"]
            for v in versus_rules(policies[label], rules, ratios, family)
            if v["margin_points"] is not None
        ]
        return min(margins, default=math.inf)

    return max(policies, key=worst)


def versus_rules(score: list[dict], rules: list[dict], ratios: tuple[float, ...], family: str = FAMILY) -> list[dict]:
    """Per ratio in `ratios` and per training-free method: its best accuracy at prefill TFLOPs <= SCORE's there, its
    accuracy at the same ratio, and SCORE's margin over the matched one (accuracy points; None where it cannot
    reach SCORE's compute)."""
    methods = [
        m for m in dict.fromkeys(r["method"] for r in rules if r["family"] == family) if m not in ("vanilla", "score")
    ]
    pool = [r for r in score if r["family"] == family] + [
        r for r in rules if r["family"] == family and r["method"] in methods
    ]
    matched = {(m["reference_ratio"], m["method"]): m for m in matched_compute(pool, "score", family)}
    out = []
    for ratio in ratios:
        ref = next((r for r in score if r["family"] == family and abs(r["retention_ratio"] - ratio) < 1e-9), None)
        if ref is None:
            raise ConfigError(f"the SCORE sweep has no ratio {ratio}: add it to eval.ratios")
        for m in methods:
            mc = matched.get((ref["retention_ratio"], m), {})
            same = next(
                (
                    r
                    for r in rules
                    if r["method"] == m and r["family"] == family and abs(r["retention_ratio"] - ratio) < 1e-9
                ),
                None,
            )
            acc = mc.get("accuracy")
            out.append(
                {
                    "ratio": ratio,
                    "score_accuracy": ref["accuracy"],
                    "score_tflops": ref["prefill_tflops"],
                    "method": m,
                    "matched_ratio": mc.get("retention_ratio"),
                    "matched_accuracy": acc,
                    "matched_tflops": mc.get("prefill_tflops"),
                    "same_ratio_accuracy": None if same is None else same["accuracy"],
                    "same_ratio_tflops": None if same is None else same["prefill_tflops"],
                    "margin_points": None if acc is None else 100 * (ref["accuracy"] - acc),
                }
            )
    return out


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def markdown(
    policies: dict[str, list[dict]],
    rules: list[dict],
    ratios: tuple[float, ...],
    family: str = FAMILY,
    best_by: str = "margin",
) -> str:
    """The two tables for `family`: every policy x ratio (accuracy, % of vanilla, prefill TFLOPs, policy ms), then the
    best policy (best_by "margin": best_by_margin; "accuracy": best_label) against every rule at matched compute."""
    van = next((r for r in rules if r["method"] == "vanilla" and r["family"] == family), None)
    if van is None:
        have = sorted({r["family"] for r in rules})
        raise ConfigError(f"--family {family}: the sweeps have no such family; they have {', '.join(have)}")
    sweep_ratios = sorted(
        {r["retention_ratio"] for rows in policies.values() for r in score_rows(rows, family)}, reverse=True
    )
    head = (
        "| policy / sampler | "
        + " | ".join(f"r={x:g}: acc % (of vanilla) | TFLOPs | policy ms" for x in sweep_ratios)
        + " |"
    )
    lines = [
        f"Family `{family}`. Vanilla (all tokens): accuracy {_pct(van['accuracy'])}%, {van['prefill_tflops']:.3g} TFLOPs per question.",
        "",
        head,
        "|" + "---|" * (1 + 3 * len(sweep_ratios)),
    ]
    for label, rows in policies.items():
        by = {r["retention_ratio"]: r for r in score_rows(rows, family)}
        cells = []
        for x in sweep_ratios:
            r = by.get(x)
            cells += (
                ["-", "-", "-"]
                if r is None
                else [
                    f"{_pct(r['accuracy'])} ({r['pct_of_vanilla']:.1f})",
                    f"{r['prefill_tflops']:.3g}",
                    f"{r['select_ms']:.2f}",
                ]
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    best = (
        best_by_margin(policies, rules, ratios, family) if best_by == "margin" else best_label(policies, ratios, family)
    )
    why = "the largest smallest margin at matched compute" if best_by == "margin" else "the highest mean accuracy"
    lines += [
        "",
        f"Best SCORE policy at r = {', '.join(f'{x:g}' for x in ratios)} ({why}): **{best}**, against every training-free "
        "method (matched = its best accuracy at prefill TFLOPs no higher than SCORE's; margin = SCORE minus matched, "
        "accuracy points; accuracies in %):",
        "",
        *versus_table(versus_rules(policies[best], rules, ratios, family)),
    ]
    return "\n".join(lines) + "\n"


def versus_table(versus: list[dict], unit: tuple[str, float] = ("T", TERA), align: bool = False) -> list[str]:
    """versus_rules' rows as markdown lines: accuracies in %, FLOPs in `unit` ((prefix, FLOPs per unit), e.g.
    ("M", 1e6) for a tiny model), margins in points, "-" where a method does not reach SCORE's compute. align: every
    column padded to its widest cell, for a terminal (still markdown)."""
    prefix, scale = unit

    def num(x, fmt: str = ".3g") -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)

    def fl(tflops) -> str:  # 3 digits; whole numbers from 1000 on (FastV above a vanilla that fits the unit)
        x = None if tflops is None else tflops * TERA / scale
        return num(x, ".0f" if x is not None and x >= 1000 else ".3g")

    f = f"{prefix}FLOPs"
    cells = [["ratio", "SCORE acc", f"SCORE {f}", "method", "matched ratio", "acc", f, "margin", "same ratio acc", f]]
    for v in versus:
        cells.append(
            [
                f"{v['ratio']:g}",
                _pct(v["score_accuracy"]),
                fl(v["score_tflops"]),
                v["method"],
                num(v["matched_ratio"], "g"),
                _pct(v["matched_accuracy"]),
                fl(v["matched_tflops"]),
                num(v["margin_points"], "+.1f"),
                _pct(v["same_ratio_accuracy"]),
                fl(v["same_ratio_tflops"]),
            ]
        )
    widths = [max(len(row[i]) for row in cells) if align else 0 for i in range(len(cells[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return [lines[0], "|" + "|".join("-" * (w + 2) if align else "---" for w in widths) + "|", *lines[1:]]


def sweep_matched(rows: list[dict], family: str = FAMILY, unit: tuple[str, float] = ("T", TERA)) -> str | None:
    """The matched-compute table `score_lit eval` ends with (matched.md): SCORE at each of its ratios < 1 against
    every other method of the same sweep (versus_rules, the sweep's own rows as the rules), columns aligned. None
    where the sweep has no SCORE row below ratio 1 with FLOPs, or no method besides vanilla and SCORE."""
    fam = [r for r in rows if r["family"] == family]
    score = [r for r in score_rows(fam, family) if r["retention_ratio"] < 1 and not math.isnan(r["prefill_tflops"])]
    if not score or not {r["method"] for r in fam} - {"vanilla", "score"}:
        return None
    van = next(r for r in fam if r["method"] == "vanilla")
    prefix, scale = unit
    versus = versus_rules(score, fam, tuple(r["retention_ratio"] for r in score), family)
    return (
        f"Matched compute, family `{family}` (vanilla: {_pct(van['accuracy'])}% at "
        f"{van['prefill_tflops'] * TERA / scale:.3g} {prefix}FLOPs per question). Per SCORE ratio, each method at its\n"
        f'best accuracy with prefill {prefix}FLOPs no higher than SCORE\'s ("matched"; - = never that cheap) and at '
        "SCORE's own\nratio (FastV costs more there); accuracy in %, margin = SCORE minus matched, in points.\n\n"
        + "\n".join(versus_table(versus, unit, align=True))
        + "\n"
    )


def main(args: list[str]) -> int:
    """`python -m score_lit ablation-table --rules DIR LABEL=DIR ... [--ratios 0.1,0.05] [--out DIR]`."""
    import argparse

    p = argparse.ArgumentParser(
        prog="score_lit ablation-table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "policies",
        nargs="+",
        metavar="LABEL=DIR",
        help="an eval sweep of method score with one policy, e.g. mlp/bernoulli=runs/ablation/mlp-bernoulli",
    )
    p.add_argument("--rules", required=True, help="an eval sweep of the training-free methods on the same questions")
    p.add_argument(
        "--ratios", default="0.1,0.05", help="the ratios the best policy is chosen at and compared (default 0.1,0.05)"
    )
    p.add_argument(
        "--family",
        default=FAMILY,
        help="the family compared (default all: the mean over the families; a+b: the mean over families a and b)",
    )
    p.add_argument(
        "--best-by",
        default="margin",
        choices=["margin", "accuracy"],
        help="how the policy compared is chosen: the largest smallest margin over the rules at matched compute "
        "(default), or the highest mean accuracy at --ratios",
    )
    p.add_argument("--out", default=None, help="also write ablation.md there (ablation-<family>.md for another family)")
    ns = p.parse_args(args)
    bad = [x for x in ns.policies if "=" not in x]
    if bad:
        raise ConfigError(
            f"{bad[0]!r}: give each policy sweep as LABEL=DIR, e.g. mlp/bernoulli=runs/ablation/mlp-bernoulli"
        )
    policies = {label: read_sweep(folder) for label, folder in (x.split("=", 1) for x in ns.policies)}
    rules = read_sweep(ns.rules)
    check_same_questions({ns.rules: rules, **policies})
    if "+" in ns.family:
        fams = ns.family.split("+")
        have = sorted({r["family"] for r in rules})
        missing = [f for f in fams if f not in have]
        if missing:
            raise ConfigError(
                f"--family {ns.family}: the sweeps have no family {', '.join(missing)}; they have {', '.join(have)}"
            )
        rules = rules + pool_families(rules, fams)
        policies = {label: rows + pool_families(rows, fams) for label, rows in policies.items()}
    try:
        ratios = tuple(float(x) for x in ns.ratios.split(","))
    except ValueError:
        raise ConfigError(f"--ratios {ns.ratios!r}: give comma-separated fractions, e.g. 0.1,0.05") from None
    md = markdown(policies, rules, ratios, ns.family, ns.best_by)
    print(md, end="")
    if ns.out:
        Path(ns.out).mkdir(parents=True, exist_ok=True)
        path = Path(ns.out) / ("ablation.md" if ns.family == FAMILY else f"ablation-{ns.family}.md")
        path.write_text(md)
        print(path)
    return 0


__all__ = [
    "read_sweep",
    "check_same_questions",
    "pool_families",
    "best_label",
    "best_by_margin",
    "versus_rules",
    "markdown",
    "versus_table",
    "sweep_matched",
    "main",
]
