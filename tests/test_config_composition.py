"""One loader for every config, with composition: `defaults:` lists, `schema:` keys, and the shipped YAMLs.

tests/data/resolved_configs.json holds the resolved config of every shipped YAML as the commit before composition
printed it (`show-config` for the run configs; BenchConfig and the toy presets' ToyConfig as bench and toy-mllm
built them), so rewriting conf/ onto `defaults:` and dropping restated defaults is held to change nothing. Since the
dataclass defaults became the recommended recipe (query_mlp, 32 wide, budget rollouts, lambda 0.1, which the stage
configs had composed from a recipe file), the configs that did not compose it (eval*, trainer/*) record those four
policy.* / rl.* values; the stage configs' records are unchanged.
"""

import json
from pathlib import Path

import pytest

from score_lit.cli import main
from score_lit.config import Config, ConfigError, compose, load_config, schema_of, to_dict

ROOT = Path(__file__).resolve().parents[1]
RESOLVED = json.loads((ROOT / "tests" / "data" / "resolved_configs.json").read_text())
LAYERS_ONLY = {"conf/recipe/paper.yaml"}  # composed into others, never run alone


def test_every_shipped_yaml_shows_the_config_it_resolved_to_before(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "conf").rglob("*.yaml")}
    assert shipped - LAYERS_ONLY == set(RESOLVED)  # a new YAML gets its resolved config recorded here
    for f in sorted(RESOLVED):
        assert main(["show-config", f]) == 0
        assert json.loads(capsys.readouterr().out) == RESOLVED[f], f


def test_schema_is_read_from_the_file():
    assert schema_of(["conf/stage1.yaml"]) == "run" and schema_of([ROOT / "conf/bench_cpu.yaml"]) == "bench"
    assert schema_of([ROOT / "conf/toy/evidence4.yaml"]) == "toy"  # from the file itself; its default says toy too
    with pytest.raises(ConfigError, match=r"is a bench config \(schema: bench\), not a run config"):
        load_config([ROOT / "conf/bench_cpu.yaml"])
    with pytest.raises(ConfigError, match="declare different schemas"):
        schema_of([ROOT / "conf/bench_cpu.yaml", ROOT / "conf/toy/first.yaml"])


def test_defaults_order_file_over_defaults_overrides_last(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "a.yaml").write_text("rl: {group_size: 4, gate_tau: 0.2}\nseed: 1\n")
    (tmp_path / "base" / "b.yaml").write_text("defaults: [a]\nrl: {group_size: 6}\n")  # its own folder first
    (tmp_path / "c.yaml").write_text("seed: 7\n")
    top = tmp_path / "top.yaml"
    top.write_text("defaults: [base/b, c]\nname: top\nrl: {gate_tau: 0.3}\n")
    assert [shown for shown, _, _ in compose(top)] == [
        str(tmp_path / p) for p in ("base/a.yaml", "base/b.yaml", "c.yaml")
    ] + [str(top)]
    cfg = load_config([top], ["rl.gate_tau=0.4"])
    # a: group_size 4, tau 0.2, seed 1 <- b: group_size 6 <- c: seed 7 <- top: tau 0.3 <- override: tau 0.4
    assert (cfg.rl.group_size, cfg.seed, cfg.name, cfg.rl.gate_tau) == (6, 7, "top", 0.4)
    assert load_config([top]).rl.gate_tau == 0.3


def test_defaults_fall_back_to_conf(tmp_path):
    y = tmp_path / "mine.yaml"
    y.write_text("defaults: [recipe/paper]\nname: mine\n")  # not beside it: conf/recipe/paper.yaml
    cfg = load_config([y])
    assert (cfg.name, cfg.policy.name, cfg.policy.hidden, cfg.rl.sampler) == ("mine", "mlp", 256, "bernoulli")


def _show(capsys, *args) -> dict:
    assert main(["show-config", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_stage_config_trains_the_dataclass_defaults_recipe(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    shown, default = _show(capsys, "conf/stage1.yaml"), to_dict(Config())
    for section in ("policy", "rl"):
        assert shown[section] == default[section], section  # every key: the YAML sets none of them
    # the recommended recipe, hand-listed (docs/RESULTS.md: the ablation's winner)
    assert (shown["policy"]["name"], shown["policy"]["hidden"], shown["rl"]["sampler"]) == ("query_mlp", 32, "budget")
    assert shown["rl"]["sparsity_weight"] == 0.1
    for stage in (
        "conf/stage2.yaml",
        "conf/curriculum.yaml",
        "conf/first_toy/stage1.yaml",
        "conf/first_toy/stage2.yaml",
    ):
        shown = _show(capsys, stage)
        assert (shown["policy"], shown["rl"]) == (default["policy"], default["rl"]), stage


PAPER_POLICY = {"name": "mlp", "hidden": 256, "activation": "gelu", "init_keep_prob": 0.5, "selection": "global"}
PAPER_RL = {
    "group_size": 8,
    "estimator": "split",
    "sparsity_weight": 0.1,
    "gate_tau": 0.1,
    "eps": 1e-6,
    "entropy_coef": 0.0,
    "sampler": "bernoulli",
    "budgets": [0.05, 0.1, 0.15, 0.25],  # unread by the bernoulli sampler
}


def test_the_paper_recipe_file_gives_the_paper_recipe_after_any_stage_config(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for stage in ("conf/stage1.yaml", "conf/stage2.yaml", "conf/curriculum.yaml", "conf/first_toy/stage2.yaml"):
        alone, paper = _show(capsys, stage), _show(capsys, stage, "conf/recipe/paper.yaml")
        assert (paper["policy"], paper["rl"]) == (PAPER_POLICY, PAPER_RL), stage
        assert {k: v for k, v in paper.items() if k not in ("policy", "rl")} == {
            k: v for k, v in alone.items() if k not in ("policy", "rl")
        }, stage  # the rest stays the stage config's
    cfg = load_config([ROOT / "conf/stage1.yaml", ROOT / "conf/recipe/paper.yaml"], ["rl.sparsity_weight=0.3"])
    assert (cfg.policy.name, cfg.rl.sparsity_weight, cfg.name) == ("mlp", 0.3, "stage1")  # overrides still come last


def test_bad_defaults_say_what_to_fix(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("defaults: [b]\n")
    b.write_text("defaults: [a]\n")
    with pytest.raises(ConfigError, match=r"its defaults include itself"):
        load_config([a])
    a.write_text("defaults: [recipe/nope]\n")
    with pytest.raises(ConfigError, match=r"defaults entry 'recipe/nope' is not a file"):
        load_config([a])
    a.write_text("defaults: {x: 1}\n")
    with pytest.raises(ConfigError, match=r"defaults must be a list of files"):
        load_config([a])
    a.write_text("defaults: [recipe/paper]\nrl: {grup_size: 4}\n")  # a typo names the file it is in
    with pytest.raises(ConfigError, match=rf"unknown config key 'rl.grup_size' in '{a}'.*did you mean 'rl.group_size'"):
        load_config([a])


def test_show_config_with_overrides_and_a_bad_schema(capsys, tmp_path):
    assert main(["show-config", str(ROOT / "conf/bench_cpu.yaml"), "repeats=3"]) == 0
    assert json.loads(capsys.readouterr().out)["repeats"] == 3
    y = tmp_path / "x.yaml"
    y.write_text("schema: nope\n")
    assert main(["show-config", str(y)]) == 2
    assert "schema: 'nope' is not a config schema; use one of ['bench', 'run', 'toy']" in capsys.readouterr().err
    assert isinstance(load_config([]), Config)
