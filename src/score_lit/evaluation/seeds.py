"""Claims over training seeds: a recipe's accuracy over S training seeds with a bootstrap interval that resamples
seeds AND questions, and its margins over vanilla and over the training-free methods at matched compute. Pure
functions of arrays (no I/O); `python -m score_lit seeds-table` (score_lit.evaluation.seeds_table) reads the sweeps
and writes the report. Accuracies here are fractions; the report prints points.

Accuracy. The questions fall into families (the benchmark's meta["family"], as the sweep's report groups them);
the accuracy over F families is the mean of the families' accuracies, each family weighing the same (eval's `all`):

    acc(c) = sum_q w_q c_q,   w_q = 1 / (F Q_f(q))      c_q in {0, 1}; Q_f the number of questions of family f

Point estimates (the full data). A recipe (label) at ratio r: acc_s = acc(c_s) per seed s = 1..S; mean = (1/S)
sum_s acc_s; std = the sample standard deviation over seeds (ddof=1; NaN for S = 1). A rule, or vanilla: acc(c)
(training-free methods are deterministic: no seeds). Prefill TFLOPs: the mean over the questions (and the seeds).

Bootstrap (B replicates, a numpy Generator seeded with --seed). Replicate b draws, per family f, Q_f questions
with replacement from that family's Q_f (stratified: each family keeps its size, so the weights w stay as they
are); n_bq = how often question q was drawn. The question draws come first (the families in the order of their
index, i.e. by name), and ONE draw per replicate serves every method, ratio and label, so every margin is paired.
Then each label, in the order given, draws S seeds with replacement from its S (one draw per replicate, shared by
the label's ratios):

    rule, vanilla:  A_b = sum_q n_bq w_q c_q
    label:          A_b = (1/S) sum_j sum_q n_bq w_q c_{s_bj, q}          s_bj: the j-th seed replicate b drew

The 95% interval is the percentile interval: the 2.5th and 97.5th percentiles of A_1..A_B (numpy.percentile,
linear interpolation between order statistics).

Margins: the point margin is the difference of the full-data estimates; its interval the percentiles of the
per-replicate differences.

    vs vanilla       A_b(label, r) - A_b(vanilla)
    matched compute  the rule's eligible ratios E are those whose prefill TFLOPs <= the label's at r times
                     (1 + 1e-9) (as score_lit.compressors.flops.matched_compute; fixed once, from the full data);
                     margin_b = A_b(label, r) - max_{e in E} A_b(rule, e). The max is taken INSIDE each replicate,
                     which can only favour the rule: the conservative choice. Point: mean - max_{e in E} acc(rule,
                     e), the accuracy matched_compute picks. E empty: the rule never gets that cheap (no margin).
    same ratio       A_b(label, r) - A_b(rule, r): FastV beside the matched one, where it costs more FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

RTOL = 1e-9  # a rule's FLOPs equal to the label's, up to rounding, are eligible (flops.matched_compute's rtol)
LEVEL = (2.5, 97.5)  # the percentile interval's ends: 95%


# ------------------------------------------------------------------------------------------------
# The estimator's parts


def family_weights(family: np.ndarray) -> np.ndarray:
    """[Q] family index per question -> [Q] weights w_q = 1 / (F Q_f(q)): acc = correct @ w is the mean of the
    families' accuracies."""
    family = np.asarray(family)
    _, inverse, counts = np.unique(family, return_inverse=True, return_counts=True)
    return 1.0 / (len(counts) * counts[inverse])


