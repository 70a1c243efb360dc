"""One loader for every config, with composition: `defaults:` lists, `schema:` keys, and the shipped YAMLs.

tests/data/resolved_configs.json holds the resolved config of every shipped YAML as the commit before composition
printed it (`show-config` for the run configs; BenchConfig and the toy presets' ToyConfig as bench and toy-mllm
built them), so rewriting conf/ onto `defaults:` and dropping restated defaults is held to change nothing.
"""

import json
from pathlib import Path

import pytest

from score_lit.cli import main
from score_lit.config import Config, ConfigError, compose, load_config, schema_of

ROOT = Path(__file__).resolve().parents[1]
RESOLVED = json.loads((ROOT / "tests" / "data" / "resolved_configs.json").read_text())
LAYERS_ONLY = {"conf/recipe/score.yaml", "conf/recipe/paper.yaml"}  # composed into others, never run alone


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


def test_defaults_fall_back_to_conf_and_the_paper_recipe_overrides_the_stage_recipe(tmp_path):
    y = tmp_path / "mine.yaml"
    y.write_text("defaults: [recipe/score]\nname: mine\n")  # not beside it: conf/recipe/score.yaml
    cfg = load_config([y])
    assert (cfg.policy.name, cfg.policy.hidden, cfg.rl.sampler, cfg.rl.sparsity_weight) == (
        "query_mlp",
        32,
        "budget",
        0.1,
    )
    paper = load_config([ROOT / "conf/stage1.yaml", ROOT / "conf/recipe/paper.yaml"])
    assert (paper.policy.name, paper.policy.hidden, paper.rl.sampler, paper.rl.sparsity_weight) == (
        "mlp",
        256,
        "bernoulli",
        0.1,
    )
    assert paper.name == "stage1" and paper.mllm.path == "artifacts/toy-mllm"


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
    a.write_text("defaults: [recipe/score]\nrl: {grup_size: 4}\n")  # a typo names the file it is in
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
