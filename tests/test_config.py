"""Config loading: defaults <- YAML <- key=value, and one clear line for every bad input."""

import subprocess
import sys
from pathlib import Path

import pytest

from score_lit.config import Config, ConfigError, check_files, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_yaml_and_overrides_layer_in_order(tmp_path):
    y = tmp_path / "a.yaml"
    y.write_text("rl:\n  group_size: 4\nstage1:\n  data:\n    frames: 8\n")
    cfg = load_config([y], ["rl.group_size=6", "val.ratios=[0.5,0.2]"])
    assert isinstance(cfg, Config)
    assert cfg.rl.group_size == 6 and cfg.stage1.data.frames == 8 and cfg.val.ratios == [0.5, 0.2]
    assert cfg.rl.estimator == "split"  # untouched default


def test_shipped_configs_load():
    files = sorted((ROOT / "conf").glob("*.yaml"))
    assert {f.name for f in files} >= {"stage1.yaml", "stage2.yaml"}
    from score_lit.perf.bench_setup import load_bench_config

    for f in files:
        if f.name.startswith("bench_"):
            load_bench_config([f])
        else:  # as written, on a fresh clone too: the files a run reads (stage 2's init_policy, eval's policy) are
            load_config([f])  # checked when it starts (check_files), not when its config loads


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'rl.grup_size'.*did you mean 'rl.group_size'"):
        load_config([], ["rl.grup_size=4"])
    with pytest.raises(ConfigError, match=r"did you mean 'trainer.precision'"):
        load_config([], ["trainer.precison=32"])
    with pytest.raises(ConfigError, match=r"'stage2.data.frame'.*did you mean 'stage2.data.frames'"):
        load_config([], ["stage2.data.frame=4"])


def test_keys_that_moved_say_where():
    with pytest.raises(ConfigError, match=r"'trainer.max_steps'.*moved to stage1.steps / stage2.steps"):
        load_config([], ["trainer.max_steps=4"])
    with pytest.raises(ConfigError, match=r"'data' in override 'data.frames=4'.*moved to stage1.data / stage2.data"):
        load_config([], ["data.frames=4"])
    with pytest.raises(ConfigError, match=r"'phase'.*moved to phases"):
        load_config([], ["phase=stage2"])


def test_run_length_is_the_sum_of_its_phases():
    cfg = load_config([], ["phases=[stage1,stage2]", "stage1.steps=30", "stage2.steps=20"])
    assert cfg.max_steps == 50 and cfg.stage2.data.families == ["flash", "distracted"]
    assert load_config([], ["stage1.steps=30", "stage2.steps=20"]).max_steps == 30  # only the listed phases


