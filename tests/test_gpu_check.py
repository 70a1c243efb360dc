"""The GPU check (tools/gpu_check.sh): its arithmetic on hand-made numbers, its bad-input lines, its part
bookkeeping, and one whole run of the script on the tiny architectures on CPU, the code path the GPU runs.

Benchmarks are not tests: nothing here checks a speed.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from score_lit.perf import bench_setup
from score_lit.perf.gpu_check import Check
from score_lit.perf.gpu_report import check_targets, markdown, summarise

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu_check.sh"


def _row(ratio, kept, vision, policy, prefill, speedup, ideal, decode=10.0):
    """A row of score_lit.perf.bench's results; its ttft_speedup is set by _with_ttft_speedup, per frame count."""
    return {
        "ttft_ms": decode + vision + policy + prefill,  # the bench's TTFT: the sum of the stage medians
        "retention_ratio": ratio,
        "kept_tokens": kept,
        "decode_ms": decode,
        "vision_ms": vision,
        "policy_ms": policy,
        "prefill_ms": prefill,
        "prefill_speedup": speedup,
        "ideal_speedup": ideal,
        "share_of_ideal": speedup / ideal,
    }


def _with_ttft_speedup(doc):
    for res in doc["results"]:  # as the bench does: vanilla's ttft_ms / each ratio's, within one frame count
        full = next(r for r in res["ratios"] if r["retention_ratio"] == 1.0)
        for r in res["ratios"]:
            r["ttft_speedup"] = full["ttft_ms"] / r["ttft_ms"]
    return doc


def test_summary_and_targets_hand_computed():
    # 128 frames: model at 0.1 = 100 + 0.4 + 9.6 = 110 ms -> policy share 0.4 / 110 = 0.3636% (< 0.5%);
    # share of ideal 10.8 / 12 = 0.9 (meets >= 0.9, exactly). 256 frames: policy 1.2 / (200 + 1.2 + 18.8) = 0.545%
    # (misses), share 11 / 14 = 0.786 (misses). 32 frames is not among the two largest counts: not checked.
    doc = {
        "results": [
            {
                "frames": 32,
                "visual_tokens": 4096,
                "ratios": [_row(1.0, 4096, 30, 0.3, 50, 1.0, 1.0), _row(0.1, 410, 30, 0.3, 8, 6.25, 9.7)],
            },
            {
                "frames": 128,
                "visual_tokens": 16384,
                "ratios": [_row(1.0, 16384, 100, 0.4, 115.2, 1.0, 1.0), _row(0.1, 1639, 100, 0.4, 9.6, 10.8, 12.0)],
            },
            {
                "frames": 256,
                "visual_tokens": 32768,
                "ratios": [_row(1.0, 32768, 200, 1.2, 206.8, 1.0, 1.0), _row(0.1, 3277, 200, 1.2, 18.8, 11.0, 14.0)],
            },
        ]
    }
    rows = summarise(_with_ttft_speedup(doc))
    assert (
        len(rows) == 6
        and rows[3]["model_ms"] == pytest.approx(110.0)
        and rows[3]["policy_share"] == pytest.approx(0.4 / 110)
    )
    # TTFT = decode + model: 128 frames at 0.1: 10 + 110 = 120 ms; vanilla 10 + 100 + 0.4 + 115.2 = 225.6 -> 1.88x
    assert rows[3]["ttft_ms"] == pytest.approx(120.0) and rows[3]["ttft_speedup"] == pytest.approx(225.6 / 120)
    assert rows[2]["ttft_speedup"] == 1.0 and rows[2]["decode_ms"] == 10.0
    t = check_targets(rows)
    assert sorted(t) == ["128f", "256f"]
    assert (
        t["128f"]["share_of_ideal"] == pytest.approx(0.9)
        and t["128f"]["share_of_ideal_ok"]
        and t["128f"]["policy_share_ok"]
    )
    assert t["256f"]["policy_share"] == pytest.approx(1.2 / 220) and not t["256f"]["policy_share_ok"]
    assert t["256f"]["share_of_ideal"] == pytest.approx(11 / 14) and not t["256f"]["share_of_ideal_ok"]


def test_a_failed_part_is_recorded_and_the_next_one_runs(tmp_path):
    head = {
        "mode": "tiny",
        "environment": {
            "device_name": "cpu",
            "torch": "x",
            "cuda": None,
            "transformers": "y",
            "lightning": "z",
            "python": "3",
            "flash_attention_2": False,
        },
        "what_is_timed": "-",
        "targets": {},
        "budget_s": 60,
    }
    check = Check(tmp_path, 60, head)
    assert check.part("first", lambda: 1 / 0) is None
    assert check.part("second", lambda: {"x": 1}) == {"x": 1}
    doc = json.loads((tmp_path / "gpu_check.json").read_text())  # written after every part
    assert (
        doc["parts"]["first"]["status"] == "failed"
        and doc["parts"]["first"]["error"] == "ZeroDivisionError: division by zero"
    )
    assert doc["parts"]["second"]["status"] == "ok" and doc["parts"]["second"]["x"] == 1
    assert "## first: FAILED" in (tmp_path / "gpu_check.md").read_text()
    check.budget_s = -1  # spent: the next part is skipped, with the reason
    assert check.part("third", lambda: {"x": 2}) is None
    assert check.parts["third"]["status"] == "skipped" and "time budget" in check.parts["third"]["why"]
    assert "## third: SKIPPED" in markdown({**head, "total_s": 1.0, "parts": check.parts})


