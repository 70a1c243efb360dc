"""python -m score_lit eval: one retention sweep (score_lit.evaluation.sweep) with its folder, its files and its
MLflow runs. The folder: a new runs/eval/<benchmark>-<time>, eval.out_dir, or with eval.resume=true an
interrupted sweep's (checked to have the same settings, sweep_identity). Every batch's record is appended to
questions.jsonl as it comes; at the end results.csv, results.md, the accuracy plot and the kept-token pictures
(score_lit.evaluation.report), matched.md (SCORE against every other method at matched compute, the sweep's own rows:
score_lit.evaluation.ablation.sweep_matched; printed last, before the CSV's path) and the parent and child MLflow
runs closed (score_lit.evaluation.tracking). sweep.json holds the sweep's settings, its MLflow run, whether it finished
and, with method score, the sha256 of the policy weights it evaluated (`python -m score_lit card FOLDER --eval OUT`
puts the sweep's headline in that policy folder's model card, score_lit.training.card).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from score_lit.compressors.flops import TERA
from score_lit.config import Config, check_files
from score_lit.durable import sigint_held
from score_lit.evaluation.ablation import sweep_matched
from score_lit.evaluation.records import BatchRecord, read_records
from score_lit.evaluation.sweep import sweep

SWEEP_KEYS = (
    "benchmark",
    "root",
    "split",
    "limit",
    "methods",
    "ratios",
    "policy",
    "fastv_layer",
    "frames",
    "size",
    "fit",
    "decode_resize",
    "sample_fps",
    "batch_size",
)  # what makes two runs the same sweep (eval.resume checks them)


def sweep_identity(cfg: Config) -> dict:
    """The settings an interrupted sweep must be resumed with (its questions.jsonl holds their results)."""
    e = cfg.eval
    return {
        **{f"eval.{k}": getattr(e, k) for k in SWEEP_KEYS},
        "mllm.family": cfg.mllm.family,
        "mllm.path": cfg.mllm.path,
        "mllm.dtype": cfg.mllm.dtype,
        "seed": cfg.seed,
        "policy.selection": cfg.policy.selection,
    }


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
            raise ConfigError(
                "eval.resume=true: no unfinished sweep under runs/eval/; give eval.out_dir=<the sweep's folder>"
            )
        out = max(states, key=lambda p: p.stat().st_mtime).parent
    else:
        out = Path(e.out_dir)
    state = out / "sweep.json"
    if e.resume:
        if not state.is_file():
            raise ConfigError(
                f"eval.resume=true: {out} holds no sweep (no sweep.json); drop eval.resume to start one there"
            )
        old = json.loads(state.read_text())["identity"]
        old.setdefault("eval.decode_resize", "processor")  # a sweep from before the option decoded that way
        diff = [f"{k} ({old.get(k)!r} -> {v!r})" for k, v in sweep_identity(cfg).items() if old.get(k) != v]
        if diff:
            raise ConfigError(
                f"eval.resume=true: {out} is a sweep of other settings: {'; '.join(diff)}; resume with its own, or start a new sweep"
            )
        return out, True
    if out.exists() and any(out.iterdir()):
        raise ConfigError(
            f"eval.out_dir={out} already holds results: resume its sweep with eval.resume=true, or give another "
            f"eval.out_dir (left unset, every sweep gets its own runs/eval/<benchmark>-<time>)"
        )
    return out, False


def run_eval(cfg: Config, progress: bool = True) -> Path:
    """The sweep, its files and its MLflow runs. Returns the CSV path (results.partial.csv if interrupted).

    Every batch's record is appended to <out>/questions.jsonl as it comes, so Ctrl-C (or a kill) loses at most
    the batch in flight: the same command with eval.resume=true goes on from there. The MLflow parent run is
    opened at the start and closed FINISHED, or KILLED on Ctrl-C (score_lit.evaluation.tracking)."""
    from score_lit.evaluation import report, tracking

    check_files(cfg)  # before the sweep's folder or its MLflow run exist
    e = cfg.eval
    out, resuming = resolve_out_dir(cfg)
    qpath, state_path = out / "questions.jsonl", out / "sweep.json"
    done: list[BatchRecord] = []
    if resuming:
        done = read_records(qpath)
        state = json.loads(state_path.read_text())
        lines = qpath.read_text().splitlines()[: len(done)] if qpath.is_file() else []
        tmp = qpath.with_suffix(".tmp")  # drop a torn last line before appending after it
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, qpath)
    out.mkdir(parents=True, exist_ok=True)
    run_id, exp_id, exp_name = tracking.open_parent(cfg, out, state["parent_run_id"] if resuming else None)
    if not resuming:
        state = {"identity": sweep_identity(cfg), "parent_run_id": run_id, "finished": False}
        if "score" in e.methods and e.policy:  # which weights were evaluated: `score_lit card --eval` checks it
            from score_lit.training.checkpoint import weights_sha256

            state["policy_weights_sha256"] = weights_sha256(e.policy)
        state_path.write_text(json.dumps(state, indent=2) + "\n")
    print(
        f"sweep      : {out} (mlflow run {run_id}, experiment '{exp_name}'){' resumed' if resuming else ''}", flush=True
    )
    n_done = sum(len(r.ids) for r in done)

    with open(qpath, "a") as qf:

        def on_batch(rec: BatchRecord) -> None:
            nonlocal n_done
            with (
                sigint_held()
            ):  # a Ctrl-C here comes after the record: inside MLflow's sqlite write it left a traceback
                qf.write(rec.to_json() + "\n")
                qf.flush()
                os.fsync(qf.fileno())
                n_done += len(rec.ids)
                tracking.questions_done(n_done)

        try:
            res = sweep(cfg, progress, done=done, on_batch=on_batch)
        except KeyboardInterrupt:
            tracking.close_killed()
            print(
                f"interrupted before any question was recorded; the same command with eval.resume=true (and "
                f"eval.out_dir={out}) starts it again there",
                file=sys.stderr,
            )
            raise
        except BaseException:
            tracking.close_failed()
            raise
    rows, record = res["rows"], res["record"]
    if res["interrupted"]:
        csv_path = report.write_csv(rows, out / "results.partial.csv")
        tracking.close_killed(rows, [csv_path])
        print(
            f"interrupted after {len(record.ids)} of {res['questions_total']} questions: partial results in {csv_path}; go on with "
            f"the same command and eval.resume=true{'' if e.out_dir else f' (or eval.out_dir={out} eval.resume=true)'}",
            file=sys.stderr,
        )
        raise KeyboardInterrupt
    (out / "results.partial.csv").unlink(missing_ok=True)
    csv_path = report.write_csv(rows, out / "results.csv")
    title = f"{e.benchmark}: accuracy vs retention ({len(record.ids)} questions, {record.n_tokens} visual tokens)"
    md = report.results_markdown(rows, title)
    (out / "results.md").write_text(md)
    plot = report.plot_accuracy(rows, out / "accuracy_vs_retention.png", title)
    van = next(r for r in rows if r["method"] == "vanilla" and r["family"] == "all")
    matched = sweep_matched(rows, unit=report.flops_unit(TERA * van["prefill_tflops"]))  # None: no SCORE, no rival
    files = [csv_path, out / "results.md", plot]
    if matched:
        (out / "matched.md").write_text(matched)
        files.append(out / "matched.md")
    pictures = report.pictures(cfg, record, res["benchmark"].records, out)
    tracking.close_finished(exp_id, rows, e.benchmark, [*files, *pictures])
    state_path.write_text(json.dumps({**state, "finished": True}, indent=2) + "\n")
    print(f"mlflow run : {run_id} (experiment '{exp_name}') in {cfg.tracking_uri}")
    print(md)
    if matched:
        print(matched, end="")  # the last thing before the CSV's path (cli)
    return csv_path
