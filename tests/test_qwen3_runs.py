"""Training, eval (every method, FastV's attention included), bench and viz with mllm.family=qwen3_vl / qwen3_5 on the
tiny random models: nothing but the family name changes (the per-family equivalences: tests/test_qwen3_adapter.py)."""

import csv
import json

import numpy as np
import pytest

from score_lit.cli import main
from score_lit.config import MLLMConfig, PolicyConfig, load_config
from score_lit.config.names import DEFAULT_METHODS as METHODS  # the pre-vision variants are Qwen2.5-VL's
from score_lit.mllm import build_mllm
from score_lit.rl.policy import build_policy
from score_lit.toy.export import export_split
from score_lit.training.checkpoint import load_policy, save_policy

FAMILIES = ["qwen3_vl", "qwen3_5"]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_two_step_fit(family, tmp_path):
    from helpers import tiny_overrides

    from score_lit.training.fit import fit

    res = fit(load_config([], tiny_overrides(tmp_path, steps=2) + [f"mllm.family={family}", "mllm.path=null"]))
    policy, meta = load_policy(res.policy_path, expect_mllm=build_mllm(MLLMConfig(family=family)).identity())
    assert meta["mllm"]["family"] == family and meta["meta"]["global_step"] == 2


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_eval_sweep_every_method_viz_and_bench(family, tmp_path, capsys):
    d = tmp_path
    export_split(d / "bench", split="test", n=2, families=["flash"], frames=4, size=32)
    ident = {"family": family, "hidden_size": 64, "path": "tiny-random"}
    policy = save_policy(
        d / "policy.pt",
        build_policy(2 * 64, PolicyConfig(name="mlp", hidden=16)),
        PolicyConfig(name="mlp", hidden=16),
        ident,
    )
    args = [
        f"mllm.family={family}",
        "mllm.path=null",
        "eval.benchmark=toy",
        f"eval.root={d / 'bench'}",
        f"eval.policy={policy}",
        f"eval.methods=[{','.join(METHODS)}]",
        "eval.ratios=[1.0,0.25]",
        "eval.frames=4",
        "eval.size=32",
        "eval.batch_size=2",
        f"eval.out_dir={d / 'out'}",
        f"tracking.tracking_uri=sqlite:///{d / 'mlflow.db'}",
        "eval.viz_samples=0",
    ]
    assert main(["eval", "conf/eval.yaml", *args]) == 0
    rows = {
        (r["method"], r["retention_ratio"]): r
        for r in csv.DictReader(open(d / "out" / "results.csv"))
        if r["family"] == "all"
    }
    assert int(float(rows[("vanilla", "1.0")]["kept_tokens_mean"])) == 2 * 2 * 2  # 2 units of 2x2 tokens
    for m in METHODS:
        assert rows[(m, "1.0")]["accuracy"] == rows[("vanilla", "1.0")]["accuracy"], m  # keep-all = vanilla
        assert float(rows[(m, "0.25")]["kept_tokens_mean"]) <= 4, m
    video = next((d / "bench" / "videos").glob("flash_*.mp4"))
    capsys.readouterr()
    viz = [
        "viz",
        str(video),
        f"mllm.family={family}",
        "mllm.path=null",
        f"eval.policy={policy}",
        "eval.frames=4",
        "eval.size=32",
        "--method",
        "score,fastv",
        "--ratio",
        "0.25",
        "--out",
        str(d / "viz"),
    ]
    assert main(viz) == 0 and len(capsys.readouterr().out.strip().splitlines()) == 3  # grid + a GIF per method

    from score_lit.perf.bench import main as bench_main
    from score_lit.toy.export import write_mp4

    mp4 = d / "v.mp4"
    write_mp4(mp4, np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), fps=4.0)
    bench = [
        f"family={family}",
        "arch=tiny",
        "size=32",
        "frames=[4]",
        "ratios=[1.0,0.5]",
        "warmup=0",
        "repeats=1",
        f"video={mp4}",
        f"out_dir={d}",
        f"name={family}",
        "device=cpu",
        "threads=1",
    ]
    assert bench_main(bench) == 0
    (res,) = json.loads((d / f"{family}.json").read_text())["results"]
    assert res["visual_tokens"] == 8 and {r["retention_ratio"]: r["kept_tokens"] for r in res["ratios"]} == {
        1.0: 8,
        0.5: 4,
    }


@pytest.mark.parametrize("arch,family,layers", [("qwen3_vl_8b", "qwen3_vl", 36), ("qwen3_5_9b", "qwen3_5", 32)])
def test_released_size_archs_are_configs_of_the_real_classes(arch, family, layers):
    # bench's random-weight architectures: every key is accepted by the real config class (no weights are built).
    from score_lit.config import ConfigError
    from score_lit.mllm import adapter_class
    from score_lit.perf.archs import ARCHS
    from score_lit.perf.bench_setup import BenchConfig

    fam, text, vision = ARCHS[arch]
    cls = adapter_class(fam)
    _, config = cls.tiny_config(cls.tiny_tokenizer(), text, vision)
    assert (
        fam == family
        and config.text_config.num_hidden_layers == layers
        and config.vision_config.out_hidden_size == 4096
    )
    with pytest.raises(ConfigError, match=f"arch={arch} is a {family} architecture, not family=qwen2_5_vl"):
        BenchConfig(arch=arch)
