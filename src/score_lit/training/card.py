"""The model card of a policy folder: README.md beside config.json and model.safetensors, in the style of a model on
the Hugging Face Hub (YAML front matter, then what the policy is for, its backbone, its recipe, its training data
and steps, its evaluation, how to use it).

    model_card(config, evaluations=())   # config.json's dict (+ evaluation dicts) -> the markdown; pure

(score_lit.evaluation.card reads a sweep into an evaluation dict and rewrites a folder's card with it.)

Who writes it: every export (score_lit.training.checkpoint.save_policy_dir, after each validation and at the end of
training) writes the card from the config.json it writes next, without an evaluation (new weights: no sweep has
evaluated them yet). `python -m score_lit card FOLDER --eval SWEEP [--eval SWEEP ...]` rewrites it from the folder's
config.json, with the headline of each sweep that evaluated these weights (the sweep's sweep.json records the
sha256 of the weights it evaluated, score_lit.evaluation.run); without --eval it regenerates the card alone (e.g.
for a folder exported before cards existed). Loading never reads the card: config.json is the source of truth.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

TAGS = ["score_lit", "video-llm", "visual-token-compression", "token-pruning", "reinforcement-learning"]
EVAL_HINT = (
    "python -m score_lit eval conf/eval.yaml eval.policy={folder} eval.out_dir=runs/eval/{name}\n"
    "python -m score_lit card {folder} --eval runs/eval/{name}"
)


def _cell(value: Any) -> str:
    """A config value in a table cell: lists joined, None as null, pipes escaped."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if value is None:
        return "null"
    return str(value).replace("|", "\\|")


def _kv_table(d: dict) -> list[str]:
    return ["| key | value |", "|---|---|", *(f"| `{k}` | {_cell(v)} |" for k, v in d.items())]


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _folder_of(run: dict | None) -> str:
    """Where the run exported this folder (runs/<name>/policy), or a placeholder if the run is not recorded."""
    if not run:
        return "PATH/TO/THIS/FOLDER"
    return f"{run.get('out_dir', 'runs')}/{run.get('name', '<name>')}/policy"


def front_matter(config: dict) -> str:
    """The YAML front matter: library_name, tags, base_model (the backbone's checkpoint), and a score_lit block."""
    import yaml

    mllm, meta = config.get("mllm", {}), config.get("meta", {})
    data = {
        "library_name": "score_lit",
        "tags": [*TAGS, str(mllm.get("family"))],
        "base_model": str(mllm.get("path")),
        "score_lit": {
            "format": config.get("format"),
            "family": mllm.get("family"),
            "hidden_size": mllm.get("hidden_size"),
            "policy": config.get("policy_config", {}).get("name"),
            "global_step": meta.get("global_step"),
            "weights_sha256": config.get("weights_sha256"),
        },
    }
    return "---\n" + yaml.safe_dump(data, sort_keys=False, default_flow_style=False) + "---\n"


def _training(config: dict) -> list[str]:
    meta = config.get("meta", {})
    run = meta.get("config")
    step = meta.get("global_step")
    if not run:
        return [
            f"Exported at step {step}" + (f" in phase `{meta['phase']}`" if meta.get("phase") else "") + ".",
            "",
            "The training run's config is not recorded in this folder (it was exported before score_lit recorded it, "
            "or by a script that gave no run): export it again from its run to fill in the data and the recipe.",
        ]
    lines = ["| phase | steps | data | frames x size | batch |", "|---|---|---|---|---|"]
    for p in run["phases"]:
        d = run[p]["data"]
        if d.get("source") == "synthetic":
            data = f"synthetic ({', '.join(d.get('families', []))}), {d.get('train_samples')} samples, seed {d.get('seed')}"
        else:
            data = f"{d.get('source')}: `{d.get('path')}`" + (f" (root `{d['root']}`)" if d.get("root") else "")
        lines.append(
            f"| {p} | {run[p]['steps']} | {data} | {d.get('frames')} x {d.get('size')} px | {d.get('batch_size')} |"
        )
    total = sum(run[p]["steps"] for p in run["phases"])
    done = f"Trained {step} of {total} optimizer steps"
    if step is not None and step < total:
        done += " (exported at a validation: the run was still going, or was stopped there)"
    init = run.get("init_policy")
    lines += [
        "",
        f"{done}; exported in phase `{meta.get('phase')}`. Started from "
        + (f"`{init}`." if init else "a random initialisation.")
        + f" Seed {run.get('seed')}; run `{run.get('name')}`"
        + (f", MLflow run `{meta['mlflow_run_id']}`" if meta.get("mlflow_run_id") else "")
        + (f"; score_lit {meta['score_lit_version']}" if meta.get("score_lit_version") else "")
        + ".",
    ]
    return lines


def _recipe(config: dict) -> list[str]:
    run = config.get("meta", {}).get("config")
    lines = [f"### Policy (`policy.*`), reading states of width {config.get('in_dim')}", ""]
    lines += _kv_table(config.get("policy_config", {}))
    if run:
        for key, title in (("rl", "RL (`rl.*`)"), ("optim", "Optimizer (`optim.*`)")):
            lines += ["", f"### {title}", "", *_kv_table(run[key])]
        lines += [
            "",
            "<details><summary>The run's full resolved config</summary>",
            "",
            "```json",
            json.dumps(run, indent=2, default=str),
            "```",
            "",
            "</details>",
        ]
    return lines


