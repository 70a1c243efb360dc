"""The retention sweep: every method at every retention ratio on one benchmark, with the frozen MLLM.

    python -m score_lit eval conf/eval.yaml eval.methods=[score,surprise] eval.ratios=[0.1,0.05]

For each batch of questions: decode (or read the feature cache) -> encode once -> tokenize once; then
vanilla (all tokens) once, and for each (method, ratio) the method's selection (score_lit.compressors)
followed by one LLM call on text + kept tokens. Recorded per (method, ratio):
  accuracy         argmax over the options' first-token logits == the answer, per family; family `all`
                   is the mean of the families' accuracies (each family weighs the same);
  pct_of_vanilla   accuracy / vanilla's accuracy on the same questions in the same run, x 100;
  kept_tokens_mean visual tokens actually given to the LLM, per question; over_budget flags a method
                   that kept more than k = ceil(r * T * N) on average (e.g. whole-frame `uniform`
                   below one frame's worth);
  prefill_ms       wall time of the LLM call (text + kept tokens, through the answer-predicting
                   position) per question, batch of eval.batch_size; select_ms the method's own time
                   (FastV's partial forward for its ranking is here, not in prefill_ms);
  prefill_tflops   compute per question (mean), TFLOPs: the LLM prefill over the prompt's text (before the
                   video, and after it up to the answer) + the kept visual tokens, lm_head on the last
                   position (score_lit.evaluation.flops.prefill_flops), plus select_tflops, what the method's selection
                   costs beyond that (compressor.selection_flops: the policy's state + MLP over all T*N tokens,
                   merging's similarities, FastV's first K layers over every token + its ranking, as FastV
                   runs in deployment; formulas and what the sweep itself executes in score_lit.evaluation.flops). The
                   vision encoder is left out (the same for every method). flops_pct_of_vanilla = prefill_tflops
                   / vanilla's on the same questions x 100; a method whose selection has no formula gets NaN.
                   flops.matched_compute(rows) picks, per method, the best accuracy at no more compute than
                   SCORE's.
Outputs in eval.out_dir: results.csv (one row per benchmark, family, method, ratio), results.md, and
accuracy_vs_retention.png (one line per method); kept-token pictures of a few questions. MLflow: one
parent run per sweep (CSV, table, plot and pictures as its artifacts) and one child run per (method,
ratio) with `method`, `retention_ratio`, `benchmark` as params and tags, so the UI's compare view puts
ratios side by side. A video that fails to load is reported once and left out of every row (never
replaced by another question); the number evaluated is in the table.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from score_lit.config import Config, check_files, keep_count, retention_label
from score_lit.data.common import Problem, Sample, SampleError
from score_lit.evaluation.flops import TERA
from score_lit.training.interrupts import SigintLatch, sigint_held

log = logging.getLogger("score_lit.evaluation.sweep")
FIELDS = ["benchmark", "family", "method", "retention_ratio", "accuracy", "pct_of_vanilla", "kept_tokens_mean",
          "budget_tokens", "over_budget", "prefill_ms", "select_ms", "prefill_tflops", "select_tflops",
          "flops_pct_of_vanilla", "n"]  # fmt: skip


class EvalDataset(Dataset):
    """The benchmark's videos (cached projector output instead, where eval.cache_dir has it); a video that fails to
    load comes back as its Problem (left out, not replaced)."""

    def __init__(self, ds, benchmark: str, cache=None):
        self.ds, self.benchmark, self.cache = ds, benchmark, cache

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Sample | Problem:
        from score_lit.data.phases import load_cached

        try:
            return load_cached(self.ds, i, self.cache)
        except SampleError as e:
            r = self.ds.records[i]
            return Problem(r.meta.get("source", self.benchmark), r.line, e.reason, r.id, e.path)


def collate_eval(items: list) -> tuple:
    from score_lit.data.common import collate

    good = [s for s in items if isinstance(s, Sample)]
    return (collate(good) if good else None), [p for p in items if isinstance(p, Problem)]


@dataclass
class Tally:
    """Per-question results of one (method, ratio)."""

    correct: dict  # id -> bool
    kept: dict  # id -> int
    prefill_s: float = 0.0
    select_s: float = 0.0
    flops: dict = field(default_factory=dict)  # id -> prefill FLOPs incl. the selection (score_lit.evaluation.flops)
    select_flops: dict = field(default_factory=dict)  # id -> the selection's part of them

    @classmethod
    def new(cls) -> "Tally":
        return cls({}, {})


def _timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t0


def _tally_part(t: "Tally", ids: list[str]) -> dict:
    """The per-question results of `ids` in t (one line of questions.jsonl), JSON-ready."""
    return {"correct": [t.correct[i] for i in ids], "kept": [t.kept[i] for i in ids], "flops": [t.flops.get(i) for i in ids],
            "select_flops": [t.select_flops.get(i) for i in ids]}  # fmt: skip


def _restore(t: "Tally", ids: list[str], part: dict, prefill_s: float, select_s: float) -> None:
    for i, c, k, f, sf in zip(ids, part["correct"], part["kept"], part["flops"], part["select_flops"]):
        t.correct[i], t.kept[i] = bool(c), int(k)
        if f is not None:
            t.flops[i], t.select_flops[i] = float(f), float(sf)
    t.prefill_s += prefill_s
    t.select_s += select_s


@torch.no_grad()
def sweep(cfg: Config, progress=True, done: list[dict] = (), on_batch=None) -> dict:
    """Run the sweep; returns {"rows": [...], "vanilla": Tally, "tallies": {(method, ratio): Tally}, ...}.

    Resumable: `done` holds the per-batch records (questions.jsonl lines) of an interrupted run of the same
    sweep; their questions are restored, not recomputed, and the sweep goes on with the rest, in the same
    batches as an uninterrupted run (complete batches only were recorded). `on_batch(record)` is called
    after every batch with its record (run_eval appends it to questions.jsonl)."""
    from tqdm import tqdm

    from score_lit.compressors import apply_selection, build_compressor
    from score_lit.data.benchmarks import load_benchmark
    from score_lit.data.video_qa import VideoQADataset
    from score_lit.data.encode import encode
    from score_lit.data.feature_cache import FeatureCache, model_key
    from score_lit.evaluation.flops import prefill_flops, question_flops
    from score_lit.mllm import build_mllm

    check_files(cfg)
    e = cfg.eval
    bench = load_benchmark(e.benchmark, e.root, limit=e.limit, split=e.split)
    for p in bench.problems:
        log.warning("left out: %s", p)
    if not bench.records:
        from score_lit.config import DataError

        raise DataError(f"benchmark {e.benchmark!r} at {e.root!r} has no usable question; see the problems above")
    family = {r.id: r.meta.get("family", "all") for r in bench.records}
    mllm = build_mllm(cfg.mllm)
    cache = FeatureCache(e.cache_dir, model_key(cfg.mllm, mllm.identity())) if e.cache_dir else None
    comps = {
        m: build_compressor(m, mllm=mllm, policy_path=e.policy, selection=cfg.policy.selection, seed=cfg.seed, layer=e.fastv_layer)
        for m in e.methods
    }  # fmt: skip
    text_cfg = mllm.model.config.text_config  # the LLM's sizes, for the FLOPs columns
    no_flops: set = set()  # methods without a selection FLOPs formula (warned once)
    vanilla, tallies = Tally.new(), {(m, r): Tally.new() for m in e.methods for r in e.ratios}
    problems: list[Problem] = list(bench.problems)
    viz: list[dict] = []
    viz_ids: list[str] = []  # the first eval.viz_samples questions get kept-token pictures
    n_tokens, grid = 0, None
    seen: set[str] = set()
    for rec in done:  # an interrupted run's batches: restored as they were recorded
        ids = rec["ids"]
        seen.update(ids, (p["sample_id"] for p in rec["left_out"]))
        problems += [Problem(**p) for p in rec["left_out"]]
        _restore(vanilla, ids, rec["vanilla"], rec["vanilla"]["prefill_s"], 0.0)
        for key, part in rec["methods"].items():
            m, r = key.rsplit("@", 1)
            _restore(tallies[(m, float(r))], ids, part, part["prefill_s"], part["select_s"])
        viz += [{**v, "keep": torch.tensor(v["keep"], dtype=torch.bool), "grid": tuple(v["grid"])} for v in rec["viz"]]
        viz_ids += [i for i in ids[: max(e.viz_samples - len(viz_ids), 0)]]
        n_tokens, grid = rec["n_tokens"], tuple(rec["grid"])
    todo = [r for r in bench.records if r.id not in seen]
    ds = EvalDataset(VideoQADataset(todo, e.frames, e.size, e.fit, e.sample_fps), e.benchmark, cache)
    loader = DataLoader(ds, batch_size=e.batch_size, shuffle=False, collate_fn=collate_eval, num_workers=e.num_workers)
    dev = mllm.device
    total = -(-len(bench.records) // e.batch_size)
    bar = tqdm(loader, desc=f"eval {e.benchmark}", unit="batch", file=sys.stderr, disable=not progress, dynamic_ncols=True,
               total=total, initial=total - len(loader))  # fmt: skip
    current: list[str] = []
    interrupted = False
    latch = SigintLatch().install()  # a Ctrl-C swallowed on its way up (interrupts.py) still ends the sweep here
    try:
        for batch, bad in bar:
            latch.check()
            for p in bad:
                log.warning("left out: %s", p)
            problems += bad
            rec = {"ids": [], "left_out": [vars(p) for p in bad], "vanilla": {}, "methods": {}, "viz": []}
            if batch is None:
                if on_batch is not None:
                    on_batch({**rec, "n_tokens": n_tokens, "grid": list(grid or ())})
                continue
            current = list(batch.ids)
            new_viz = [i for i in batch.ids[: max(e.viz_samples - len(viz_ids), 0)]]
            viz_ids += new_viz
            visual = encode(mllm, batch)
            n_tokens, grid = visual.num_tokens, tuple(visual.grid)
            prompts = mllm.tokenize(batch)
            ans = batch.answer_index.to(dev)
            full = torch.ones(len(batch), 1, visual.num_tokens, dtype=torch.bool, device=dev)
            text, shape = prompt_text_tokens(prompts, mllm), tuple(visual.tokens.shape[1:])  # shape (T, N, D)
            scores, dt = _timed(lambda: mllm.score(visual, prompts, full), dev)
            flops = [prefill_flops(text_cfg, n + visual.num_tokens) for n in text]
            _record(vanilla, batch.ids, scores.option_logits[:, 0].argmax(-1) == ans, full[:, 0], dt, 0.0, flops, [0] * len(text))
            rec["ids"] = list(batch.ids)
            rec["vanilla"] = {**_tally_part(vanilla, batch.ids), "prefill_s": dt}
            for (m, r), tally in tallies.items():
                sel, ds_ = _timed(lambda: comps[m].select(visual, r, prompts), dev)
                vis, masks = apply_selection(visual, sel)
                scores, dt = _timed(lambda: mllm.score(vis, prompts, masks.to(dev)), dev)
                sf = [_selection_flops(comps[m], shape, r, n, text_cfg, no_flops) for n in text]
                flops = [question_flops(text_cfg, n, k, s) for n, k, s in zip(text, sel.keep.sum(-1).tolist(), sf)]
                _record(tally, batch.ids, scores.option_logits[:, 0].argmax(-1) == ans, sel.keep, dt, ds_, flops, sf)
                rec["methods"][f"{m}@{r}"] = {**_tally_part(tally, batch.ids), "prefill_s": dt, "select_s": ds_}
                if abs(r - e.viz_ratio) < 1e-9:
                    for j, qid in enumerate(batch.ids):
                        if qid in new_viz:
                            v = {"id": qid, "method": m, "ratio": r, "keep": sel.keep[j].cpu(), "grid": visual.grid}
                            viz.append(v)
                            rec["viz"].append({**v, "keep": v["keep"].tolist(), "grid": list(v["grid"])})
            if on_batch is not None:
                on_batch({**rec, "n_tokens": n_tokens, "grid": list(grid)})
            current = []
            acc = [tallies[(m, r)] for m in ("score",) for r in e.ratios if (m, r) in tallies]
            if acc:
                t = acc[-1]
                bar.set_postfix(vanilla=f"{_mean(vanilla.correct):.3f}", score=f"{_mean(t.correct):.3f}@{e.ratios[-1]}")
            else:
                bar.set_postfix(vanilla=f"{_mean(vanilla.correct):.3f}")
    except KeyboardInterrupt:  # Ctrl-C: what was recorded stays; the batch it cut is dropped everywhere
        interrupted = True
        bar.close()
        for t in (vanilla, *tallies.values()):
            for d in (t.correct, t.kept, t.flops, t.select_flops):
                for i in current:
                    d.pop(i, None)
        viz = [v for v in viz if v["id"] not in current]
        if not vanilla.correct:  # cut before any batch was recorded: nothing to report
            raise
    finally:
        latch.uninstall()
    res = _result(e, bench, family, vanilla, tallies, problems, viz, n_tokens, grid)
    return {**res, "interrupted": interrupted, "questions_total": len(bench.records)}



def _result(e, bench, family, vanilla, tallies, problems, viz, n_tokens, grid) -> dict:
    if not vanilla.correct:
        from score_lit.config import DataError

        raise DataError(f"benchmark {e.benchmark!r}: every video was left out (see the problems above)")
    rows = _rows(e, bench.name, family, vanilla, tallies, n_tokens)
    return {"rows": rows, "vanilla": vanilla, "tallies": tallies, "problems": problems, "viz": viz, "benchmark": bench,
            "n_tokens": n_tokens, "grid": grid}  # fmt: skip


def prompt_text_tokens(prompts, mllm) -> list[int]:
    """Per question, the text tokens of its prompt up to the answer: len(pre_ids) + answer_start, plus the
    adapter's `video_suffix_tokens` (tokens it always adds beside the video that no method selects, e.g.
    LLaVA-OneVision's image_newline; 0 when the adapter does not say)."""
    extra = int(getattr(mllm, "video_suffix_tokens", 0))
    return [len(p) + s + extra for p, s in zip(prompts.pre_ids, prompts.answer_start)]


