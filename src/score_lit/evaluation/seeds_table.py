"""python -m score_lit seeds-table: a recipe trained with several seeds against the training-free methods, with
bootstrap intervals over seeds and questions (the estimator: score_lit.evaluation.seeds).

    python -m score_lit seeds-table --rules runs/seeds/rules [--family all] [--boot 2000] [--seed 0] [--out DIR] \\
        query_mlp/budget=runs/seeds/s0,runs/seeds/s1,runs/seeds/s2 [mlp/bernoulli=...]

Each LABEL lists the eval sweeps of one recipe, one folder per training seed (method `score` at the ratios, and
vanilla); --rules is one sweep of the training-free methods on the same questions with the same frozen MLLM. Every
folder's questions.jsonl is read (its BatchRecords merged); every folder must hold the same question ids and the
same vanilla answer per question (else one line naming the two folders). The questions' families come from the
benchmark the rules sweep names in its sweep.json, as the sweep itself took them (record.meta["family"]); where the
rules folder holds results.csv, its questions per family must agree. `--family` picks what is compared: all (the
mean over every family, as eval's `all`), one family, or `a+b` (the mean over families a and b).

Prints the markdown report and writes OUT/seeds.md, OUT/seeds.csv (long: family, method, ratio, quantity, versus,
value; accuracies as fractions, margins in accuracy points) and OUT/seeds.png (accuracy against prefill FLOPs as
a share of vanilla's). Default OUT: the first label's first folder's parent / "seeds".
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from score_lit.compressors.flops import TERA
from score_lit.errors import ConfigError
from score_lit.evaluation.records import BatchRecord, Outcome, read_records
from score_lit.evaluation.report import write_csv
from score_lit.evaluation.seeds import Accuracy, Margin, Sweeps, estimate

POLICY = "score"  # the method of a label's sweeps

# ------------------------------------------------------------------------------------------------
# Reading and checking


def parse_labels(specs: list[str]) -> dict[str, list[str]]:
    """["LABEL=DIR1,DIR2", ...] -> {LABEL: [DIR1, DIR2]}; one line for a malformed one."""
    labels: dict[str, list[str]] = {}
    for spec in specs:
        label, _, dirs = spec.partition("=")
        folders = [d for d in dirs.split(",") if d]
        if not label or not folders:
            raise ConfigError(f"{spec!r}: give each recipe as LABEL=DIR1,DIR2,... (one sweep folder per training seed)")
        if label in labels or label == "vanilla":
            raise ConfigError(f"{label!r}: a label may appear once and may not be 'vanilla'")
        if len(set(folders)) < len(folders):
            raise ConfigError(f"{label}: a folder is given twice (it would count one seed twice)")
        labels[label] = folders
    return labels


def read_sweep(folder: str) -> BatchRecord:
    """Every question of a sweep folder's questions.jsonl, in one record."""
    path = Path(folder) / "questions.jsonl"
    if not path.is_file():
        raise ConfigError(f"{folder}: no questions.jsonl there; give the out_dir of a `score_lit eval` sweep")
    rec = BatchRecord.merge(read_records(path))
    if not rec.ids:
        raise ConfigError(f"{folder}: its questions.jsonl holds no answered question")
    if len(set(rec.ids)) < len(rec.ids):
        raise ConfigError(f"{folder}: a question is recorded twice in its questions.jsonl")
    return rec


