"""Two-process fits of the project's own training step on the tiny real-class Qwen2.5-VL, on CPU.

Each test starts `python tests/dist/fit.py OUT key=value ...` (score_lit.training.fit.fit with a recording
callback); Lightning's launcher re-executes it for rank 1. Each rank writes the sample ids it trained,
what ZeRO did to a frozen weight and to its optimizer state, and its policy weights (tests/dist/fit.py).

How these CPU runs differ from the GPU runs they stand for (conf/trainer/ddp.yaml, deepspeed_zero3.yaml):
- 2 CPU processes with gloo collectives, not 8 GPUs with NCCL.
- fp32 everywhere (trainer.precision=32-true, mllm.dtype=float32), not bf16-mixed: no bf16 weights under an
  fp32 master copy, no autocast, so no bf16 rounding in the rollouts' CE.
- ZeRO-3 runs through score_lit.training.strategies.CPUDeepSpeedStrategy (Lightning's DeepSpeedStrategy minus its
  CUDA-only and device-index checks, root device cpu:0) on DeepSpeed's CPU accelerator (DS_ACCELERATOR=cpu),
  without its shared-memory all-reduce kernel; a GPU run uses the stock DeepSpeedStrategy.
- No DeepSpeed fused / CPU-Adam optimizer: the torch AdamW of ScoreModule, as on GPU (DeepSpeed's own
  optimizers JIT-compile for ~80 s). overlap_comm is off on CPU (no CUDA streams), on for GPU.
- ZeRO-3 partitions every frozen parameter here (trainer.zero3_persistence_threshold=0: the tiny model's
  weights are all under DeepSpeed's 1e5-element default, which would keep them whole); on GPU the default
  keeps norms and biases whole and partitions the large matrices.
- A model of ~200k parameters and 2-3 steps: this checks the wiring (partitioning, gathering on use,
  sharded optimizer state, engine backward/step under manual optimization, checkpoints, export), not speed
  or memory. The GPU path (conf/trainer/deepspeed_zero3.yaml) still has to be run once on GPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import tiny_run

from score_lit.training.checkpoint import load_policy

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "dist" / "fit.py"


def tiny(tmp_path: Path, name: str, steps: int, val: bool) -> list[str]:
    return tiny_run(
        tmp_path,
        name,
        steps,
        data={"train_samples": 40, "val_samples": 2 if val else 0},
        val_every=steps,
        extra=["trainer.accelerator=cpu", "trainer.devices=2"],
    )


def run_two_ranks(tmp_path: Path, overrides: list[str], timeout: int = 150) -> tuple[dict, dict]:
    """Runs the 2-process fit; returns each rank's record (rank0.json, rank1.json) plus their policy weights."""
    out = tmp_path / "out"
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "PYTHONUNBUFFERED": "1"}
    for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        env.pop(k, None)  # a fresh launch, whatever ran this test
    log = tmp_path / "fit.log"
    with log.open("w") as f:
        try:
            proc = subprocess.run(
                [sys.executable, str(SCRIPT), str(out), *overrides],
                cwd=tmp_path,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"2-process fit timed out after {timeout} s; log:\n{log.read_text()[-4000:]}")
    assert proc.returncode == 0, f"2-process fit failed (rc {proc.returncode}); log:\n{log.read_text()[-4000:]}"
    recs = []
    for r in (0, 1):
        rec = json.loads((out / f"rank{r}.json").read_text())
        rec["init"] = torch.load(out / f"policy_init_rank{r}.pt")
        rec["final"] = torch.load(out / f"policy_rank{r}.pt")
        recs.append(rec)
    return recs[0], recs[1]


def assert_ranks_trained_their_own_samples(r0: dict, r1: dict, steps: int) -> None:
    assert sorted(r0["ids"]) == sorted(r1["ids"]) == [str(s) for s in range(steps)]
    for s in r0["ids"]:  # each step, two different batches (one group of K rollouts per sample, on its rank)
        assert not set(r0["ids"][s]) & set(r1["ids"][s]), (s, r0["ids"][s], r1["ids"][s])


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


