"""`python -m score_lit toy-mllm [CONFIG.yaml ...] [key=value ...] [--preset NAME] [--out DIR] [--seed N] [--families a,b] [--text-layers L] [--quick] [--resume] [--stop-after N]`: train the toy MLLM.

Trains score_lit.toy.model's frozen toy Qwen2.5-VL (minutes on 2 CPU cores), saves it as a Hugging Face
directory usable as `mllm.path=DIR`, evaluates it on the held-out test split with all visual tokens and
prints the directory and the per-family accuracies (also in DIR/accuracy.json).

The config (score_lit.toy.config.ToyConfig) is read by the one loader, in this order: the preset
(conf/toy/NAME.yaml: first (default), evidence, evidence4), the CONFIG.yaml files, the flags, the key=value
overrides (`toy-mllm --preset evidence joint_steps=100`). `--quick` is the quick preset (conf/toy/quick.yaml),
a seconds-long run at tiny widths (tests): it checks the pipeline, not the accuracy. `--resume` continues an
interrupted run from DIR/train_state.pt (removed once the model is saved), so a long recipe (the evidence
preset: hours on 2 cores) can span several sittings.
"""

from __future__ import annotations

import argparse
import json


def toy_config(args: list[str]):
    """(ToyConfig, parsed flags) of a toy-mllm command line; torch-free, so a bad one stops in a blink."""
    from score_lit.config import ConfigError, load_config, split_args
    from score_lit.toy.config import DEFAULT_PRESET, ToyConfig, preset_path

    p = argparse.ArgumentParser(
        prog="score_lit toy-mllm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "config", nargs="*", metavar="CONFIG.yaml | key=value", help="ToyConfig files (schema: toy) and overrides"
    )
    p.add_argument(
        "--preset",
        default=None,
        help=f"conf/toy/NAME.yaml: first (the first toy's families), evidence (also the "
        f"evidence benchmark's), evidence4 (the committed evidence toy); default: {DEFAULT_PRESET}",
    )
    p.add_argument("--out", default=None, help=f"output directory (= out=DIR; default: {ToyConfig.out})")
    p.add_argument("--seed", type=int, default=None, help="= seed=N (default: the preset's)")
    p.add_argument("--families", default="", help="comma-separated synthetic families (default: the preset's)")
    p.add_argument("--quick", action="store_true", help="the quick preset: a seconds-long run at tiny widths (tests)")
    p.add_argument(
        "--text-layers", type=int, default=None, help=f"LLM decoder layers (default {ToyConfig.text_layers})"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from <out>/train_state.pt if it exists (saved at "
        f"stage ends and every checkpoint_every={ToyConfig.checkpoint_every} joint steps); a fresh run without it",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        metavar="N",
        help="save the training state after joint step N "
        "and stop (continue with --resume; the evidence4 preset starts from evidence's state at step 1250)",
    )
    ns = p.parse_intermixed_args(args)  # files and overrides may stand between the flags
    if ns.quick and ns.preset:
        raise ConfigError(f"--quick is the quick preset: pass it or --preset {ns.preset}, not both")
    files, overrides = split_args(ns.config)
    flags = [
        f"{k}={v}" for k, v in (("out", ns.out), ("seed", ns.seed), ("text_layers", ns.text_layers)) if v is not None
    ]
    families = [f for f in ns.families.split(",") if f]
    if families:
        flags.append(f"families=[{','.join(families)}]")
    preset = preset_path("quick" if ns.quick else ns.preset or DEFAULT_PRESET)
    return load_config([preset, *files], [*flags, *overrides], schema=ToyConfig), ns


def cmd_toy_mllm(args: list[str]) -> int:
    cfg, ns = toy_config(args)

    from transformers.utils import logging as hf_logging

    from score_lit.toy.loop import train_toy_mllm

    hf_logging.disable_progress_bar()  # the weight-loading bars would drown the progress lines
    out = train_toy_mllm(cfg, resume=ns.resume, stop_after=ns.stop_after)
    if out is None:
        return 0
    report = json.loads((out / "accuracy.json").read_text())
    print(out)
    for name, acc in report["families"].items():
        print(f"  {name:12s} {acc:.3f}")
    print(
        f"  {'overall':12s} {report['overall']:.3f}   (n={report['n_per_family']} per family, "
        f"seed {report['seed']}, {report['train_seconds']:.0f}s training)"
    )
    return 0