def check_same_questions(records: dict[str, BatchRecord]) -> None:
    """Every folder must hold the first one's question ids and vanilla answers, else one line naming both."""
    (ref_name, ref), *rest = records.items()
    ref_van = dict(zip(ref.ids, ref.vanilla.correct))
    for name, rec in rest:
        only_ref, only_here = sorted(set(ref.ids) - set(rec.ids)), sorted(set(rec.ids) - set(ref.ids))
        if only_ref or only_here:
            eg = [
                f"{ids[0]!r} only in {where}"
                for ids, where in ((only_here, "the first"), (only_ref, "the second"))
                if ids
            ]
            raise ConfigError(
                f"{name} and {ref_name} hold different questions ({len(only_here)} only in the first, "
                f"{len(only_ref)} only in the second; e.g. {', '.join(eg)}): sweep every folder with the same eval config"
            )
        diff = [i for i, c in zip(rec.ids, rec.vanilla.correct) if ref_van[i] != c]
        if diff:
            raise ConfigError(
                f"{name} and {ref_name} differ in vanilla's answer on {len(diff)} of {len(rec.ids)} questions "
                f"(e.g. {diff[0]!r}): another frozen MLLM or eval setting; sweep every folder with the same one"
            )


def question_families(folder: str, ids: list[str]) -> dict[str, str]:
    """{question id: family} from the benchmark the sweep in `folder` names in its sweep.json (the sweep's own rule:
    meta["family"], default "all"); checked against its results.csv's questions per family where there is one."""
    state = Path(folder) / "sweep.json"
    if not state.is_file():
        raise ConfigError(f"{folder}: no sweep.json there (the questions' families come from the benchmark it names)")
    ident = json.loads(state.read_text())["identity"]
    name, root = ident.get("eval.benchmark"), ident.get("eval.root")
    from score_lit.data.benchmarks import load_benchmark

    try:
        bench = load_benchmark(name, root, limit=ident.get("eval.limit"), split=ident.get("eval.split"))
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(
            f"{folder}: cannot read its benchmark {name!r} at {root!r} for the questions' families ({e}); "
            "run from the folder the sweep ran in"
        ) from None
    family = {r.id: str(r.meta.get("family", "all")) for r in bench.records}
    missing = [i for i in ids if i not in family]
    if missing:
        raise ConfigError(
            f"{folder}: {len(missing)} answered questions are not in benchmark {name!r} at {root!r} "
            f"(e.g. {missing[0]!r}; a video gone, or the benchmark exported again?)"
        )
    csv_path = Path(folder) / "results.csv"
    if csv_path.is_file():
        want = {r["family"]: int(r["n"]) for r in csv.DictReader(csv_path.open()) if r["method"] == "vanilla"}
        have = {f: sum(family[i] == f for i in ids) for f in set(family[i] for i in ids)}
        bad = {f: (n, have.get(f)) for f, n in want.items() if f != "all" and have.get(f) != n}
        if bad:
            raise ConfigError(
                f"{folder}: its results.csv counts other questions per family than the benchmark now gives "
                f"(family: (results.csv, now) {bad}); the benchmark changed since the sweep"
            )
    return family


def select_families(family: dict[str, str], ids: list[str], spec: str) -> tuple[list[str], np.ndarray]:
    """(the families compared, sorted, and [Q] bool: which of `ids` belong to them) for --family all | a | a+b."""
    have = sorted(set(family[i] for i in ids))
    names = have if spec == "all" else sorted(set(spec.split("+")))
    missing = [f for f in names if f not in have]
    if missing:
        raise ConfigError(
            f"--family {spec}: the sweeps have no family {', '.join(missing)}; they have {', '.join(have)}"
        )
    return names, np.array([family[i] in names for i in ids])


