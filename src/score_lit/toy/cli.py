"""`python -m score_lit toy-mllm [--out DIR] [--seed N] [--preset first|evidence|evidence2|evidence3|evidence4] [--families a,b] [--text-layers L] [--quick] [--resume] [--stop-after N]`: train the toy MLLM.

Trains score_lit.toy.model's frozen toy Qwen2.5-VL (minutes on 2 CPU cores), saves it as a Hugging Face
directory usable as `mllm.path=DIR`, evaluates it on the held-out test split with all visual tokens and
prints the directory and the per-family accuracies (also in DIR/accuracy.json). `--quick` is a
seconds-long run at tiny widths (tests): it checks the pipeline, not the accuracy. `--resume` continues an
interrupted run from DIR/train_state.pt (removed once the model is saved), so a long recipe (the evidence
preset: hours on 2 cores) can span several sittings.
"""

from __future__ import annotations

import argparse
import json


def cmd_toy_mllm(args: list[str]) -> int:
    from score_lit.toy.model import ToyConfig

    p = argparse.ArgumentParser(prog="score_lit toy-mllm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=ToyConfig.out, help=f"output directory (default: {ToyConfig.out})")
    p.add_argument("--seed", type=int, default=ToyConfig.seed)
    p.add_argument("--families", default="", help="comma-separated synthetic families (default: the preset's)")
    p.add_argument("--preset", default=None, help="a named recipe of score_lit.toy.model.PRESETS: first (the first toy's "
                   "families) or evidence (also the evidence benchmark's); default: toy_mllm.DEFAULT_PRESET")
    p.add_argument("--quick", action="store_true", help="seconds-long run at tiny widths (tests)")
    p.add_argument("--text-layers", type=int, default=None, help=f"LLM decoder layers (default {ToyConfig.text_layers})")
    p.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt if it exists (saved at "
                   f"stage ends and every {ToyConfig.checkpoint_every} joint steps); a fresh run without it")
    p.add_argument("--stop-after", type=int, default=0, metavar="N", help="save the training state after joint step N "
                   "and stop (continue with --resume; the evidence2 preset starts from evidence's state at step 1250)")
    ns = p.parse_args(args)
    families = tuple(f for f in ns.families.split(",") if f)

    from transformers.utils import logging as hf_logging

    from score_lit.config import ConfigError
    from score_lit.toy.model import DEFAULT_PRESET, PRESETS, quick_config, train_toy_mllm

    hf_logging.disable_progress_bar()  # the weight-loading bars would drown the progress lines
    make = quick_config if ns.quick else ToyConfig
    preset = ns.preset or DEFAULT_PRESET
    if preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: use one of {sorted(PRESETS)}")
    extra = {} if ns.quick else dict(PRESETS[preset])
    if families:
        extra["families"] = families
    if ns.text_layers is not None:
        extra["text_layers"] = ns.text_layers
    out = train_toy_mllm(make(out=ns.out, seed=ns.seed, **extra), resume=ns.resume, stop_after=ns.stop_after)
    if out is None:
        return 0
    report = json.loads((out / "accuracy.json").read_text())
    print(out)
    for name, acc in report["families"].items():
        print(f"  {name:12s} {acc:.3f}")
    print(f"  {'overall':12s} {report['overall']:.3f}   (n={report['n_per_family']} per family, "
          f"seed {report['seed']}, {report['train_seconds']:.0f}s training)")  # fmt: skip
    return 0
