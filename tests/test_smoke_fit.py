"""A real Lightning fit on the tiny real-class Qwen2.5-VL with a real MLflow sqlite store.

Asserts what a user relies on: the policy learns (parameters change), the frozen MLLM does not, the
checkpoints hold no frozen weights, policy.pt loads on its own, and MLflow has every metric under
its documented name plus the whole config as params.
"""

import signal

import torch
import yaml
from helpers import tiny_overrides
from mlflow.tracking import MlflowClient

from score_lit.config import load_config
from score_lit.mllm import build_mllm
from score_lit.training.checkpoint import load_policy, save_policy
from score_lit.training.fit import fit
from score_lit.training.module import ScoreModule

TRAIN_METRICS = [
    "reward/fidelity",
    "reward/sparsity",
    "dce/mean",
    "keep_ratio/mean",
    "advantage/std",
    "policy/entropy",
    "time/encode",
    "time/rollout",
    "time/reward",
    "time/update",
]
VAL_METRICS = ["val/accuracy_r0.25", "val/accuracy_r0.10", "val/accuracy_r1.00", "val/dce_r0.10", "val/dce_bound_ok"]


def test_fit_trains_the_policy_only_and_logs_everything(tmp_path, monkeypatch):
    base = load_config([], tiny_overrides(tmp_path))
    start = ScoreModule(base, build_mllm(base.mllm))  # a random policy, saved: the run starts from exactly it
    init = {k: v.clone() for k, v in start.policy.state_dict().items()}
    frozen_before = {k: v.clone() for k, v in start.frozen.state_dict().items()}
    init_path = save_policy(tmp_path / "init.pt", start.policy, base.policy, start.mllm.identity())
    cfg = load_config([], tiny_overrides(tmp_path) + [f"init_policy={init_path}"])
    built = {}

    def capture(mcfg):  # keep a handle on the frozen model the run used (the real builder, unchanged)
        built["mllm"] = build_mllm(mcfg)
        return built["mllm"]

    monkeypatch.setattr("score_lit.training.fit.build_mllm", capture)
    res = fit(cfg)

    # the policy changed, the frozen model did not
    trained, meta = load_policy(res.policy_path, expect_mllm=built["mllm"].identity())
    assert any(not torch.equal(init[k], v) for k, v in trained.state_dict().items())
    for k, v in built["mllm"].model.state_dict().items():
        torch.testing.assert_close(v, frozen_before[k], rtol=0, atol=0)
    assert all(not p.requires_grad for p in built["mllm"].model.parameters())
    assert meta["meta"]["global_step"] == 4
    shared, _ = load_policy(
        res.policy_path.with_suffix(""), expect_mllm=built["mllm"].identity()
    )  # runs/<name>/policy/
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in shared.state_dict().items())
    # its model card: Hub front matter, the backbone, the recipe, the data and steps, the run's config in config.json
    card = (res.policy_path.with_suffix("") / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "score_lit" and front["base_model"] == "tiny-random"
    assert front["score_lit"]["family"] == "qwen2_5_vl" and front["score_lit"]["global_step"] == 4
    assert "| width (the LLM's hidden size) | 64 |" in card and f"| `name` | {cfg.policy.name} |" in card
    assert "| `group_size` | 4 |" in card and "| stage1 | 4 | synthetic (stitched), 40 samples" in card
    assert "Trained 4 of 4 optimizer steps; exported in phase `stage1`. Started from `" + str(init_path) in card
    assert f"MLflow run `{res.run_id}`" in card and "No evaluation is recorded" in card
    assert meta["meta"]["config"]["rl"]["group_size"] == 4 and meta["meta"]["seed"] == cfg.seed

    # the Lightning checkpoint is the policy + optimizer + loops, no frozen weights
    ckpt = torch.load(res.checkpoint_dir / "last.ckpt", weights_only=False)
    assert ckpt["state_dict"] and all(k.startswith("policy.") for k in ckpt["state_dict"])
    assert ckpt["global_step"] == 4

    # MLflow: every documented metric, logged every step; validation twice; the config as params
    client = MlflowClient(res.tracking_uri)
    run = client.get_run(res.run_id)
    for name in TRAIN_METRICS:
        steps = [m.step for m in client.get_metric_history(res.run_id, name)]
        assert steps == [0, 1, 2, 3], name
    for name in VAL_METRICS:
        assert name in run.data.metrics, name
    assert len(client.get_metric_history(res.run_id, "val/accuracy_r0.10")) == 2
    assert len(client.get_metric_history(res.run_id, "val/accuracy_r1.00")) == 1  # frozen model: once
    assert run.data.params["rl.group_size"] == "4" and run.data.params["mllm.family"] == "qwen2_5_vl"
    assert 0.0 <= run.data.metrics["keep_ratio/mean"] <= 1.0
    within = run.data.metrics["val/dce_r0.10"] <= cfg.val.dce_bound
    assert run.data.metrics["val/dce_bound_ok"] == float(within)
    assert sorted(a.path for a in client.list_artifacts(res.run_id)) == ["curves.png", "policy.pt"]
    assert (res.run_dir / "curves.png").stat().st_size > 10_000  # a real figure, not an empty file
    assert str(tmp_path) in run.info.artifact_uri  # artifacts beside the sqlite store, not in the cwd

    # plot-run redraws the curves from the run's MLflow history
    from score_lit.cli import main

    out = tmp_path / "again.png"
    assert main(["plot-run", res.run_id, "--tracking-uri", res.tracking_uri, "--out", str(out)]) == 0
    assert out.stat().st_size > 10_000
    by_name = tmp_path / "by-name.png"  # the run's name (runs/<name>) finds the same run
    assert main(["plot-run", cfg.name, "--tracking-uri", res.tracking_uri, "--out", str(by_name)]) == 0
    assert by_name.read_bytes() == out.read_bytes()
    assert main(["plot-run", "no-such-run", "--tracking-uri", res.tracking_uri, "--out", str(by_name)]) == 2


def test_resume_auto_continues_from_last_checkpoint(tmp_path):
    prev = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (the suite may run under `&`)
    try:
        first = fit(load_config([], tiny_overrides(tmp_path, steps=2)))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # fit's Ctrl-C latch did not outlive it
    finally:
        signal.signal(signal.SIGINT, prev)
    ckpt = torch.load(first.checkpoint_dir / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2
    resumed = fit(load_config([], tiny_overrides(tmp_path, steps=4) + ["resume=auto"]))
    ckpt = torch.load(resumed.checkpoint_dir / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 4  # two more steps, not four from scratch
    client = MlflowClient(resumed.tracking_uri)
    assert resumed.run_id == first.run_id  # one MLflow run across the restart
    steps = sorted(m.step for m in client.get_metric_history(resumed.run_id, "keep_ratio/mean"))
    assert steps == [0, 1, 2, 3]  # the second process trained only the missing steps, continuing the run
    run = client.get_run(resumed.run_id)
    assert run.data.params["resume"] == "None" and run.data.tags["resumed.resume"] == "auto"  # params never change


def test_an_init_policy_of_another_architecture_is_one_line_before_anything_is_written(tmp_path):
    import pytest

    from score_lit.config import ConfigError

    base = load_config([], tiny_overrides(tmp_path) + ["policy.name=mlp"])
    start = ScoreModule(base, build_mllm(base.mllm))
    init_path = save_policy(tmp_path / "init.pt", start.policy, base.policy, start.mllm.identity())  # an `mlp`
    cfg = load_config([], tiny_overrides(tmp_path) + [f"init_policy={init_path}", "policy.name=temporal_mlp"])
    with pytest.raises(
        ConfigError, match=r"init_policy=.*init.pt is another policy \(policy.name=mlp there, temporal_mlp here\)"
    ):
        fit(cfg)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()
