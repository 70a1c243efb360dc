"""Command line: `python -m score_lit COMMAND [CONFIG.yaml ...] [key=value ...]`.

    python -m score_lit train conf/stage1.yaml stage1.steps=50
    python -m score_lit data-check /data/videos.jsonl --frames 32  # every bad row / video, before a run
    python -m score_lit show-config conf/stage1.yaml rl.group_size=4   # any file in conf/ (bench_*, toy/* too)
    python -m score_lit plot-run RUN_ID --out curves.png
    python -m score_lit mlflow-sync runs/NAME   # upload what a run kept while its tracking server was unreachable
    python -m score_lit eval conf/eval.yaml eval.ratios=[0.1,0.05]  # retention sweep: methods x ratios
    python -m score_lit card runs/stage2/policy --eval runs/eval/SWEEP  # the policy folder's README.md model card
    python -m score_lit cache-features conf/stage2.yaml stage2.data.cache_dir=/data/features  # fill the feature cache
    python -m score_lit submit conf/stage1.yaml --nodes 2 --gpus-per-node 8 --time 24:00:00 --partition gpu [--dry-run]
    python -m score_lit bench conf/bench_cpu.yaml repeats=3   # time decode / vision / policy / prefill per ratio
    python -m score_lit viz VIDEO.mp4 --method score,surprise --ratio 0.1  # kept-token PNG grid + GIFs
    python -m score_lit export-split --out artifacts/toy-bench --split test --n 200
    python -m score_lit toy-mllm --out artifacts/toy-mllm      # train the frozen toy MLLM (minutes)
    python -m score_lit seeds-table --rules RULES_DIR LABEL=SEED0_DIR,SEED1_DIR,SEED2_DIR  # bootstrap over seeds

Arguments ending in .yaml/.yml are config files merged in order (each with the files its `defaults:` list
names, score_lit.config.loader); `key=value` arguments override last. A bad config stops here with one line on stderr (exit 2), before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys

from score_lit.config import ConfigError, DataError, check_files, load_config, schema_of, split_args, to_dict

# The config schemas by the name a YAML's `schema:` key gives (score_lit.config.loader): "module:Class", imported
# when used (none imports torch). A file without the key is a run's (train, eval, viz, submit, cache-features).
SCHEMAS = {
    "run": "score_lit.config:Config",
    "bench": "score_lit.perf.bench_setup:BenchConfig",  # python -m score_lit bench
    "toy": "score_lit.toy.config:ToyConfig",  # python -m score_lit toy-mllm
}


def schema_class(name: str) -> type:
    """The dataclass of a schema name (a key of SCHEMAS)."""
    import importlib

    if name not in SCHEMAS:
        raise ConfigError(f"schema: {name!r} is not a config schema; use one of {sorted(SCHEMAS)}")
    module, attr = SCHEMAS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def cmd_train(args: list[str]) -> int:
    cfg = load_config(*split_args(args))  # validate before the heavy imports: bad input fails in a blink
    check_files(cfg)
    from score_lit.training.tracking_server import check_server

    check_server(cfg.tracking_uri)  # a tracking server that does not answer, before lightning is imported
    from score_lit.training.fit import fit, report

    report(fit(cfg))
    return 0


def cmd_show_config(args: list[str]) -> int:
    """Print the resolved config of any file in conf/, with the schema its `schema:` key names (default: run)."""
    files, overrides = split_args(args)
    print(json.dumps(to_dict(load_config(files, overrides, schema=schema_class(schema_of(files)))), indent=2))
    return 0


def cmd_plot_run(args: list[str]) -> int:
    p = argparse.ArgumentParser(prog="score_lit plot-run", description="plot a run's training curves from MLflow")
    p.add_argument(
        "run_id", metavar="RUN", help="an MLflow run id, or a run name (runs/<name>; the newest run of that name)"
    )
    p.add_argument("--tracking-uri", default=None, help="default: the project's sqlite:///.../mlflow.db")
    p.add_argument("--out", default="curves.png")
    ns = p.parse_args(args)
    from score_lit.config import Config
    from score_lit.training.curves import find_run, plot_training_curves

    uri = ns.tracking_uri or Config().tracking_uri
    print(plot_training_curves(uri, find_run(uri, ns.run_id), ns.out))
    return 0


def cmd_mlflow_sync(args: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="score_lit mlflow-sync",
        description="upload RUN_DIR/mlflow_pending.jsonl (what a training kept while its MLflow server was "
        "unreachable) and, if the run ended then, its policy.pt, curves and end status",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run's folder, runs/<name>")
    p.add_argument("--tracking-uri", default=None, help="default: the server the run logged to (in the file)")
    ns = p.parse_args(args)
    from score_lit.training.tracking_server import sync_run

    print(sync_run(ns.run_dir, ns.tracking_uri))
    return 0


def cmd_export_split(args: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="score_lit export-split", description="write a generated split as mp4 + JSONL, once"
    )
    p.add_argument("--out", default="artifacts/toy-bench")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--n", type=int, default=200, help="samples per family")
    p.add_argument(
        "--benchmark",
        default="toy",
        choices=["toy", "evidence"],
        help="toy: the first families (flash, stitched, distracted); evidence: score_lit.toy.evidence's",
    )
    p.add_argument("--setting", default=None, help="evidence only: default (32 frames of 96 px) or long (64 of 128)")
    p.add_argument("--families", default="", help="comma-separated families (default: all of the benchmark's)")
    p.add_argument(
        "--version", type=int, default=None, help="evidence only: the benchmark version (default: the current one)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=None, help="frames per video (default: the benchmark's setting)")
    p.add_argument("--size", type=int, default=None, help="frame side in px (default: the benchmark's setting)")
    ns = p.parse_args(args)
    from score_lit.toy.export import export_split

    families = [f for f in ns.families.split(",") if f] or None
    print(
        export_split(
            ns.out,
            ns.split,
            ns.n,
            families,
            ns.seed,
            ns.frames,
            ns.size,
            benchmark=ns.benchmark,
            setting=ns.setting,
            version=ns.version,
        )
    )
    return 0


def _kind(path: str) -> str:
    """image_qa or video_qa, from the first readable row (a 'video' field or an 'image' field)."""
    from score_lit.data.common import read_rows

    rows, problems = read_rows(path)
    if not rows and problems:
        return "video_qa"  # an unreadable or empty file: the checker reports its problem (exit 1)
    for _, row in rows:
        if "video" in row:
            return "video_qa"
        if "image" in row:
            return "image_qa"
    raise ConfigError(f"{path}: no row has a 'video' or an 'image' field; pass --kind video_qa or --kind image_qa")


def cmd_data_check(args: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="score_lit data-check",
        description="list every problem of a dataset file (unreadable rows, missing / corrupt / short media) "
        "before a long run; exit 1 if there is any",
    )
    p.add_argument("file", help="annotation file: video QA (LLaVA-Video JSON, multiple-choice JSONL) or image QA")
    p.add_argument("--kind", choices=["auto", "video_qa", "image_qa"], default="auto")
    p.add_argument(
        "--root", default=None, help="folder that relative media paths start from (default: the file's folder)"
    )
    p.add_argument("--frames", type=int, default=16, help="frames sampled per video, as data.frames")
    p.add_argument("--size", type=int, default=64, help="frame side in pixels, as data.size")
    p.add_argument("--fit", default="pad", choices=["pad", "stretch", "crop"])
    p.add_argument("--fps", type=float, default=None, help="sample at this rate (data.sample_fps) instead of uniformly")
    ns = p.parse_args(args)
    from pathlib import Path

    if not Path(ns.file).is_file():
        raise ConfigError(f"{ns.file!r} does not exist: give a dataset annotation file (.jsonl or .json)")
    kind = _kind(ns.file) if ns.kind == "auto" else ns.kind
    from tqdm import tqdm

    bar = tqdm(desc=f"checking {Path(ns.file).name}", unit="row", file=sys.stderr, dynamic_ncols=True)
    if kind == "video_qa":
        from score_lit.data.video_qa import check_video_qa

        rows, problems = check_video_qa(ns.file, ns.root, ns.frames, ns.size, ns.fit, ns.fps, progress=bar.update)
    else:
        from score_lit.data.pseudo_video import check_image_qa

        rows, problems = check_image_qa(ns.file, ns.root, ns.size, ns.fit, progress=bar.update)
    bar.close()
    for prob in problems:
        print(prob)
    if not problems:
        print(f"{ns.file}: {rows} rows ({kind}), no problems")
        return 0
    share = f" ({100 * len(problems) / rows:.1f}% of rows)" if rows else ""
    print(f"{ns.file}: {rows} rows ({kind}), {len(problems)} problem{'s' if len(problems) != 1 else ''}{share}")
    return 1


def _eval_config(args: list[str]):
    files, overrides = split_args(args)
    return load_config(files or ["conf/eval.yaml"], overrides)


def cmd_eval(args: list[str]) -> int:
    cfg = _eval_config(args)  # validated before the heavy imports
    check_files(cfg)
    from transformers.utils import logging as hf_logging

    from score_lit.evaluation.run import run_eval

    hf_logging.disable_progress_bar()  # the weight-loading bar would interleave with the sweep's own
    print(run_eval(cfg))  # the CSV's path is the last line
    return 0


def cmd_viz(args: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="score_lit viz", description="draw a video's frames with the kept tokens highlighted (PNG grid + GIF)"
    )
    p.add_argument("video", help="a video file (decoded with decord like the benchmarks)")
    p.add_argument("config", nargs="*", help="config files (.yaml, default conf/eval.yaml) and key=value overrides")
    p.add_argument(
        "--method", default="score", help="one or more comma-separated methods (score, surprise, fastv, ...)"
    )
    p.add_argument("--ratio", type=float, default=0.1)
    p.add_argument("--question", default="which digit appeared ?", help="the question (methods like fastv look at it)")
    p.add_argument("--out", default="runs/viz")
    ns = p.parse_args(args)
    from pathlib import Path

    if not Path(ns.video).is_file():
        raise ConfigError(f"video {ns.video!r} does not exist: give a video file (mp4, mkv, webm, ...)")
    methods = ns.method.split(",")
    try:
        cfg = _eval_config(ns.config + [f"eval.methods=[{ns.method}]", f"eval.viz_ratio={ns.ratio}"])
    except ConfigError as e:  # name the flags the user typed, not the config keys they became
        raise ConfigError(str(e).replace("eval.viz_ratio", "--ratio").replace("eval.methods", "--method")) from None
    check_files(cfg)
    from score_lit.data.common import SampleError
    from score_lit.evaluation.viz import visualize_video

    try:
        paths = visualize_video(cfg, ns.video, methods, ns.ratio, ns.question, ns.out)
    except SampleError as e:
        raise DataError(f"{ns.video}: {e.reason}") from None
    for path in paths:
        print(path)
    return 0


def cmd_bench(args: list[str]) -> int:
    from score_lit.perf.bench import (
        main as bench_main,  # bench imports no torch at module level; a bad config stops in a blink
    )

    return bench_main(args)


def cmd_submit(args: list[str]) -> int:
    from score_lit.training.slurm import main as submit_main  # imports no torch: bad input stops in a blink

    return submit_main(args)


def cmd_cache_features(args: list[str]) -> int:
    from score_lit.data.feature_cache_fill import main as run

    return run(args)


def cmd_toy_mllm(args: list[str]) -> int:
    from score_lit.toy.cli import cmd_toy_mllm as run

    return run(args)


def cmd_card(args: list[str]) -> int:
    from score_lit.evaluation.card import main as run  # reads config.json and the sweeps' files (torch to check)

    return run(args)


def cmd_ablation_table(args: list[str]) -> int:
    from score_lit.evaluation.ablation import main as run  # reads results.csv files (no torch)

    return run(args)


def cmd_seeds_table(args: list[str]) -> int:
    from score_lit.evaluation.seeds_table import main as run  # reads questions.jsonl files and the benchmark

    return run(args)


COMMANDS = {
    "ablation-table": cmd_ablation_table,
    "card": cmd_card,
    "seeds-table": cmd_seeds_table,
    "train": cmd_train,
    "show-config": cmd_show_config,
    "plot-run": cmd_plot_run,
    "mlflow-sync": cmd_mlflow_sync,
    "export-split": cmd_export_split,
    "toy-mllm": cmd_toy_mllm,
    "data-check": cmd_data_check,
    "eval": cmd_eval,
    "viz": cmd_viz,
    "bench": cmd_bench,
    "submit": cmd_submit,
    "cache-features": cmd_cache_features,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="score_lit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="config files (.yaml) and key=value overrides")
    ns = parser.parse_args(argv)
    try:
        return COMMANDS[ns.command](ns.args)
    except (ConfigError, DataError) as e:
        print(f"score_lit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the command said what it kept; no traceback
        return 130


if __name__ == "__main__":
    sys.exit(main())
