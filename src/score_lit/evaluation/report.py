"""The sweep's report: per-(family, method, ratio) rows from the merged record, and the files made of them.

    rows = result_rows(record, family, benchmark)      # one dict per family x (vanilla + method x ratio)
    write_csv(rows, out / "results.csv"); results_markdown(rows, title); plot_accuracy(rows, png, title)
    # its picture: accuracy_figure (accuracy vs retention, and vs prefill FLOPs as a share of vanilla's)

Columns (FIELDS; what they mean: score_lit.evaluation.sweep's docstring). `accuracy` of family `all` is the
mean of the families' accuracies (each family weighs the same); times are per question over the questions of
the whole sweep (vanilla's count), FLOPs means over the family's questions.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from score_lit.compressors.flops import TERA
from score_lit.config import keep_count, retention_label
from score_lit.evaluation.records import BatchRecord, Outcome

FIELDS = [
    "benchmark",
    "family",
    "method",
    "retention_ratio",
    "accuracy",
    "pct_of_vanilla",
    "kept_tokens_mean",
    "budget_tokens",
    "over_budget",
    "prefill_ms",
    "select_ms",
    "prefill_tflops",
    "select_tflops",
    "flops_pct_of_vanilla",
    "vision_tflops",
    "total_tflops",
    "total_flops_pct_of_vanilla",
    "n",
]


def by_family(correct: dict, family: dict) -> dict:
    """{question id: correct} -> {family: accuracy, "all": the mean of the families' accuracies}."""
    groups = defaultdict(list)
    for i, c in correct.items():
        groups[family[i]].append(c)
    accs = {f: sum(v) / len(v) for f, v in sorted(groups.items())}
    accs["all"] = sum(accs.values()) / max(len(accs), 1)  # mean of the families: each weighs the same
    return accs


def _family_mean(ids: list[str], values: list[float], family: dict, fam: str) -> float:
    """Mean of the values of the questions of family `fam` (all: every question); NaN if none was measured."""
    xs = [v for i, v in zip(ids, values) if fam == "all" or family[i] == fam]
    return sum(xs) / len(xs) if xs else float("nan")


def result_rows(record: BatchRecord, family: dict, bench_name: str) -> list[dict]:
    """The CSV's rows: vanilla (ratio 1.0) then every (method, ratio) of record.methods, each per family and `all`.
    family: question id -> its family."""
    rows = []
    ids, n = record.ids, len(record.ids)
    van = by_family(dict(zip(ids, record.vanilla.correct)), family)

    def add(method: str, ratio: float, t: Outcome, accs: dict) -> None:
        kept = sum(t.kept) / max(len(t.kept), 1)
        budget = keep_count(ratio, record.n_tokens)
        for fam, acc in accs.items():
            flops, van_flops = (
                _family_mean(ids, t.flops, family, fam),
                _family_mean(ids, record.vanilla.flops, family, fam),
            )
            vis, van_vis = (
                _family_mean(ids, t.vision_flops, family, fam),
                _family_mean(ids, record.vanilla.vision_flops, family, fam),
            )
            rows.append(
                {
                    "benchmark": bench_name,
                    "family": fam,
                    "method": method,
                    "retention_ratio": ratio,
                    "accuracy": round(acc, 4),
                    "pct_of_vanilla": round(100 * acc / van[fam], 2) if van[fam] > 0 else float("nan"),
                    "kept_tokens_mean": round(kept, 2),
                    "budget_tokens": budget,
                    "over_budget": int(kept > budget + 1e-9),
                    "prefill_ms": round(1000 * t.prefill_s / max(n, 1), 3),
                    "select_ms": round(1000 * t.select_s / max(n, 1), 3),
                    "prefill_tflops": flops / TERA,
                    "select_tflops": _family_mean(ids, t.select_flops, family, fam) / TERA,
                    "flops_pct_of_vanilla": round(100 * flops / van_flops, 2) if van_flops > 0 else float("nan"),
                    "vision_tflops": vis / TERA,
                    "total_tflops": (vis + flops) / TERA,
                    "total_flops_pct_of_vanilla": round(100 * (vis + flops) / (van_vis + van_flops), 2)
                    if van_vis + van_flops > 0
                    else float("nan"),
                    "n": sum(1 for i in ids if fam == "all" or family[i] == fam),
                }
            )

    add("vanilla", 1.0, record.vanilla, van)
    for (m, r), t in record.methods.items():
        add(m, r, t, by_family(dict(zip(ids, t.correct)), family))
    return rows


# ------------------------------------------------------------------------------------------------
# Outputs


def write_csv(rows: list[dict], path: Path, fields: list[str] = FIELDS) -> Path:
    """rows as a CSV with the columns `fields` (the sweep's FIELDS unless another table's are given)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return path


def markdown_table(rows: list[dict], family: str = "all") -> str:
    """Accuracy (% of vanilla) per method (rows) and ratio (columns) for one family; * = over budget."""
    ratios = sorted({r["retention_ratio"] for r in rows if r["method"] != "vanilla"}, reverse=True)
    sel = [r for r in rows if r["family"] == family]
    van = next(r for r in sel if r["method"] == "vanilla")
    head = "| method | " + " | ".join(f"{int(round(100 * q))}%" for q in ratios) + " |"
    lines = [
        head,
        "|---" * (len(ratios) + 1) + "|",
        f"| vanilla (all {int(van['kept_tokens_mean'])} tokens) | "
        + " | ".join(f"{100 * van['accuracy']:.1f}" for _ in ratios)
        + " |",
    ]
    for m in dict.fromkeys(r["method"] for r in sel if r["method"] != "vanilla"):
        cells = []
        for q in ratios:
            r = next((x for x in sel if x["method"] == m and x["retention_ratio"] == q), None)
            cells.append(
                ""
                if r is None
                else f"{100 * r['accuracy']:.1f} ({r['pct_of_vanilla']:.0f}%){'*' if r['over_budget'] else ''}"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


_UNITS = (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3), ("", 1.0))


def flops_unit(value: float) -> tuple[str, float]:
    """The largest of T, G, M, k (or none) in which `value` FLOPs is at least 1: ("T", 1e12) for a 7B model."""
    return next(((p, u) for p, u in _UNITS if value >= u), _UNITS[-1])


def _pct(x: float) -> str:
    """A share in whole percent, with decimals where rounding would show 100 for a value that is not (FastV's
    small excess over vanilla on a 2-layer LLM must stay visible)."""
    for digits in (0, 1, 2):
        s = f"{x:.{digits}f}"
        if x == 100 or float(s) != 100:
            return s
    return s


def compute_table(rows: list[dict], family: str = "all") -> str:
    """Prefill FLOPs per question (selection included) and their share of vanilla's, per method (rows) and
    ratio (columns), for one family; one unit for the table, the one that fits vanilla (flops_unit)."""
    ratios = sorted({r["retention_ratio"] for r in rows if r["method"] != "vanilla"}, reverse=True)
    sel = [r for r in rows if r["family"] == family]
    van = next(r for r in sel if r["method"] == "vanilla")
    prefix, unit = flops_unit(TERA * van["prefill_tflops"])
    fmt = lambda r: f"{TERA * r['prefill_tflops'] / unit:.3g} ({_pct(r['flops_pct_of_vanilla'])}%)"  # noqa: E731
    head = f"| method ({prefix}FLOPs) | " + " | ".join(f"{int(round(100 * q))}%" for q in ratios) + " |"
    lines = [head, "|---" * (len(ratios) + 1) + "|", "| vanilla | " + " | ".join(fmt(van) for _ in ratios) + " |"]
    for m in dict.fromkeys(r["method"] for r in sel if r["method"] != "vanilla"):
        cells = []
        for q in ratios:
            r = next((x for x in sel if x["method"] == m and x["retention_ratio"] == q), None)
            cells.append("" if r is None else fmt(r))
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compute_curves(rows: list[dict], family: str = "all") -> dict[str, list[tuple[float, float]]]:
    """Per method of `family` (vanilla first, at 1.0): its (prefill FLOPs as a share of vanilla's, accuracy %) points,
    cheapest first, rows without FLOPs left out. {} where vanilla has no FLOPs (a sweep that did not count them)."""
    sel = [r for r in rows if r["family"] == family and r["prefill_tflops"] == r["prefill_tflops"]]
    van = next((r for r in sel if r["method"] == "vanilla"), None)
    if van is None or not van["prefill_tflops"] > 0:
        return {}
    out = {"vanilla": [(1.0, 100 * van["accuracy"])]}
    for m in dict.fromkeys(r["method"] for r in sel if r["method"] != "vanilla"):  # sel: rows with FLOPs only
        out[m] = sorted(
            (r["prefill_tflops"] / van["prefill_tflops"], 100 * r["accuracy"]) for r in sel if r["method"] == m
        )
    return out


def _plain_log_x(ax) -> None:
    """A log x axis labelled 0.05, 0.8, 1 (matplotlib's choice of ticks) rather than 5x10^-2, 8x10^-1, 10^0."""
    from matplotlib.ticker import LogFormatterSciNotation

    class Plain(LogFormatterSciNotation):
        def __call__(self, x, pos=None):
            return f"{x:g}" if super().__call__(x, pos) else ""  # "" where matplotlib leaves a tick unlabelled

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(Plain(10))
    ax.xaxis.set_minor_formatter(Plain(10, labelOnlyBase=False))


def accuracy_figure(rows: list[dict], title: str):
    """The sweep's picture: accuracy against retention ratio for family `all` and for each family, and, where the rows
    have prefill FLOPs, beside `all` its accuracy against prefill FLOPs as a share of vanilla's (matched compute is
    read along a vertical line). Returns the matplotlib Figure (its axes: one per panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = list(dict.fromkeys(r["family"] for r in rows))
    fams = ["all"] + [f for f in fams if f != "all"]
    curves = compute_curves(rows)
    colour = {m: f"C{i}" for i, m in enumerate(dict.fromkeys(r["method"] for r in rows if r["method"] != "vanilla"))}
    panels = fams[:1] + (["compute"] if len(curves) > 1 else []) + fams[1:]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "compute":
            van = curves["vanilla"][0]
            ax.axhline(van[1], color="k", ls="--", lw=1)
            ax.plot(*van, "k*", ms=9, label="vanilla", zorder=6)
            pts = {m: p for m, p in curves.items() if m != "vanilla"}
            xlabel, name = "prefill FLOPs / vanilla's", "all: accuracy vs compute"
        else:
            sel = [r for r in rows if r["family"] == panel]
            van = next(r for r in sel if r["method"] == "vanilla")
            ax.axhline(100 * van["accuracy"], color="k", ls="--", lw=1, label="vanilla")
            pts = {
                m: sorted((r["retention_ratio"], 100 * r["accuracy"]) for r in sel if r["method"] == m)
                for m in dict.fromkeys(r["method"] for r in sel if r["method"] != "vanilla")
            }
            xlabel, name = "retention ratio", panel
        for m, p in pts.items():
            main = m == "score"  # drawn on top: it is what the figure compares
            ax.plot(
                [x for x, _ in p],
                [y for _, y in p],
                marker="o",
                ms=3,
                lw=2.4 if main else 1.2,
                label=m,
                zorder=5 if main else 2,
                color=colour[m],  # a method keeps its colour from panel to panel
            )
        _plain_log_x(ax)
        ax.set_xlabel(xlabel)
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracy(rows: list[dict], path: Path, title: str) -> Path:
    """accuracy_figure saved to `path`."""
    import matplotlib.pyplot as plt

    fig = accuracy_figure(rows, title)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def results_markdown(rows: list[dict], title: str) -> str:
    """results.md: the accuracy table and the compute table of family `all`."""
    return (
        f"# {title}\n\nAccuracy % (share of vanilla); * = kept more tokens than the budget.\n\n"
        + markdown_table(rows)
        + "\n\nPrefill compute per question (share of vanilla's): the LLM over text + kept tokens plus what the "
        "method's selection costs (FastV: its first K layers over every token and its ranking); vision encoder "
        "not included (score_lit.compressors.flops).\n\n" + compute_table(rows) + "\n"
    )


def pictures(cfg, record: BatchRecord, records_of_bench: list, out: Path) -> list[Path]:
    """Kept-token grids of the first few questions: one row per method at eval.viz_ratio (kept_tokens_<i>.png)."""
    if not record.viz:
        return []
    from score_lit.data.video_qa import load_video
    from score_lit.evaluation.viz import kept_token_grid

    e = cfg.eval
    by_id = defaultdict(list)
    for v in record.viz:
        by_id[v.id].append(v)
    recs = {r.id: r for r in records_of_bench}
    paths = []
    for i, (qid, items) in enumerate(by_id.items()):
        r = recs[qid]
        frames, _ = load_video(r.video, e.frames, e.size, e.fit, e.sample_fps, r.start, r.end, e.decode_resize)
        rows = [(f"{v.method} {retention_label(v.ratio)}", v.keep) for v in items]
        p = out / f"kept_tokens_{i}.png"
        kept_token_grid(frames, rows, items[0].grid, p, title=f"{qid}: {r.question[:60]} (answer {r.answer})")
        paths.append(p)
    return paths