def _aligned(out: Outcome, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(correct [Q] bool, prefill FLOPs [Q], NaN where not measured) in the reference question order."""
    correct = np.asarray(out.correct, dtype=bool)[order]
    flops = np.asarray(out.flops, dtype=float)[order] if out.flops else np.full(len(order), math.nan)
    return correct, flops


def _tflops(flops: np.ndarray) -> float:
    return float(np.mean(flops) / TERA) if flops.size else math.nan


def build_sweeps(
    rules: BatchRecord, labels: dict[str, dict[str, BatchRecord]], family: dict[str, str], spec: str
) -> tuple[Sweeps, list[str], dict[str, int]]:
    """The estimator's arrays on the questions of the families `spec` names, in the rules sweep's order; also the
    families and their question counts. labels: label -> {folder: record}."""
    names, keep = select_families(family, rules.ids, spec)
    ids = [i for i, k in zip(rules.ids, keep) if k]
    fam_index = np.array([names.index(family[i]) for i in ids])

    def order(rec: BatchRecord) -> np.ndarray:
        pos = {i: p for p, i in enumerate(rec.ids)}
        return np.array([pos[i] for i in ids], dtype=int)

    rules_order = order(rules)
    van, van_flops = _aligned(rules.vanilla, rules_order)
    rule_c, rule_f = {}, {}
    for (m, r), out in rules.methods.items():
        if m in ("vanilla", POLICY):
            continue
        correct, flops = _aligned(out, rules_order)
        rule_c.setdefault(m, {})[r] = correct
        rule_f.setdefault(m, {})[r] = _tflops(flops)
    if not rule_c:
        raise ConfigError(f"--rules: its sweep has no training-free method (only {POLICY} / vanilla)")
    label_c, label_f = {}, {}
    for label, recs in labels.items():
        if label in rule_c:
            raise ConfigError(f"{label!r}: a label may not be named as a method of the rules sweep")
        ratios = {f: sorted({r for m, r in rec.methods if m == POLICY and r < 1}) for f, rec in recs.items()}
        (first, want), *_ = ratios.items()
        for folder, got in ratios.items():
            if not got:
                raise ConfigError(
                    f"{label}: {folder} has no {POLICY} rows below ratio 1; sweep it with eval.methods=[score]"
                )
            if got != want:
                raise ConfigError(f"{label}: {folder} has ratios {got}, {first} has {want}; sweep every seed alike")
        orders = {folder: order(rec) for folder, rec in recs.items()}
        for r in want:
            per = [_aligned(rec.methods[POLICY, r], orders[folder]) for folder, rec in recs.items()]
            label_c.setdefault(label, {})[r] = np.stack([c for c, _ in per])
            label_f.setdefault(label, {})[r] = float(np.mean([_tflops(f) for _, f in per]))
    sw = Sweeps(fam_index, van, _tflops(van_flops), label_c, label_f, rule_c, rule_f)
    return sw, names, {f: int(np.sum(fam_index == k)) for k, f in enumerate(names)}


# ------------------------------------------------------------------------------------------------
# Outputs


def _pts(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def _signed(point: float, lo: float, hi: float) -> str:
    return "-" if math.isnan(point) else f"{100 * point:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _share(t: float, van: float) -> str:
    return "-" if math.isnan(t) else f"{t:.3g} ({100 * t / van:.0f}%)" if van > 0 else f"{t:.3g}"


def headline(accs: list[Accuracy], margins: list[Margin]) -> list[str]:
    """The report's first table: per recipe and ratio < 1, its accuracy (mean ± std [95%]), its margin over vanilla,
    and the rule closest to it at matched compute: the one whose margin has the lowest lower end (rules that never
    get that cheap left out), with the count of rules it is ahead of (lower end above 0) out of those that reach."""
    van = next(a for a in accs if a.kind == "vanilla")
    lines = [
        "## Headline",
        "",
        "| recipe | ratio | accuracy % (mean ± std [95%]) | % of vanilla | vs vanilla [95%] | closest rule at matched "
        "compute: margin [95%] | ahead of (lower end > 0) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in (x for x in accs if x.kind == "label" and x.ratio < 1):
        mine = [m for m in margins if m.label == a.method and m.ratio == a.ratio]
        vs_van = next(m for m in mine if m.how == "vanilla")
        reach = [m for m in mine if m.how == "matched" and not math.isnan(m.point)]
        close = min(reach, key=lambda m: m.lo, default=None)
        closest = (
            "-"
            if close is None
            else f"{close.versus} at {close.versus_ratio:g}: {_signed(close.point, close.lo, close.hi)}"
        )
        std = "" if math.isnan(a.std) else f" ± {100 * a.std:.1f}"
        pct = f"{100 * a.mean / van.mean:.1f}" if van.mean > 0 else "-"
        lines.append(
            f"| {a.method} | {a.ratio:g} | {_pts(a.mean)}{std} [{_pts(a.lo)}, {_pts(a.hi)}] | {pct} | "
            f"{_signed(vs_van.point, vs_van.lo, vs_van.hi)} | {closest} | {sum(m.lo > 0 for m in reach)} of {len(reach)} |"
        )
    return [*lines, ""]


def markdown(
    accs: list[Accuracy],
    margins: list[Margin],
    labels: dict[str, list[str]],
    spec: str,
    sizes: dict,
    boot: int,
    seed: int,
) -> str:
    """The report: accuracies per ratio, margins at matched compute (and at the same ratio), margins over vanilla."""
    van = next(a for a in accs if a.kind == "vanilla")
    lines = [
        f"# Seeds: {', '.join(labels)} against the training-free methods",
        "",
        f"Family `{spec}`: the mean over {', '.join(f'{f} ({n} questions)' for f, n in sizes.items())}, each family "
        f"weighing the same. Accuracy in %, margins in points. 95% percentile intervals from {boot} bootstrap "
        f"replicates (numpy seed {seed}): each draws the questions with replacement within each family (one draw "
        "for every method: margins are paired) and, for a recipe, its training seeds with replacement. std: the "
        "sample standard deviation over the seeds (ddof=1).",
        "",
        *(f"- {label}: {', '.join(folders)}" for label, folders in labels.items()),
        "",
        *headline(accs, margins),
        "## Accuracy",
        "",
        "| method | ratio | per seed | mean ± std | 95% interval | % of vanilla | prefill TFLOPs (of vanilla) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in accs:
        std = "" if math.isnan(a.std) else f" ± {100 * a.std:.1f}"
        per = ", ".join(_pts(x) for x in a.seeds) if a.kind == "label" else "-"
        pct = f"{100 * a.mean / van.mean:.1f}" if van.mean > 0 else "-"
        lines.append(
            f"| {a.method} | {a.ratio:g} | {per} | {_pts(a.mean)}{std} | [{_pts(a.lo)}, {_pts(a.hi)}] | {pct} | "
            f"{_share(a.tflops, van.tflops)} |"
        )
    lines += [
        "",
        "## Matched compute",
        "",
        "Each rule at its ratios whose prefill TFLOPs are no higher than the recipe's (eligible), at the best of them "
        "in each replicate (the conservative choice); `-`: the rule never gets that cheap. Same ratio: the rule at "
        "the recipe's ratio, whatever it costs (FastV costs more). The recipe is ahead at 95% where the interval's "
        "lower end is above 0.",
        "",
        "| recipe | ratio | TFLOPs | rule | eligible ratios | best: ratio | acc % | margin [95%] | same ratio: acc % "
        "| TFLOPs | margin [95%] |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    acc_of = {(a.method, a.ratio): a for a in accs}
    same_of = {(x.label, x.ratio, x.versus): x for x in margins if x.how == "same ratio"}
    for m in (x for x in margins if x.how == "matched"):
        rec, same = acc_of[m.label, m.ratio], same_of.get((m.label, m.ratio, m.versus))
        best = "-" if m.versus_ratio is None else f"{m.versus_ratio:g}"
        best_acc = "-" if m.versus_ratio is None else _pts(acc_of[m.versus, m.versus_ratio].mean)
        same_cells = (
            "- | - | -"
            if same is None
            else f"{_pts(acc_of[m.versus, same.versus_ratio].mean)} | {same.versus_tflops:.3g} | "
            f"{_signed(same.point, same.lo, same.hi)}"
        )
        lines.append(
            f"| {m.label} | {m.ratio:g} | {rec.tflops:.3g} | {m.versus} | {', '.join(f'{e:g}' for e in m.eligible) or '-'} "
            f"| {best} | {best_acc} | {_signed(m.point, m.lo, m.hi)} | {same_cells} |"
        )
    lines += [
        "",
        "## Against vanilla",
        "",
        f"Vanilla (every token): {_pts(van.mean)}% [{_pts(van.lo)}, {_pts(van.hi)}].",
        "",
        "| recipe | ratio | margin [95%] | the interval excludes 0 |",
        "|---|---|---|---|",
    ]
    for m in (x for x in margins if x.how == "vanilla"):
        verdict = "above vanilla" if m.lo > 0 else "below vanilla" if m.hi < 0 else "no"
        lines.append(f"| {m.label} | {m.ratio:g} | {_signed(m.point, m.lo, m.hi)} | {verdict} |")
    between = [x for x in margins if x.how == "recipe"]
    if between:
        lines += [
            "",
            f"## Between recipes: each minus {between[0].versus}",
            "",
            "The same ratio, the same question draw in every replicate, each recipe's seeds drawn on their own.",
            "",
            "| recipe | ratio | minus | difference [95%] | the interval excludes 0 |",
            "|---|---|---|---|---|",
        ]
        for m in between:
            verdict = "higher" if m.lo > 0 else "lower" if m.hi < 0 else "no"
            lines.append(f"| {m.label} | {m.ratio:g} | {m.versus} | {_signed(m.point, m.lo, m.hi)} | {verdict} |")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ["family", "method", "ratio", "quantity", "versus", "value"]


def csv_rows(accs: list[Accuracy], margins: list[Margin], spec: str) -> list[dict]:
    """Long rows: per method and ratio its accuracies (fractions), TFLOPs and shares; per margin (points) its point,
    lo, hi and the rule's ratio it was taken at."""
    van = next(a for a in accs if a.kind == "vanilla")
    rows = []

    def add(method, ratio, quantity, value, versus=""):
        rows.append(
            {"family": spec, "method": method, "ratio": ratio, "quantity": quantity, "versus": versus, "value": value}
        )

    for a in accs:
        for i, x in enumerate(a.seeds if a.kind == "label" else []):
            add(a.method, a.ratio, f"accuracy_seed{i}", x)
        for q, v in (("accuracy", a.mean), ("accuracy_std", a.std), ("accuracy_lo", a.lo), ("accuracy_hi", a.hi)):
            add(a.method, a.ratio, q, v)
        add(a.method, a.ratio, "pct_of_vanilla", 100 * a.mean / van.mean if van.mean > 0 else math.nan)
        add(a.method, a.ratio, "prefill_tflops", a.tflops)
        add(a.method, a.ratio, "flops_share_of_vanilla", a.tflops / van.tflops if van.tflops > 0 else math.nan)
    for m in margins:
        q = "margin_" + m.how.replace(" ", "_")
        for suffix, v in (("", m.point), ("_lo", m.lo), ("_hi", m.hi)):
            add(m.label, m.ratio, q + suffix, 100 * v, m.versus)
        if m.how != "vanilla":
            add(m.label, m.ratio, q + "_at_ratio", math.nan if m.versus_ratio is None else m.versus_ratio, m.versus)
    return rows


def plot(accs: list[Accuracy], path: Path, title: str) -> Path:
    """Accuracy against prefill FLOPs as a share of vanilla's (the retention ratio where FLOPs were not measured):
    each recipe's mean with its seeds' min..max band and bootstrap error bars, each rule a line, vanilla a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    van = next(a for a in accs if a.kind == "vanilla")
    by_flops = van.tflops > 0  # NaN (not measured) is not
    x_of = (lambda a: a.tflops / van.tflops) if by_flops else (lambda a: a.ratio)  # noqa: E731
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for method in dict.fromkeys(a.method for a in accs if a.kind != "vanilla"):
        pts = sorted((a for a in accs if a.method == method and not math.isnan(x_of(a))), key=x_of)
        if not pts:  # a method whose selection has no FLOPs formula
            continue
        x, y = np.array([x_of(a) for a in pts]), np.array([100 * a.mean for a in pts])
        err = np.array([[100 * (a.mean - a.lo) for a in pts], [100 * (a.hi - a.mean) for a in pts]])
        if pts[0].kind == "label":  # drawn on top: it is what the figure compares
            bars = ax.errorbar(x, y, yerr=err, marker="o", ms=4, lw=2.2, capsize=3, zorder=5, label=method)
            lo, hi = [100 * a.band[0] for a in pts], [100 * a.band[1] for a in pts]
            ax.fill_between(x, lo, hi, color=bars.lines[0].get_color(), alpha=0.2, lw=0, zorder=4)
        else:  # its interval is in the table: bars for every rule would hide the recipes'
            ax.plot(x, y, marker="s", ms=3, lw=1.0, alpha=0.8, label=method)
    van_err = [[100 * (van.mean - van.lo)], [100 * (van.hi - van.mean)]]
    ax.errorbar(
        [1.0], [100 * van.mean], yerr=van_err, marker="*", ms=10, color="k", capsize=3, ls="none", label="vanilla"
    )
    ax.set_xscale("log")
    ax.set_xlabel("prefill FLOPs / vanilla's" if by_flops else "retention ratio")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{title}\nrecipes: mean of seeds, band min..max over seeds, bars 95% interval", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(args: list[str]) -> int:
    """`python -m score_lit seeds-table --rules DIR LABEL=DIR1,DIR2,... [--family F] [--boot B] [--seed N] [--out DIR]`."""
    import argparse

    p = argparse.ArgumentParser(
        prog="score_lit seeds-table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("labels", nargs="+", metavar="LABEL=DIR1,DIR2,...", help="a recipe's sweeps, one per training seed")
    p.add_argument("--rules", required=True, help="an eval sweep of the training-free methods on the same questions")
    p.add_argument("--family", default="all", help="all (the mean over the families, default), a family, or a+b")
    p.add_argument("--boot", type=int, default=2000, help="bootstrap replicates (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's numpy seed (default 0)")
    p.add_argument("--out", default=None, help="where seeds.md/csv/png go (default: next to the first seed's folder)")
    ns = p.parse_args(args)
    if ns.boot < 1:
        raise ConfigError(f"--boot {ns.boot}: give at least 1 replicate (2000 is the default)")
    labels = parse_labels(ns.labels)
    rules = read_sweep(ns.rules)
    recs = {label: {folder: read_sweep(folder) for folder in folders} for label, folders in labels.items()}
    check_same_questions({ns.rules: rules, **{f: r for by in recs.values() for f, r in by.items()}})
    family = question_families(ns.rules, rules.ids)
    sw, _, sizes = build_sweeps(rules, recs, family, ns.family)
    accs, margins = estimate(sw, ns.boot, ns.seed)
    md = markdown(accs, margins, labels, ns.family, sizes, ns.boot, ns.seed)
    print(md, end="")
    out = Path(ns.out) if ns.out else Path(labels[next(iter(labels))][0]).resolve().parent / "seeds"
    out.mkdir(parents=True, exist_ok=True)
    (out / "seeds.md").write_text(md)
    write_csv(csv_rows(accs, margins, ns.family), out / "seeds.csv", CSV_FIELDS)
    plot(accs, out / "seeds.png", f"family {ns.family}: {', '.join(labels)} ({ns.boot} bootstrap replicates)")
    print(out / "seeds.md")
    return 0


__all__ = [
    "parse_labels",
    "read_sweep",
    "check_same_questions",
    "question_families",
    "select_families",
    "build_sweeps",
    "markdown",
    "csv_rows",
    "plot",
    "main",
]