@pytest.mark.parametrize("name", ["cpu", "ddp", "deepspeed_zero2", "deepspeed_zero3"])
def test_trainer_configs_build_their_strategy(name):
    """conf/trainer/<name>.yaml: starts with its command, loads over a stage config, builds its strategy; a
    DeepSpeed one carries a config DeepSpeed accepts (our stage and clipping, the torch optimizer, no offload)."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    from score_lit.config import ConfigError, load_config
    from score_lit.training.strategies import CPUDeepSpeedStrategy, build_strategy

    path = ROOT / "conf" / "trainer" / f"{name}.yaml"
    assert path.read_text().startswith(f"# python -m score_lit train conf/stage1.yaml conf/trainer/{name}.yaml")
    cfg = load_config([ROOT / "conf" / "stage1.yaml", path], ["mllm.path=null", "optim.grad_clip=0.5"])
    strategy = build_strategy(cfg)
    if not name.startswith("deepspeed"):
        assert strategy == cfg.trainer.strategy
        return
    assert type(strategy) is DeepSpeedStrategy  # the stock strategy on GPU
    from deepspeed.runtime.config import DeepSpeedConfig

    ds = DeepSpeedConfig({**strategy.config, "gradient_accumulation_steps": 1})
    assert ds.zero_optimization_stage == int(name[-1]) and ds.gradient_clipping == 0.5
    assert "optimizer" not in strategy.config and "offload_param" not in strategy.config["zero_optimization"]
    assert "offload_optimizer" not in strategy.config["zero_optimization"] and strategy.exclude_frozen_parameters
    cpu = load_config([path], ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"])
    assert type(build_strategy(cpu)) is CPUDeepSpeedStrategy
    if name == "deepspeed_zero3":
        with pytest.raises(ConfigError, match="cache_dir"):
            build_strategy(load_config([path], ["stage1.data.cache_dir=/tmp/features"]))


@pytest.mark.slow
@pytest.mark.distributed
def test_ddp_two_processes_train_different_samples_and_one_policy(tmp_path):
    """2 CPU processes, DDP over gloo, 3 steps of the real training step (see the module docstring)."""
    steps = 3
    r0, r1 = run_two_ranks(tmp_path, tiny(tmp_path, "ddp", steps, val=False) + ["trainer.strategy=ddp"])
    assert (r0["rank"], r1["rank"], r0["world"]) == (0, 1, 2) and r0["strategy"] == "DDPStrategy"
    assert_ranks_trained_their_own_samples(r0, r1, steps)
    assert_same(r0["init"], r1["init"])  # DDP broadcasts rank 0's start
    assert_same(r0["final"], r1["final"])  # averaged gradients: one policy on every rank
    assert any(not torch.equal(r0["init"][k], v) for k, v in r0["final"].items())  # and it trained
    policy, meta = load_policy(tmp_path / "runs" / "ddp" / "policy.pt")
    assert_same(policy.state_dict(), r0["final"])
    assert meta["meta"]["global_step"] == steps
    f = r0["frozen"]["1"]
    assert not f["zero"] and f["local"] == f["numel"]  # DDP: every rank holds the whole frozen model


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeed_zero3_two_processes_partition_the_frozen_model(tmp_path):
    """2 CPU processes, DeepSpeed ZeRO-3 over gloo through CPUDeepSpeedStrategy, 2 steps of the real training
    step plus a validation and a checkpoint. How this differs from a GPU run: the module docstring."""
    steps = 2
    zero3 = ["trainer.strategy=deepspeed_zero3", "trainer.zero3_persistence_threshold=0"]
    over = tiny(tmp_path, "zero3", steps, val=True) + zero3
    r0, r1 = run_two_ranks(tmp_path, over)
    assert r0["strategy"] == "CPUDeepSpeedStrategy" and r0["optimizer"] == "DeepSpeedZeroOptimizer_Stage3"
    assert_ranks_trained_their_own_samples(r0, r1, steps)

    # the frozen MLLM is partitioned: each rank stores half of a frozen weight, and between steps
    # (after the hooks gathered it for the forward and released it) nothing more is materialised
    for r in (r0, r1):
        for s in map(str, range(1, steps + 1)):
            f = r["frozen"][s]
            assert f["zero"] and f["status"] == "NOT_AVAILABLE" and f["now"] == 0 and not f["persist"], f
            assert f["local"] == -(-f["numel"] // 2) < f["numel"], f
    # ... and gathered on use: the adapter's direct submodule calls (get_video_features, language_model, lm_head,
    # the input embeddings) computed the same CE as a whole copy of the model
    for r in (r0, r1):
        torch.testing.assert_close(torch.tensor(r["ce_base_run"]), torch.tensor(r["ce_base_whole"]), rtol=0, atol=1e-5)
    # the policy is kept whole on every rank (strategies.keep_whole), its parameters still ZeRO-managed
    for r in (r0, r1):
        p = r["policy"][str(steps)]
        assert p["zero"] and p["persist"] and p["status"] == "AVAILABLE" and p["now"] == p["numel"] > p["local"], p

    # optimizer state sharded: each rank's AdamW state covers its partition only, together the whole policy
    n = r0["policy_numel"]
    assert 0 < r0["adam_state_numel"] < n and 0 < r1["adam_state_numel"] < n
    assert r0["adam_state_numel"] + r1["adam_state_numel"] >= n

    # the policy trained, identically on both ranks; policy.pt (rank 0, no gather) holds those weights
    assert_same(r0["init"], r1["init"])
    assert_same(r0["final"], r1["final"])
    assert any(not torch.equal(r0["init"][k], v) for k, v in r0["final"].items())
    run = tmp_path / "runs" / "zero3"
    policy, meta = load_policy(run / "policy.pt")
    assert_same(policy.state_dict(), r0["final"])
    assert meta["meta"]["global_step"] == steps

    assert (
        r0["constructed"] == {}
    )  # the tiny random model (no checkpoint) is built before the Trainer, then partitioned

    # Lightning's DeepSpeed checkpoint is a directory of per-rank shards, without the frozen weights
    shards = run / "checkpoints" / "last.ckpt" / "checkpoint"
    assert sorted(p.name for p in shards.iterdir()) == [
        f"zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" for r in (0, 1) for kind in ("model", "optim")
    ]
    states = torch.load(shards / "zero_pp_rank_0_mp_rank_00_model_states.pt", weights_only=False)
    assert states["module"] and all(k.startswith("policy.") for k in states["module"])
    assert states["global_step"] == steps


@pytest.mark.slow
@pytest.mark.distributed
def test_deepspeed_zero3_builds_a_checkpoint_partitioned_from_construction(tmp_path):
    """With mllm.path a checkpoint, ZeRO-3 builds the frozen model in ScoreModule.configure_model, inside DeepSpeed's
    zero.Init, and transformers loads each weight into its partitions: right after construction (before DeepSpeed's
    initialize) every frozen weight of each rank is already its half, nothing materialised; the CE computed from the
    gathered weights still equals a whole copy's."""
    from score_lit.mllm.tiny import save_tiny

    ckpt = save_tiny(tmp_path / "tiny-ckpt", "qwen2_5_vl")
    over = tiny(tmp_path, "zero3ckpt", 1, val=False) + [
        f"mllm.path={ckpt}",
        "trainer.strategy=deepspeed_zero3",
        "trainer.zero3_persistence_threshold=0",
    ]
    r0, r1 = run_two_ranks(tmp_path, over)
    for r in (r0, r1):
        c = r["constructed"]
        assert c["n"] > 10 and c["zero"] == c["partitioned"] == c["n"] and c["max_now"] == 0, c
        torch.testing.assert_close(torch.tensor(r["ce_base_run"]), torch.tensor(r["ce_base_whole"]), rtol=0, atol=1e-5)
    assert_same(r0["final"], r1["final"])
    assert (tmp_path / "runs" / "zero3ckpt" / "policy.pt").is_file()


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.mlflow_server
def test_ddp_against_a_tracking_server_logs_from_rank_0_only(tmp_path, mlflow_server):
    """2 CPU processes, DDP, tracking.tracking_uri = conftest's real `mlflow server`: one MLflow run, each step's
    metrics once (a second logging rank would open a run of its own or log every step twice)."""
    from mlflow.tracking import MlflowClient

    steps = 3
    uri = f"tracking.tracking_uri={mlflow_server.uri}"
    run_two_ranks(
        tmp_path, tiny(tmp_path, "ddp", steps, val=False) + ["trainer.strategy=ddp", uri, "tracking.experiment=ddp"]
    )
    client = MlflowClient(mlflow_server.uri)
    runs = client.search_runs([client.get_experiment_by_name("ddp").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED" and runs[0].info.run_name == "ddp"
    for key in ("loss", "reward/fidelity", "time/rollout"):
        assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, key)) == list(range(steps)), key
    assert not (tmp_path / "runs" / "ddp" / "mlflow_pending.jsonl").exists()
