"""A policy folder's model card with its evaluation: `python -m score_lit card FOLDER [--eval SWEEP ...]`.

    read_evaluation(sweep_dir, sha256)   # a finished `score_lit eval` sweep of this policy -> its headline
    write_card(folder, sweep_dirs)       # README.md of a policy folder, rewritten atomically

The card's text is score_lit.training.card.model_card (what every export writes, without an evaluation); this module
adds the sweeps that evaluated the folder's weights (sweep.json records the sha256 of the weights it evaluated,
score_lit.evaluation.run), and refuses a sweep of other weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from score_lit.durable import atomic_write_bytes
from score_lit.errors import ConfigError
from score_lit.evaluation.ablation import read_sweep
from score_lit.training.card import model_card


def read_evaluation(sweep_dir: str | Path, weights_sha256: str | None) -> dict:
    """The headline of a finished `score_lit eval` sweep of this policy (model_card's evaluation dict). ConfigError
    (one line) if it is unfinished, has no SCORE row, or evaluated other weights than `weights_sha256`."""
    sweep = Path(sweep_dir)
    state_path = sweep / "sweep.json"
    if not state_path.is_file():
        raise ConfigError(f"--eval {sweep}: no sweep.json there; give the out_dir of a `score_lit eval` sweep")
    state = json.loads(state_path.read_text())
    if not state.get("finished"):
        raise ConfigError(f"--eval {sweep}: the sweep is unfinished; finish it with eval.resume=true first")
    ident = state.get("identity", {})
    rows = [r for r in read_sweep(sweep) if r["family"] == "all"]
    score = sorted((r for r in rows if r["method"] == "score"), key=lambda r: -r["retention_ratio"])
    if not score:
        raise ConfigError(f"--eval {sweep}: the sweep has no `score` rows, so it did not evaluate a policy")
    evaluated = state.get("policy_weights_sha256")
    if evaluated is not None and evaluated != weights_sha256:
        raise ConfigError(
            f"--eval {sweep}: the sweep evaluated other weights (sha256 {evaluated[:12]}...) than this folder's "
            f"({str(weights_sha256)[:12]}...): evaluate this policy, or give the sweep of the folder it evaluated"
        )
    van = next(r for r in rows if r["method"] == "vanilla")
    for r in score:
        value = r.get("flops_pct_of_vanilla")
        r["flops_pct_of_vanilla"] = float(value) if value not in (None, "") else math.nan
    matched = sweep / "matched.md"
    return {
        "sweep": str(sweep),
        "benchmark": ident.get("eval.benchmark", van.get("benchmark")),
        "split": ident.get("eval.split"),
        "questions": int(van["n"]),
        "vanilla_accuracy": van["accuracy"],
        "score_rows": [
            {k: r[k] for k in ("retention_ratio", "accuracy", "pct_of_vanilla", "flops_pct_of_vanilla")} for r in score
        ],
        "matched": matched.read_text() if matched.is_file() else None,
        "weights_checked": evaluated is not None,
        "policy": ident.get("eval.policy"),
    }


def write_card(folder: str | Path, sweep_dirs: Sequence[str | Path] = ()) -> Path:
    """README.md of a policy folder (or the folder of a runs/<name>/policy.pt), from its config.json and the
    sweeps that evaluated its weights; written atomically. Returns its path."""
    from score_lit.training.checkpoint import read_policy_dir  # torch (the weights are checked)

    p = Path(folder)
    if p.is_file() and p.suffix == ".pt" and p.with_suffix("").is_dir():
        p = p.with_suffix("")  # runs/<name>/policy.pt -> runs/<name>/policy/
    if not p.is_dir():
        raise ConfigError(f"{str(folder)!r} is not a policy folder: give runs/<name>/policy (written by training)")
    config = {k: v for k, v in read_policy_dir(p).items() if k != "state_dict"}  # checks the weights match
    evaluations = [read_evaluation(s, config.get("weights_sha256")) for s in sweep_dirs]
    return atomic_write_bytes(p / "README.md", model_card(config, evaluations).encode())


def main(args: list[str]) -> int:
    """`python -m score_lit card FOLDER [--eval SWEEP ...]`: write a policy folder's README.md."""
    import argparse

    p = argparse.ArgumentParser(
        prog="score_lit card",
        description="write a policy folder's model card (README.md) from its config.json, with the headline of "
        "the eval sweeps that evaluated it",
    )
    p.add_argument("folder", help="a policy folder (runs/<name>/policy) or its runs/<name>/policy.pt")
    p.add_argument(
        "--eval",
        action="append",
        default=[],
        metavar="SWEEP",
        help="the out_dir of a finished `score_lit eval` sweep of this policy (repeatable: one section each)",
    )
    ns = p.parse_args(args)
    print(write_card(ns.folder, ns.eval))
    return 0