def _selection_flops(comp, shape, ratio: float, text: int, text_cfg, warned: set) -> float:
    """comp.selection_flops(...), or NaN for a compressor without a formula (warned once per method: `warned`)."""
    try:
        return comp.selection_flops(shape, ratio, text, text_cfg)
    except (AttributeError, NotImplementedError) as err:
        if comp.name not in warned:
            warned.add(comp.name)
            log.warning("%s: no selection FLOPs (%s); its FLOPs columns are NaN", comp.name, err)
        return float("nan")


def _record(t: Tally, ids, correct, keep, prefill_s, select_s=0.0, flops=None, select_flops=None) -> None:
    for i, c, k in zip(ids, correct.tolist(), keep.sum(-1).tolist()):
        t.correct[i], t.kept[i] = bool(c), int(k)
    for i, f, s in zip(ids, flops or [], select_flops or []):
        t.flops[i], t.select_flops[i] = f, s
    t.prefill_s += prefill_s
    t.select_s += select_s


def _mean(d: dict) -> float:
    return sum(d.values()) / max(len(d), 1)


def _by_family(correct: dict, family: dict) -> dict:
    groups = defaultdict(list)
    for i, c in correct.items():
        groups[family[i]].append(c)
    accs = {f: sum(v) / len(v) for f, v in sorted(groups.items())}
    accs["all"] = sum(accs.values()) / max(len(accs), 1)  # mean of the families: each weighs the same
    return accs