def _evaluation(config: dict, evaluations: Sequence[dict]) -> list[str]:
    if not evaluations:
        meta = config.get("meta", {})
        folder = _folder_of(meta.get("config"))
        name = (meta.get("config") or {}).get("name") or meta.get("run_name") or "NAME"
        return [
            "No evaluation is recorded in this card. Evaluate the policy and add the sweep's headline here:",
            "",
            "```bash",
            EVAL_HINT.format(folder=folder, name=name),
            "```",
        ]
    lines: list[str] = []
    for ev in evaluations:
        split = f", split `{ev['split']}`" if ev.get("split") else ""
        lines += [
            f"### `{ev['benchmark']}`{split}: {ev['questions']} questions (sweep `{ev['sweep']}`)",
            "",
            f"SCORE's accuracy by retention, family `all` (vanilla, every token kept: {_pct(ev['vanilla_accuracy'])}%):",
            "",
            "| retention | accuracy % | % of vanilla | prefill FLOPs % of vanilla |",
            "|---|---|---|---|",
        ]
        for r in ev["score_rows"]:
            flops = "-" if math.isnan(r["flops_pct_of_vanilla"]) else f"{r['flops_pct_of_vanilla']:.1f}"
            lines.append(
                f"| {100 * r['retention_ratio']:g}% | {_pct(r['accuracy'])} | {r['pct_of_vanilla']:.1f} | {flops} |"
            )
        if ev.get("matched"):
            lines += ["", ev["matched"].rstrip("\n")]
        if not ev.get("weights_checked"):
            lines += [
                "",
                f"(This sweep predates weight fingerprints: it evaluated `{ev.get('policy')}`, not checked to hold "
                "these weights.)",
            ]
        lines.append("")
    return lines[:-1]


def model_card(config: dict, evaluations: Sequence[dict] = ()) -> str:
    """The card of a policy folder whose config.json is `config` (checkpoint.save_policy_dir's dict), with the
    headline of each evaluation (read_evaluation's dicts). Pure: the same input gives the same text."""
    mllm, meta, pol = config.get("mllm", {}), config.get("meta", {}), config.get("policy_config", {})
    run = meta.get("config")
    folder = _folder_of(run)
    title = meta.get("run_name") or "policy"
    lines = [
        f"# SCORE policy `{title}` for `{mllm.get('family')}`",
        "",
        f"A visual-token compression policy (`{pol.get('name')}`) trained with reinforcement learning by score_lit. "
        "It scores every visual token the frozen video MLLM below produces (from the token and its change since "
        "the previous frame"
        + (", conditioned on the question" if pol.get("name") == "query_mlp" else "")
        + "); the top fraction is kept and the rest never reaches the LLM. It holds no weight of the backbone: it "
        "runs beside it, unchanged.",
        "",
        "## Backbone",
        "",
        "| | |",
        "|---|---|",
        f"| family | `{mllm.get('family')}` |",
        f"| width (the LLM's hidden size) | {mllm.get('hidden_size')} |",
        f"| checkpoint | `{mllm.get('path')}` |",
        "",
        "Loading the policy for another family or width is refused: its tokens mean other things.",
        "",
        "## Recipe",
        "",
        *_recipe(config),
        "",
        "## Training data and steps",
        "",
        *_training(config),
        "",
        "## Evaluation",
        "",
        *_evaluation(config, evaluations),
        "",
        "## How to use",
        "",
        "```python",
        "import score_lit",
        "",
        f'policy = score_lit.load_policy("{folder}")',
        "with score_lit.compress(model, processor, policy, ratio=0.1) as sc:  # keep 10% of the visual tokens",
        "    inputs = sc.prepare(videos, questions)  # mp4 paths or uint8 frames [F, H, W, 3], one question each",
        "    out = model.generate(**inputs, max_new_tokens=16, do_sample=False)",
        "print(sc.decode(out))",
        "```",
        "",
        "`model` and `processor` are the backbone above, loaded with transformers. Within score_lit: "
        f"`python -m score_lit eval conf/eval.yaml eval.policy={folder}` sweeps it against the training-free "
        "methods, and `score_lit.training.checkpoint.load_policy(path, expect_mllm=...)` returns the policy and this "
        "folder's config.",
        "",
        "## Files",
        "",
        "| file | what |",
        "|---|---|",
        "| `config.json` | format, policy config, state width, backbone identity, training meta, the weights' sha256: "
        "what loading reads |",
        f"| `model.safetensors` | the policy's weights (sha256 `{config.get('weights_sha256')}`) |",
        "| `README.md` | this card, generated from config.json; `python -m score_lit card FOLDER [--eval SWEEP ...]` "
        "writes it again |",
        "",
    ]
    return front_matter(config) + "\n" + "\n".join(lines)
