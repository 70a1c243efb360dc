"""The inference benchmark: its FLOP formula on a hand-computed case, and one tiny end-to-end run.

Benchmarks are not tests: nothing here checks a speed, only that `bench` runs and reports what it must.
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from score_lit.compressors.flops import prefill_flops
from score_lit.config import ConfigError
from score_lit.perf.archs import ARCHS
from score_lit.perf.bench import ideal_speedup, main
from score_lit.perf.bench_setup import BenchConfig, load_bench_config

# d = 8, 2 heads of head_dim 4 (d_q = 8), 1 KV head (d_kv = 4), d_ff = 16, 2 layers, vocab 32.
TINY_TEXT = SimpleNamespace(
    hidden_size=8,
    num_attention_heads=2,
    num_key_value_heads=1,
    intermediate_size=16,
    num_hidden_layers=2,
    vocab_size=32,
)


def test_prefill_flops_hand_computed():
    # L = 10. Per layer, linear: 2 * 10 * (8*8 [q] + 2*8*4 [k, v] + 8*8 [o] + 3*8*16 [gate, up, down])
    #                          = 20 * (64 + 64 + 64 + 384) = 20 * 576 = 11520
    # attention, causal: 2 * d_q * L * (L + 1) = 2 * 8 * 10 * 11 = 1760  (QK^T and AV over 55 query-key pairs)
    # 2 layers: 2 * (11520 + 1760) = 26560; lm_head on the last token: 2 * 8 * 32 = 512 -> 27072
    assert prefill_flops(TINY_TEXT, 10) == 27072
    # head_dim given explicitly (Qwen3-style, d_q != d): q 8 -> 2*4=8 is unchanged here, so the same count
    assert prefill_flops(SimpleNamespace(**vars(TINY_TEXT), head_dim=4), 10) == 27072


def test_ideal_speedup_is_one_at_full_and_grows_as_ratio_falls():
    assert ideal_speedup(TINY_TEXT, 30, 4096, 1.0) == 1.0
    ratios = [1.0, 0.5, 0.25, 0.1, 0.05]
    speedups = [ideal_speedup(TINY_TEXT, 30, 4096, r) for r in ratios]
    assert all(a < b for a, b in zip(speedups, speedups[1:]))
    # 7B-sized text config at 32 frames of 448x448 (4096 tokens): near 1 / r, a bit above (attention is quadratic)
    keys = (
        "hidden_size",
        "num_attention_heads",
        "num_key_value_heads",
        "intermediate_size",
        "num_hidden_layers",
        "vocab_size",
    )
    t7 = SimpleNamespace(**{k: ARCHS["qwen2_5_vl_7b"][1][k] for k in keys})  # (family, text, vision)
    s = ideal_speedup(t7, 30, 4096, 0.1)
    assert 8.5 < s < 10.5, s


def test_config_errors_name_the_closest_key():
    with pytest.raises(ConfigError, match="did you mean 'repeats'"):
        load_bench_config([], ["repeat=3"])
    with pytest.raises(ConfigError, match="arch="):
        BenchConfig(arch="nope")
    with pytest.raises(ConfigError, match="ratios"):
        load_bench_config([], ["ratios=[0.0]"])
    with pytest.raises(
        ConfigError,
        match="^policy_name='mpl' is not registered \\(did you mean policy_name=mlp\\?\\); "
        "use one of \\['mlp', 'query_mlp', 'temporal_mlp'\\]$",
    ):
        load_bench_config([], ["policy_name=mpl"])
    with pytest.raises(ConfigError, match="^clock='gpu': use wall"):
        load_bench_config([], ["clock=gpu"])
    with pytest.raises(ConfigError, match="^policy_hidden=0 must be a positive width"):
        load_bench_config([], ["policy_hidden=0"])


@pytest.mark.slow
def test_bench_runs_on_a_tiny_config(tmp_path, capsys):
    from score_lit.toy.export import write_mp4

    rng = np.random.default_rng(0)
    video = tmp_path / "v.mp4"
    write_mp4(video, rng.integers(0, 256, (8, 48, 64, 3), dtype=np.uint8), fps=4.0)
    args = [
        "arch=tiny",
        "size=32",
        "frames=[4]",
        "ratios=[1.0,0.5]",
        "warmup=0",
        "repeats=2",
        f"video={video}",
        f"out_dir={tmp_path}",
        "name=tiny",
        "device=cpu",
        "threads=1",
    ]
    assert main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    path = tmp_path / "tiny.json"
    assert lines[-1] == str(path)
    out = json.loads(path.read_text())
    assert out["environment"]["dtype"] == "float32" and out["environment"]["attn_implementation"] == "sdpa"
    (res,) = out["results"]
    assert res["frames"] == 4 and res["visual_tokens"] == 2 * 2 * 2  # T = 4/2, 32 px / patch 8 / merge 2 = 2 x 2
    rows = {r["retention_ratio"]: r for r in res["ratios"]}
    assert sorted(rows) == [0.5, 1.0]
    for r in rows.values():
        for key in ("retention_ratio", "prefill_speedup", "ideal_speedup", "share_of_ideal", "policy_share"):
            assert isinstance(r[key], float) and r[key] > 0, key
        assert r["e2e_ms"] >= r["prefill_ms"] + r["policy_ms"] and r["spread_ms"]["prefill"]["n"] == 2
    assert rows[1.0]["prefill_speedup"] == rows[1.0]["ideal_speedup"] == 1.0
    assert rows[0.5]["kept_tokens"] == 4 and rows[0.5]["seq_len"] == res["text_tokens"] + 4


def test_bench_runs_on_the_tiny_llava_onevision(tmp_path, capsys):
    from score_lit.toy.export import write_mp4

    video = tmp_path / "v.mp4"
    write_mp4(
        video, np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), fps=4.0
    )  # decord 0.6.0 fails on widths 16 and 48
    args = [
        "family=llava_onevision",
        "arch=tiny",
        "size=32",
        "frames=[4]",
        "ratios=[1.0,0.5]",
        "warmup=0",
        "repeats=2",
        f"video={video}",
        f"out_dir={tmp_path}",
        "name=llava",
        "device=cpu",
        "threads=1",
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(tmp_path / "llava.json")
    (res,) = json.loads((tmp_path / "llava.json").read_text())["results"]
    assert res["visual_tokens"] == 4 * 3 * 3  # 4 frames x (5x5 patches pooled 2x2 -> 3x3): one frame is one unit
    assert {r["retention_ratio"]: r["kept_tokens"] for r in res["ratios"]} == {1.0: 36, 0.5: 18}


def test_bench_reports_time_to_first_token_per_ratio_and_its_picture(tmp_path, capsys):
    """ttft_ms = decode + vision + policy + prefill (the stage medians), its speedup against vanilla in the same run,
    the TTFT columns in the table, and the stacked-bar picture beside the JSON."""
    from score_lit.toy.export import write_mp4

    video = tmp_path / "v.mp4"
    write_mp4(video, np.random.default_rng(0).integers(0, 256, (8, 48, 64, 3), dtype=np.uint8), fps=4.0)
    args = ["arch=tiny", "size=32", "frames=[4]", "ratios=[1.0,0.5]", "warmup=0", "repeats=2", f"video={video}"]
    assert main(args + [f"out_dir={tmp_path}", "name=t", "device=cpu", "threads=1", "clock=cpu"]) == 0
    out = capsys.readouterr().out
    assert "| TTFT ms | TTFT speedup |" in out and f"bench: picture {tmp_path / 't.png'}" in out
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["config"]["decode_resize"] == "decoder" and doc["config"]["clock"] == "cpu"
    rows = {r["retention_ratio"]: r for r in doc["results"][0]["ratios"]}
    for r in rows.values():
        stages = r["decode_ms"] + r["vision_ms"] + r["policy_ms"] + r["prefill_ms"]
        assert r["ttft_ms"] == pytest.approx(stages, rel=1e-12) and r["decode_ms"] > 0
        assert r["ttft_speedup"] == pytest.approx(rows[1.0]["ttft_ms"] / r["ttft_ms"])
    assert rows[1.0]["ttft_speedup"] == 1.0
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# The tiny LLM is 64 wide: state 2D = 128, policy 32 wide. mlp: 128 x 32 + 32 + 32 + 1 = 4,161. query_mlp adds the
# question's LayerNorm (2 x 64) and FiLM (64 x 64 + 64): 8,449. temporal_mlp adds a depthwise conv (32 x 3 + 32): 4,289.
@pytest.mark.parametrize(
    "name, cls, params", [("query_mlp", "QueryPolicy", 8449), ("temporal_mlp", "TemporalPolicy", 4289)]
)
def test_bench_times_every_policy_variant(tmp_path, capsys, name, cls, params):
    """The variant named is the one timed (query_mlp embeds the question inside the timed policy stage)."""
    from score_lit.toy.export import write_mp4

    video = tmp_path / "v.mp4"
    write_mp4(video, np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8), fps=4.0)
    args = [
        "arch=tiny",
        "size=32",
        "frames=[4]",
        "ratios=[1.0,0.5]",
        "warmup=0",
        "repeats=1",
        f"policy_name={name}",
        "policy_hidden=32",
        f"video={video}",
        f"out_dir={tmp_path}",
        "name=v",
        "device=cpu",
        "threads=1",
    ]
    assert main(args) == 0
    out = json.loads((tmp_path / "v.json").read_text())
    assert (out["config"]["policy_name"], out["config"]["policy_hidden"]) == (name, 32)
    assert out["policy"] == {"class": cls, "parameters": params}
    rows = {r["retention_ratio"]: r for r in out["results"][0]["ratios"]}
    assert rows[0.5]["kept_tokens"] == 4 and rows[0.5]["policy_ms"] > 0


def test_an_arch_of_another_family_is_one_line():
    with pytest.raises(
        ConfigError, match="arch=cpu-small is a qwen2_5_vl architecture, not family=llava_onevision: use arch=tiny"
    ):
        BenchConfig(family="llava_onevision")


def test_a_plain_bench_run_never_overwrites_the_committed_reference():
    from pathlib import Path

    from score_lit.perf.bench import output_path

    assert output_path(BenchConfig(), {"device": "cpu"}) == Path("runs/bench/bench_cpu_small.json")