def _family_mean(d: dict, family: dict, fam: str) -> float:
    """Mean of d's values over the questions of family `fam` (all: every question); NaN if none."""
    xs = [v for i, v in d.items() if fam == "all" or family[i] == fam]
    return sum(xs) / len(xs) if xs else float("nan")


def _rows(e, bench_name: str, family: dict, vanilla: Tally, tallies: dict, n_tokens: int) -> list[dict]:
    rows = []
    van = _by_family(vanilla.correct, family)
    n = len(vanilla.correct)

    def add(method, ratio, t: Tally, accs):
        kept = sum(t.kept.values()) / max(len(t.kept), 1)
        budget = keep_count(ratio, n_tokens)
        for fam, acc in accs.items():
            flops, van_flops = _family_mean(t.flops, family, fam), _family_mean(vanilla.flops, family, fam)
            rows.append({
                "benchmark": bench_name, "family": fam, "method": method, "retention_ratio": ratio,
                "accuracy": round(acc, 4), "pct_of_vanilla": round(100 * acc / van[fam], 2) if van[fam] > 0 else float("nan"),
                "kept_tokens_mean": round(kept, 2), "budget_tokens": budget, "over_budget": int(kept > budget + 1e-9),
                "prefill_ms": round(1000 * t.prefill_s / max(n, 1), 3), "select_ms": round(1000 * t.select_s / max(n, 1), 3),
                "prefill_tflops": flops / TERA, "select_tflops": _family_mean(t.select_flops, family, fam) / TERA,
                "flops_pct_of_vanilla": round(100 * flops / van_flops, 2) if van_flops > 0 else float("nan"),
                "n": sum(1 for i in t.correct if fam == "all" or family[i] == fam),
            })  # fmt: skip

    add("vanilla", 1.0, vanilla, van)
    for (m, r), t in tallies.items():
        add(m, r, t, _by_family(t.correct, family))
    return rows