def test_unknown_key_in_yaml(tmp_path):
    y = tmp_path / "b.yaml"
    y.write_text("policy:\n  hiden: 32\n")
    with pytest.raises(ConfigError, match=r"'policy.hiden' in .*b.yaml.*did you mean 'policy.hidden'"):
        load_config([y])


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"wrong type for config key 'rl.group_size'"):
        load_config([], ["rl.group_size=eight"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("rl.group_size=0", r"rl.group_size=0: every estimator compares"),
        ("rl.group_size=1", r"rl.group_size=1: .*K < 2 every advantage is 0 and nothing trains"),
        ("trainer.strategy=dpp", r"trainer.strategy=.dpp. is not valid \(did you mean trainer.strategy=ddp\?\)"),
        ("trainer.accelerator=cpuu", r"did you mean trainer.accelerator=cpu\?"),
        ("mllm.dtype=bf16", r"did you mean mllm.dtype=bfloat16\?"),
        ("rl.estimator=splt", r"did you mean rl.estimator=split\?"),
        ("policy.name=transformer", r"policy.name=.transformer. is not registered"),
        ("val.ratios=[0.1,1.5]", r"val.ratios=1.5 is outside \(0, 1\]"),
        ("val.ratios=[0.0]", r"outside \(0, 1\]"),
        ("init_policy=/nope/policy.pt", r"init_policy='/nope/policy.pt' does not exist: .*make train-stage1"),
        ("stage1.data.size=50", r"multiple of 16"),
        (
            "stage1.data.families=[stiched]",
            r"unknown \['stiched'\]; available: \['colour', 'distracted', 'flash', 'move', 'order', 'stitched'\]",
        ),
        ("stage2.data.source=video_qa", r"needs data.path="),
        ("stage2.data.source=videos", r"data.source='videos': use one of"),
        ("stage1.data.path=/nope.jsonl", r"stage1.data.path='/nope.jsonl' does not exist"),
        ("stage1.data.sample_fps=2", r"needs a positive rate and data.batch_size=1"),
        ("stage1.data.fit=zoom", r"use pad, stretch or crop"),
        ("stage1.steps=0", r"must be >= 1"),
        ("phases=[stage1,stage1]", r"at most once"),
        ("phases=[stage3]", r"list each of \['stage1', 'stage2'\]"),
        (
            "eval.benchmark=mvbenh",
            r"eval.benchmark='mvbenh' is not registered \(did you mean eval.benchmark=mvbench\?\)",
        ),
    ],
)
def test_cross_field_checks(override, message):
    with pytest.raises(ConfigError, match=message):
        check_files(load_config([], [override]))  # file checks run at a command's start, the rest at load


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config([tmp_path / "missing.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl: [unclosed\n")
    with pytest.raises(ConfigError, match="not readable YAML"):
        load_config([bad])


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "runs"
    for args in (
        ["rl.group_size=0"],
        ["val.ratios=[2.0]"],
        ["resume=/nope.ckpt"],
        ["rl.grup_size=3"],
        [str(tmp_path / "x.yaml")],
    ):
        p = subprocess.run(
            [sys.executable, "-m", "score_lit", "train", f"out_dir={out}", *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert p.returncode == 2, p.stderr
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("score_lit: error: "), p.stderr
        assert not out.exists()


def test_more_bad_input_is_one_line(tmp_path):
    """eval, viz, plot-run and YAML syntax: one line naming what the user typed (run at once: each is a process)."""
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("rl:\n  group_size: 4\n   bad: [1\n")
    cases = {
        ("eval", "conf/eval.yaml", "eval.ratios=[]"): "eval.ratios=[] sweeps nothing",
        ("eval", "conf/eval.yaml", "eval.ratios=0.1"): "config key 'eval.ratios' is a list: write eval.ratios=[0.1]",
        ("viz", __file__, "--ratio", "2"): "--ratio=2.0 is outside (0, 1]",
        ("viz", __file__, "--method", "fastvv"): "--method=['fastvv']: unknown ['fastvv']",
        ("plot-run", "nope", "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"): "no MLflow store at sqlite:///",
        ("train", str(bad_yaml)): "is not readable YAML at line 3, column 7: mapping values are not allowed",
    }
    procs = {
        args: subprocess.Popen(
            [sys.executable, "-m", "score_lit", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in cases
    }
    for args, expected in cases.items():
        _, err = procs[args].communicate(timeout=180)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert procs[args].returncode == 2 and len(lines) == 1 and lines[0].startswith("score_lit: error: "), (
            args,
            err,
        )
        assert expected in lines[0], (args, lines[0])


def test_yaml_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl:\n  group_size: [4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml' is not readable YAML at line \d+, column \d+: "):
        load_config([bad])


def test_show_config_prints_the_resolved_values():
    p = subprocess.run(
        [sys.executable, "-m", "score_lit", "show-config", "conf/stage1.yaml", "rl.group_size=3", "init_policy=null"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    import json

    cfg = json.loads(p.stdout)
    assert p.returncode == 0 and cfg["rl"]["group_size"] == 3 and cfg["rl"]["sparsity_weight"] == 0.1
    assert cfg["mllm"]["path"] == "artifacts/toy-mllm-evidence4"  # from conf/stage1.yaml over the dataclass default


def test_the_name_lists_the_config_checks_are_the_registries():
    from score_lit.config import names
    from score_lit.data import FAMILIES
    from score_lit.rl.advantage import ESTIMATORS
    from score_lit.rl.policy import ACTIVATIONS, POLICIES

    assert sorted(names.ESTIMATORS) == sorted(ESTIMATORS) and sorted(names.POLICIES) == sorted(POLICIES)
    assert sorted(names.ACTIVATIONS) == sorted(ACTIVATIONS) and sorted(names.FAMILIES) == sorted(FAMILIES)
    from score_lit.compressors import REGISTRY
    from score_lit.data.benchmarks import BENCHMARKS

    assert sorted(names.METHODS) == sorted(REGISTRY) and sorted(names.BENCHMARKS) == sorted(BENCHMARKS)
    from score_lit.mllm import REGISTRY as MLLMS

    assert names.MLLM_FAMILIES == {name: tuple(f.position_ids) for name, f in MLLMS.items()}


def test_the_family_registry_resolves_to_the_toy_generators_and_imports_none_up_front():
    """data.FAMILIES names each generator as "module:attr": build_family gives the toy's own function, and
    `import score_lit.data` (and its benchmarks) has imported no toy module yet."""
    from score_lit.data import FAMILIES, build_family
    from score_lit.toy import evidence, synthetic

    gens = {**synthetic.FAMILIES, **evidence.FAMILIES}
    assert sorted(FAMILIES) == sorted(gens) and all(build_family(f) is gens[f] for f in gens)
    code = (
        "import sys, score_lit.data, score_lit.data.benchmarks; print([m for m in sys.modules if 'score_lit.toy' in m])"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


def test_loading_a_config_imports_no_torch():
    # Every name is checked at load against torch-free lists: a typo costs a fraction of a second.
    code = (
        "import sys; from score_lit.config import load_config; load_config(['conf/stage2.yaml', 'conf/trainer/cpu.yaml']); "
        "load_config(['conf/eval.yaml']); from score_lit.toy.config import load_preset; load_preset('evidence4'); print(sorted(m for m in ('torch', 'numpy', 'transformers') if m in sys.modules))"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[1]
    )
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "score_lit", "show-config", "rl.estimator=spilt"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.strip() == (
        "score_lit: error: rl.estimator='spilt' is not registered (did you mean rl.estimator=split?); use one of ['grpo', 'rloo', 'split']"
    )


def test_a_registered_name_is_accepted_by_the_config():
    from score_lit.config import RLConfig, names
    from score_lit.rl.advantage import ESTIMATORS, register_estimator

    try:
        register_estimator("mine")(ESTIMATORS["grpo"])
        assert RLConfig(estimator="mine").estimator == "mine" and "mine" in names.ESTIMATORS
    finally:
        ESTIMATORS.pop("mine", None)
        names.ESTIMATORS.remove("mine")


PLANTED = [  # the bad names and values of the restructuring issue, each as a user would type it
    ("train", "rl.estimator=ppo", "rl.estimator='ppo' is not registered"),
    ("train", "policy.name=transformer", "policy.name='transformer' is not registered"),
    ("train", "rl.sampler=budgte", "rl.sampler='budgte' is not registered (did you mean rl.sampler=budget?)"),
    ("train", "trainer.accelerator=cpuu", "did you mean trainer.accelerator=cpu?"),
    ("train", "trainer.strategy=dpp", "did you mean trainer.strategy=ddp?"),
    ("train", "mllm.dtype=bf16", "did you mean mllm.dtype=bfloat16?"),
    ("train", "mllm.family=qwen25_vl", "did you mean mllm.family=qwen2_5_vl?"),
    ("train", "rl.group_size=1", "rl.group_size=1: every estimator compares"),
    ("train", "stage1.data.families=[stiched]", "data.families=['stiched']: unknown ['stiched']"),
    ("eval", "eval.benchmark=mvbenh", "did you mean eval.benchmark=mvbench?"),
    ("eval", "eval.methods=[fastvv]", "eval.methods=['fastvv']: unknown ['fastvv']"),
]


def test_every_planted_bad_name_is_one_line_exit_2_and_writes_nothing(tmp_path):
    procs = {}
    for i, (cmd, override, _) in enumerate(PLANTED):
        d = tmp_path / str(i)
        args = ([] if cmd == "train" else ["conf/eval.yaml"]) + [
            override,
            f"out_dir={d / 'runs'}",
            f"eval.out_dir={d / 'eval'}",
            f"tracking.tracking_uri=sqlite:///{d / 'mlflow.db'}",
        ]
        if cmd == "train":
            args.remove(f"eval.out_dir={d / 'eval'}")
        procs[i] = subprocess.Popen(
            [sys.executable, "-m", "score_lit", cmd, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    for i, (cmd, override, expected) in enumerate(PLANTED):
        _, err = procs[i].communicate(timeout=180)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert procs[i].returncode == 2 and len(lines) == 1 and lines[0].startswith("score_lit: error: "), (
            override,
            err,
        )
        assert expected in lines[0], (override, lines[0])
        assert not (tmp_path / str(i)).exists(), override  # no run folder, no eval folder, no MLflow store