def test_without_a_decoder_the_bench_draws_synthetic_frames(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now raises ImportError, as on the GPU image
    assert bench_setup.decoders_missing() == ["decord"]
    assert bench_setup.video_source(bench_setup.BenchConfig(arch="tiny"), "/nonexistent") == bench_setup.SYNTHETIC
    assert "decord not importable: video=synthetic" in capsys.readouterr().out
    assert (
        bench_setup.video_source(bench_setup.BenchConfig(arch="tiny", video="/x.mp4"), "/nonexistent") == "/x.mp4"
    )  # given: kept
    v = bench_setup.synthetic_video(24, 48)
    assert v.shape == (24, 48, 48, 3) and v.dtype == np.uint8 and np.array_equal(v, bench_setup.synthetic_video(24, 48))
    assert not np.array_equal(v[1], v[2]) and not np.array_equal(
        v[21, 0, 0], v[22, 0, 0]
    )  # the square moves; a cut at 22


def test_bad_arguments_are_one_line_and_write_nothing(tmp_path):
    r = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True)
    assert (
        r.returncode == 2
        and r.stderr.startswith("usage: bash tools/gpu_check.sh OUT_DIR")
        and len(r.stderr.splitlines()) == 1
    )
    f = tmp_path / "afile"
    f.write_text("keep me")
    r = subprocess.run(["bash", str(SCRIPT), str(f), "--tiny"], capture_output=True, text=True)
    assert (
        r.returncode == 2 and r.stderr == f"gpu_check: error: {f} is a file; give a folder (it is created if missing)\n"
    )
    assert f.read_text() == "keep me" and sorted(os.listdir(tmp_path)) == ["afile"]


@pytest.mark.slow
def test_the_script_runs_every_part_on_the_tiny_architectures(tmp_path):
    """The whole script as the GPU runs it (bfloat16, synthetic frames, the training step in a real Trainer), on CPU."""
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(
        ["bash", str(SCRIPT), str(out), "--tiny", "--dtype", "bfloat16"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == str(out / "gpu_check.json")
    assert sorted(os.listdir(out)) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]
    doc = json.loads((out / "gpu_check.json").read_text())
    parts = doc["parts"]
    assert {k: v["status"] for k, v in parts.items()} == {
        k: "ok"
        for k in [
            "build_tiny_qwen2_5_vl",
            "prefill_tiny_qwen2_5_vl",
            "profile_tiny_qwen2_5_vl",
            "train_step_tiny_qwen2_5_vl_K4_4f",
            "train_step_tiny_qwen2_5_vl_K4_8f",
            "build_tiny_qwen3_vl",
            "prefill_tiny_qwen3_vl",
            "profile_tiny_qwen3_vl",
        ]
    }
    for fam in ("qwen2_5_vl", "qwen3_vl"):
        p = parts[f"prefill_tiny_{fam}"]
        assert p["bench"]["environment"]["dtype"] == "bfloat16"
        assert p["bench"]["video"] == bench_setup.SYNTHETIC and [res["frames"] for res in p["bench"]["results"]] == [
            4,
            8,
        ]
        # tiny: patch 8, merge 2 -> 64 px = 4 x 4 tokens per temporal unit of 2 frames: 4 frames = 32 tokens, 8 = 64
        assert [(r["frames"], r["visual_tokens"], r["ratio"], r["kept"]) for r in p["summary"]][:5] == [
            (4, 32, 1.0, 32),
            (4, 32, 0.5, 16),
            (4, 32, 0.25, 8),
            (4, 32, 0.1, 4),
            (4, 32, 0.05, 2),
        ]
        for r in p["summary"]:
            assert r["model_ms"] == pytest.approx(r["vision_ms"] + r["policy_ms"] + r["prefill_ms"])
            assert r["ttft_ms"] == pytest.approx(r["decode_ms"] + r["model_ms"])
            assert r["share_of_ideal"] == pytest.approx(r["prefill_speedup"] / r["ideal_speedup"])
        assert sorted(p["targets"]) == ["4f", "8f"]
        assert [o["self_ms"] > 0 for o in parts[f"profile_tiny_{fam}"]["top_ops"]["0.1"]] == [True] * 12
    s = parts["train_step_tiny_qwen2_5_vl_K4_8f"]
    m = s["medians_ms"]
    assert s["visual_tokens"] == 64 and s["settings"] == {
        "policy": "query_mlp/32",
        "sampler": "budget",
        "estimator": "split",
        "precision": "32-true",
    }  # conf/stage1.yaml's
    assert (
        0 < s["frozen_share"] < 1 and m["frozen_vision_ms"] <= m["encode_ms"] and m["frozen_llm_ms"] <= m["rollout_ms"]
    )
    assert m["encode_ms"] + m["rollout_ms"] + m["reward_ms"] + m["update_ms"] <= m["step_ms"] * 1.05  # medians of sums
    assert 0.05 <= s["keep_fraction"] <= 0.25 and s["peak_mib"] is None  # budget sampler's range; no CUDA here
    md = (out / "gpu_check.md").read_text()
    assert "| decode ms |" in md and "| TTFT ms | TTFT speedup |" in md
    assert "| 8 | 64 | 0.10 | 7 |" in md and "## train_step_tiny_qwen2_5_vl_K4_8f" in md and "What is timed:" in md