# ------------------------------------------------------------------------------------------------
# Outputs


def write_csv(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    return path


def markdown_table(rows: list[dict], family: str = "all") -> str:
    """Accuracy (% of vanilla) per method (rows) and ratio (columns) for one family; * = over budget."""
    ratios = sorted({r["retention_ratio"] for r in rows if r["method"] != "vanilla"}, reverse=True)
    sel = [r for r in rows if r["family"] == family]
    van = next(r for r in sel if r["method"] == "vanilla")
    head = "| method | " + " | ".join(f"{int(round(100 * q))}%" for q in ratios) + " |"
    lines = [head, "|---" * (len(ratios) + 1) + "|", f"| vanilla (all {int(van['kept_tokens_mean'])} tokens) | "
             + " | ".join(f"{100 * van['accuracy']:.1f}" for _ in ratios) + " |"]  # fmt: skip
    for m in dict.fromkeys(r["method"] for r in sel if r["method"] != "vanilla"):
        cells = []
        for q in ratios:
            r = next((x for x in sel if x["method"] == m and x["retention_ratio"] == q), None)
            cells.append("" if r is None else f"{100 * r['accuracy']:.1f} ({r['pct_of_vanilla']:.0f}%){'*' if r['over_budget'] else ''}")
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


def plot_accuracy(rows: list[dict], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = list(dict.fromkeys(r["family"] for r in rows))
    fams = ["all"] + [f for f in fams if f != "all"]
    fig, axes = plt.subplots(1, len(fams), figsize=(4.2 * len(fams), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        sel = [r for r in rows if r["family"] == fam]
        van = next(r for r in sel if r["method"] == "vanilla")
        ax.axhline(100 * van["accuracy"], color="k", ls="--", lw=1, label="vanilla")
        for m in dict.fromkeys(r["method"] for r in sel if r["method"] != "vanilla"):
            pts = sorted((r["retention_ratio"], 100 * r["accuracy"]) for r in sel if r["method"] == m)
            main = m == "score"  # drawn on top: it is what the figure compares
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, lw=2.4 if main else 1.2, label=m, zorder=5 if main else 2)
        ax.set_xscale("log")
        ax.set_xlabel("retention ratio")
        ax.set_title(fam)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


SWEEP_KEYS = ("benchmark", "root", "split", "limit", "methods", "ratios", "policy", "fastv_layer", "frames", "size", "fit",
              "sample_fps", "batch_size")  # what makes two runs the same sweep (eval.resume checks them)  # fmt: skip


def sweep_identity(cfg: Config) -> dict:
    """The settings an interrupted sweep must be resumed with (its questions.jsonl holds their results)."""
    e = cfg.eval
    return {**{f"eval.{k}": getattr(e, k) for k in SWEEP_KEYS}, "mllm.family": cfg.mllm.family, "mllm.path": cfg.mllm.path,
            "mllm.dtype": cfg.mllm.dtype, "seed": cfg.seed, "policy.selection": cfg.policy.selection}  # fmt: skip


def resolve_out_dir(cfg: Config) -> tuple[Path, bool]:
    """(the sweep's folder, whether it resumes one). eval.out_dir unset: a new runs/eval/<benchmark>-<time>, or
    with eval.resume=true the newest unfinished sweep under runs/eval. An explicit folder that holds a sweep is
    only continued with eval.resume=true. ConfigError (one line) otherwise; nothing is written here."""
    from score_lit.config import ConfigError

    e = cfg.eval
    if e.out_dir is None and not e.resume:
        from score_lit.training.rundir import free_path

        return free_path(Path("runs/eval") / f"{e.benchmark}-{time.strftime('%Y%m%d-%H%M%S')}"), False
    if e.out_dir is None:  # resume the newest unfinished sweep
        states = [p for p in Path("runs/eval").glob("*/sweep.json") if not json.loads(p.read_text()).get("finished")]
        if not states:
            raise ConfigError("eval.resume=true: no unfinished sweep under runs/eval/; give eval.out_dir=<the sweep's folder>")
        out = max(states, key=lambda p: p.stat().st_mtime).parent
    else:
        out = Path(e.out_dir)
    state = out / "sweep.json"
    if e.resume:
        if not state.is_file():
            raise ConfigError(f"eval.resume=true: {out} holds no sweep (no sweep.json); drop eval.resume to start one there")
        old = json.loads(state.read_text())["identity"]
        diff = [f"{k} ({old.get(k)!r} -> {v!r})" for k, v in sweep_identity(cfg).items() if old.get(k) != v]
        if diff:
            raise ConfigError(f"eval.resume=true: {out} is a sweep of other settings: {'; '.join(diff)}; resume with its own, or start a new sweep")
        return out, True
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"eval.out_dir={out} already holds results: resume its sweep with eval.resume=true, or give another "
                          f"eval.out_dir (left unset, every sweep gets its own runs/eval/<benchmark>-<time>)")  # fmt: skip
    return out, False


def _summary_metrics(rows: list[dict]) -> dict[str, float]:
    """The parent run's metrics: accuracy (and % of vanilla) of every method at every ratio, family `all`."""
    out = {}
    for r in rows:
        if r["family"] == "all":
            key = f"{r['method']}_{retention_label(r['retention_ratio'])}"
            out[f"accuracy/{key}"] = float(r["accuracy"])
            if r["pct_of_vanilla"] == r["pct_of_vanilla"]:
                out[f"pct_of_vanilla/{key}"] = float(r["pct_of_vanilla"])
    return out


def run_eval(cfg: Config, progress: bool = True) -> Path:
    """The sweep, its files and its MLflow runs. Returns the CSV path (results.partial.csv if interrupted).

    Every batch's per-question results are appended to <out>/questions.jsonl as they come, so Ctrl-C (or a
    kill) loses at most the batch in flight: the same command with eval.resume=true goes on from there. The
    MLflow parent run is opened at the start (RUNNING, in experiment <tracking.experiment>-eval unless
    eval.experiment says otherwise) and closed FINISHED, or KILLED on Ctrl-C, with the summary metrics
    accuracy/<method>_<ratio> of what was measured."""
    import mlflow

    check_files(cfg)  # before the sweep's folder or its MLflow run exist
    e = cfg.eval
    out, resuming = resolve_out_dir(cfg)
    qpath, state_path = out / "questions.jsonl", out / "sweep.json"
    done: list[dict] = []
    if resuming:
        for line in qpath.read_text().splitlines() if qpath.is_file() else []:
            try:
                done.append(json.loads(line))
            except json.JSONDecodeError:  # a line torn by a kill: its batch is measured again
                break
        state = json.loads(state_path.read_text())
        tmp = qpath.with_suffix(".tmp")  # drop a torn last line before appending after it
        tmp.write_text("".join(json.dumps(r) + "\n" for r in done))
        os.replace(tmp, qpath)
    out.mkdir(parents=True, exist_ok=True)
    from score_lit.training.resume import ensure_store

    ensure_store(cfg.tracking_uri)  # a fresh sqlite store's tables once (two sweeps or a training may open it at once)
    mlflow.set_tracking_uri(cfg.tracking_uri)
    exp_name = e.experiment or f"{cfg.tracking.experiment}-eval"
    exp = mlflow.get_experiment_by_name(exp_name)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(exp_name, artifact_location=cfg.artifact_location)
    tags = {"benchmark": e.benchmark, "kind": "eval-sweep", "out_dir": str(out)}
    if resuming:
        parent = mlflow.start_run(run_id=state["parent_run_id"])
    else:
        parent = mlflow.start_run(experiment_id=exp_id, run_name=cfg.tracking.run_name or f"eval-{e.benchmark} {out.name}", tags=tags)
        mlflow.log_params({"benchmark": e.benchmark, "methods": ",".join(e.methods), "ratios": ",".join(map(str, e.ratios)),
                           "policy": e.policy, "mllm.path": cfg.mllm.path, "frames": e.frames, "out_dir": str(out)})  # fmt: skip
        state = {"identity": sweep_identity(cfg), "parent_run_id": parent.info.run_id, "finished": False}
        state_path.write_text(json.dumps(state, indent=2) + "\n")
    print(f"sweep      : {out} (mlflow run {parent.info.run_id}, experiment '{exp_name}'){' resumed' if resuming else ''}", flush=True)
    n_done = sum(len(r["ids"]) for r in done)

    with open(qpath, "a") as qf:

        def on_batch(rec: dict) -> None:
            nonlocal n_done
            with sigint_held():  # a Ctrl-C here comes after the record: inside MLflow's sqlite write it left a traceback
                qf.write(json.dumps(rec) + "\n")
                qf.flush()
                os.fsync(qf.fileno())
                n_done += len(rec["ids"])
                mlflow.log_metric("questions_done", n_done, step=n_done)

        try:
            res = sweep(cfg, progress, done=done, on_batch=on_batch)
        except KeyboardInterrupt:
            mlflow.end_run(status="KILLED")
            print(f"interrupted before any question was recorded; the same command with eval.resume=true (and "
                  f"eval.out_dir={out}) starts it again there", file=sys.stderr)  # fmt: skip
            raise
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
    rows = res["rows"]
    if res["interrupted"]:
        csv_path = write_csv(rows, out / "results.partial.csv")
        n = len(res["vanilla"].correct)
        mlflow.log_metrics(_summary_metrics(rows))
        mlflow.log_artifact(str(csv_path))
        mlflow.end_run(status="KILLED")
        print(f"interrupted after {n} of {res['questions_total']} questions: partial results in {csv_path}; go on with the "
              f"same command and eval.resume=true{'' if e.out_dir else f' (or eval.out_dir={out} eval.resume=true)'}", file=sys.stderr)  # fmt: skip
        raise KeyboardInterrupt
    (out / "results.partial.csv").unlink(missing_ok=True)
    csv_path = write_csv(rows, out / "results.csv")
    title = f"{e.benchmark}: accuracy vs retention ({len(res['vanilla'].correct)} questions, {res['n_tokens']} visual tokens)"
    md = (f"# {title}\n\nAccuracy % (share of vanilla); * = kept more tokens than the budget.\n\n" + markdown_table(rows)
          + "\n\nPrefill compute per question (share of vanilla's): the LLM over text + kept tokens plus what the "
          "method's selection costs (FastV: its first K layers over every token and its ranking); vision encoder "
          "not included (score_lit.evaluation.flops).\n\n" + compute_table(rows) + "\n")  # fmt: skip
    (out / "results.md").write_text(md)
    plot = plot_accuracy(rows, out / "accuracy_vs_retention.png", title)
    pictures = _pictures(cfg, res, out)

    for r in (x for x in rows if x["family"] == "all"):
        name = f"{r['method']} {retention_label(r['retention_ratio'])}"
        ctags = {"method": r["method"], "retention_ratio": str(r["retention_ratio"]), "benchmark": e.benchmark}
        with mlflow.start_run(experiment_id=exp_id, run_name=name, nested=True, tags=ctags):
            mlflow.log_params(ctags)
            metrics = {k: float(r[k]) for k in ("accuracy", "pct_of_vanilla", "kept_tokens_mean", "over_budget", "prefill_ms", "select_ms")}
            flops = {k: float(r[k]) for k in ("prefill_tflops", "select_tflops", "flops_pct_of_vanilla")}
            metrics.update({k: v for k, v in flops.items() if v == v})  # a method without a FLOPs formula: left out
            for fr in rows:
                if fr["method"] == r["method"] and fr["retention_ratio"] == r["retention_ratio"] and fr["family"] != "all":
                    metrics[f"accuracy_{fr['family']}"] = float(fr["accuracy"])
            mlflow.log_metrics(metrics)
    mlflow.log_metrics(_summary_metrics(rows))
    for f in (csv_path, out / "results.md", plot, *pictures):
        mlflow.log_artifact(str(f))
    mlflow.end_run(status="FINISHED")
    state_path.write_text(json.dumps({**state, "finished": True}, indent=2) + "\n")
    print(f"mlflow run : {parent.info.run_id} (experiment '{exp_name}') in {cfg.tracking_uri}")
    print(md)
    return csv_path


def _pictures(cfg: Config, res: dict, out: Path) -> list[Path]:
    """Kept-token grids of the first few questions: one row per method at eval.viz_ratio."""
    if not res["viz"]:
        return []
    from score_lit.data.video_qa import load_video
    from score_lit.evaluation.viz import kept_token_grid

    e = cfg.eval
    by_id = defaultdict(list)
    for v in res["viz"]:
        by_id[v["id"]].append(v)
    recs = {r.id: r for r in res["benchmark"].records}
    paths = []
    for i, (qid, items) in enumerate(by_id.items()):
        r = recs[qid]
        frames, _ = load_video(r.video, e.frames, e.size, e.fit, e.sample_fps, r.start, r.end)
        rows = [(f"{v['method']} {retention_label(v['ratio'])}", v["keep"]) for v in items]
        p = out / f"kept_tokens_{i}.png"
        kept_token_grid(frames, rows, items[0]["grid"], p, title=f"{qid}: {r.question[:60]} (answer {r.answer})")
        paths.append(p)
    return paths


def visualize_video(cfg: Config, video: str, methods: list[str], ratio: float, question: str, out: str | Path) -> list[Path]:
    """`python -m score_lit viz VIDEO`: the frames of one video with each method's kept tokens highlighted,
    as a PNG grid (one row per method) and one animated GIF per method. Returns the paths written."""
    from score_lit.compressors import build_compressor
    from score_lit.data.common import collate
    from score_lit.data.video_qa import load_video
    from score_lit.data.encode import encode
    from score_lit.mllm import build_mllm
    from score_lit.evaluation.viz import kept_token_gif, kept_token_grid

    e = cfg.eval
    frames, spf = load_video(video, e.frames, e.size, e.fit, e.sample_fps)  # SampleError -> one clear line (cli)
    sample = Sample(Path(video).stem, frames, question, "?", [], seconds_per_frame=spf)
    batch = collate([sample])
    mllm = build_mllm(cfg.mllm)
    visual = encode(mllm, batch)
    prompts = mllm.tokenize(batch)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, paths = [], []
    for m in methods:
        comp = build_compressor(m, mllm=mllm, policy_path=e.policy, selection=cfg.policy.selection, seed=cfg.seed, layer=e.fastv_layer)
        keep = comp.select(visual, ratio, prompts).keep[0].cpu()
        rows.append((f"{m} {retention_label(ratio)}", keep))
        paths.append(kept_token_gif(frames, keep, visual.grid, out / f"{Path(video).stem}_{m}_{retention_label(ratio)}.gif"))
    grid_png = out / f"{Path(video).stem}_{retention_label(ratio)}.png"
    paths.insert(0, kept_token_grid(frames, rows, visual.grid, grid_png, title=f"{Path(video).name}: kept tokens at {ratio:.0%}"))
    return paths