def accuracy(correct: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[..., Q] correct (bool) -> [...] the mean of the families' accuracies."""
    return np.asarray(correct, dtype=float) @ w


def draw_questions(rng: np.random.Generator, family: np.ndarray, boot: int) -> np.ndarray:
    """[B, Q] question indices: per family (in index order), its Q_f questions drawn with replacement from its own, so each
    replicate has each family's size. Columns are grouped by family (family 0's block first)."""
    family = np.asarray(family)
    blocks = []
    for f in np.unique(family):
        members = np.flatnonzero(family == f)
        blocks.append(members[rng.integers(0, len(members), size=(boot, len(members)))])
    return np.concatenate(blocks, axis=1)


def draw_counts(idx: np.ndarray, n_questions: int) -> np.ndarray:
    """[B, Q'] drawn question indices -> [B, Q] float: how often each question was drawn in each replicate."""
    boot = idx.shape[0]
    flat = (np.arange(boot)[:, None] * n_questions + idx).ravel()
    return np.bincount(flat, minlength=boot * n_questions).reshape(boot, n_questions).astype(float)


def replicates(correct: np.ndarray, counts: np.ndarray, w: np.ndarray) -> np.ndarray:
    """[K, Q] correct of K columns (methods x ratios x seeds) and [B, Q] draw counts -> [B, K] replicate
    accuracies A_b = sum_q n_bq w_q c_q (the family mean on the drawn questions: the draw is stratified)."""
    return (counts * w) @ np.asarray(correct, dtype=float).T


def seed_mean(per_seed: np.ndarray, seed_draw: np.ndarray) -> np.ndarray:
    """[B, S] a label's replicate accuracy per seed and [B, S] the seeds each replicate drew -> [B] their mean."""
    return np.take_along_axis(per_seed, seed_draw, axis=1).mean(axis=1)


def interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of B replicates."""
    lo, hi = np.percentile(values, LEVEL)
    return float(lo), float(hi)


def eligible(tflops: dict[float, float], budget: float, rtol: float = RTOL) -> list[float]:
    """The ratios of a rule ({ratio: prefill TFLOPs}) that cost no more than `budget` (up to rtol), highest ratio
    first; a NaN (unmeasured) cost is never eligible."""
    return sorted((r for r, f in tflops.items() if f <= budget * (1 + rtol)), reverse=True)


def sample_std(values) -> float:
    """The sample standard deviation (ddof=1); NaN for fewer than two values."""
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


# ------------------------------------------------------------------------------------------------
# The whole table


@dataclass
class Sweeps:
    """The per-question results of every sweep, aligned on one question order; arrays are [Q] or [S, Q]."""

    family: np.ndarray  # [Q] family index of each question
    vanilla: np.ndarray  # [Q] bool
    vanilla_tflops: float  # mean prefill TFLOPs per question
    labels: dict[str, dict[float, np.ndarray]]  # label -> ratio -> [S, Q] bool, one row per training seed
    label_tflops: dict[str, dict[float, float]]  # label -> ratio -> mean over seeds and questions
    rules: dict[str, dict[float, np.ndarray]]  # rule -> ratio -> [Q] bool
    rule_tflops: dict[str, dict[float, float]]  # rule -> ratio -> mean over questions


@dataclass
class Accuracy:
    """One method (a label, a rule or vanilla) at one ratio."""

    method: str
    kind: str  # "label", "rule" or "vanilla"
    ratio: float
    seeds: list[float]  # accuracy per seed (a rule, vanilla: the one)
    mean: float
    std: float  # over seeds, ddof=1; NaN for a rule, vanilla, one seed
    lo: float
    hi: float
    tflops: float
    band: tuple[float, float] = (math.nan, math.nan)  # min, max over seeds


@dataclass
class Margin:
    """A label at one ratio minus another method; NaN point / interval where a rule never gets that cheap."""

    label: str
    ratio: float
    versus: str  # a rule, or "vanilla"
    how: str  # "matched", "same ratio", "vanilla" or "recipe" (another recipe minus the first label, same ratio)
    point: float
    lo: float
    hi: float
    versus_ratio: float | None = None  # the ratio the full data picks (matched: the best eligible one)
    versus_tflops: float = math.nan
    eligible: list[float] = field(default_factory=list)  # matched: the rule's ratios within the label's TFLOPs


def estimate(sw: Sweeps, boot: int = 2000, seed: int = 0) -> tuple[list[Accuracy], list[Margin]]:
    """Every accuracy with its interval (vanilla, the labels' ratios, the rules' ratios) and every margin (per label
    and ratio: against vanilla, then per rule at matched compute and at the same ratio); module docstring."""
    rng = np.random.default_rng(seed)
    w = family_weights(sw.family)
    counts = draw_counts(draw_questions(rng, sw.family, boot), len(sw.family))
    draws = {label: rng.integers(0, _n_seeds(by), size=(boot, _n_seeds(by))) for label, by in sw.labels.items()}

    # one matrix product for every column: vanilla, each label's seeds at each ratio, each rule at each ratio
    columns = {("vanilla", 1.0): sw.vanilla[None]}
    columns |= {(label, r): c for label, by in sw.labels.items() for r, c in sorted(by.items(), reverse=True)}
    columns |= {(rule, r): c[None] for rule, by in sw.rules.items() for r, c in sorted(by.items(), reverse=True)}
    ends = np.cumsum([len(c) for c in columns.values()])
    all_reps = replicates(np.concatenate(list(columns.values())), counts, w)  # [B, K]
    reps = {key: all_reps[:, end - len(c) : end] for (key, c), end in zip(columns.items(), ends)}  # [B, S] or [B, 1]

    van_rep = reps["vanilla", 1.0][:, 0]
    van_acc = float(accuracy(sw.vanilla, w))
    accs = [Accuracy("vanilla", "vanilla", 1.0, [van_acc], van_acc, math.nan, *interval(van_rep), sw.vanilla_tflops)]
    label_rep: dict[tuple[str, float], np.ndarray] = {}
    for label, by in sw.labels.items():
        for r, c in sorted(by.items(), reverse=True):
            per_seed = [float(a) for a in accuracy(c, w)]
            label_rep[label, r] = seed_mean(reps[label, r], draws[label])
            accs.append(
                Accuracy(
                    label,
                    "label",
                    r,
                    per_seed,
                    float(np.mean(per_seed)),
                    sample_std(per_seed),
                    *interval(label_rep[label, r]),
                    sw.label_tflops[label][r],
                    (min(per_seed), max(per_seed)),
                )
            )
    rule_rep: dict[tuple[str, float], np.ndarray] = {}
    rule_acc: dict[tuple[str, float], float] = {}
    for rule, by in sw.rules.items():
        for r, c in sorted(by.items(), reverse=True):
            rule_rep[rule, r] = reps[rule, r][:, 0]
            rule_acc[rule, r] = float(accuracy(c, w))
            a = rule_acc[rule, r]
            accs.append(
                Accuracy(rule, "rule", r, [a], a, math.nan, *interval(rule_rep[rule, r]), sw.rule_tflops[rule][r])
            )

    margins = []
    for a in (x for x in accs if x.kind == "label"):
        rep = label_rep[a.method, a.ratio]
        margins.append(
            Margin(
                a.method,
                a.ratio,
                "vanilla",
                "vanilla",
                a.mean - van_acc,
                *interval(rep - van_rep),
                1.0,
                sw.vanilla_tflops,
            )
        )
        for rule, cost in sw.rule_tflops.items():
            ok = eligible(cost, a.tflops)
            if ok:
                best = max(ok, key=lambda e: (rule_acc[rule, e], -cost[e], e))  # matched_compute's tie order
                rule_best = np.max(np.stack([rule_rep[rule, e] for e in ok], axis=1), axis=1)
                margin = a.mean - rule_acc[rule, best]
                margins.append(
                    Margin(a.method, a.ratio, rule, "matched", margin, *interval(rep - rule_best), best, cost[best], ok)
                )
            else:
                margins.append(Margin(a.method, a.ratio, rule, "matched", math.nan, math.nan, math.nan))
            same = next((e for e in cost if abs(e - a.ratio) < 1e-9), None)
            if same is not None:
                margin = a.mean - rule_acc[rule, same]
                margins.append(
                    Margin(
                        a.method,
                        a.ratio,
                        rule,
                        "same ratio",
                        margin,
                        *interval(rep - rule_rep[rule, same]),
                        same,
                        cost[same],
                    )
                )
    first = next(iter(sw.labels), None)  # every other recipe against the first, ratio by ratio (paired questions)
    for a in (x for x in accs if x.kind == "label" and x.method != first):
        ref = next((x for x in accs if x.kind == "label" and x.method == first and x.ratio == a.ratio), None)
        if ref is not None:
            diff = label_rep[a.method, a.ratio] - label_rep[first, a.ratio]
            margins.append(Margin(a.method, a.ratio, first, "recipe", a.mean - ref.mean, *interval(diff), a.ratio))
    return accs, margins


def _n_seeds(by_ratio: dict[float, np.ndarray]) -> int:
    return next(iter(by_ratio.values())).shape[0]


__all__ = [
    "family_weights",
    "accuracy",
    "draw_questions",
    "draw_counts",
    "replicates",
    "seed_mean",
    "interval",
    "eligible",
    "sample_std",
    "Sweeps",
    "Accuracy",
    "Margin",
    "estimate",
]
