"""The pre-vision stage (score_lit.mllm.vision_prune, score_lit.compressors.prevision): the pruned Qwen2.5-VL vision
tower equals the stock one with nothing dropped, reports (not hides) how far the kept tokens' features move with
drops, and the score_prevision method keeps only tokens its gate let through, with the pruned tower's features."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import make_batch

from score_lit.config import MLLMConfig, PolicyConfig

TOY = Path(__file__).resolve().parents[1] / "models" / "toy-mllm-evidence4"


@pytest.fixture(scope="module", params=["tiny", "toy"])
def adapter(request):
    from score_lit.mllm.qwen_vl import Qwen25VLAdapter

    return Qwen25VLAdapter(MLLMConfig(path=None if request.param == "tiny" else str(TOY)))


def _stock(adapter, video) -> torch.Tensor:
    px, grid_thw = video.model_kwargs["pixel_values_videos"], video.model_kwargs["video_grid_thw"]
    return torch.cat(list(adapter.model.model.get_video_features(px, grid_thw).pooler_output))  # [G, D]


def _video(adapter, seed=0):
    return adapter.video_inputs(make_batch(b=2, f=8, size=64, seed=seed))  # 4 units of 4 x 4 tokens (patch 8, merge 2)


def test_keep_all_equals_the_stock_tower(adapter):
    from score_lit.mllm.vision_prune import pruned_vision_forward

    video = _video(adapter)
    ref = _stock(adapter, video)
    px, grid_thw = video.model_kwargs["pixel_values_videos"], video.model_kwargs["video_grid_thw"]
    out, order = pruned_vision_forward(adapter.model.model.visual, px, grid_thw, torch.ones(len(ref), dtype=torch.bool))
    assert torch.equal(order, torch.arange(len(ref)))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # encode_groups with every group kept is the adapter's own encode
    keep = torch.ones(2, ref.shape[0] // 2, dtype=torch.bool)
    torch.testing.assert_close(
        adapter.encode_groups(video, keep).flat().reshape(-1, ref.shape[-1]), ref, atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("share", [0.5, 0.3])
def test_drops_move_the_kept_features_by_a_reported_amount(adapter, share, capsys):
    """With groups dropped (at random, and unit 0 dropped too) the kept groups attend to fewer patches: their features
    differ from the stock tower's. The deviation is printed (pytest -s), finite, and positive; zero at keep-all."""
    from score_lit.mllm.vision_prune import pruned_vision_forward

    video = _video(adapter)
    ref = _stock(adapter, video)
    px, grid_thw = video.model_kwargs["pixel_values_videos"], video.model_kwargs["video_grid_thw"]
    keep = torch.rand(len(ref), generator=torch.Generator().manual_seed(1)) < share
    out, order = pruned_vision_forward(adapter.model.model.visual, px, grid_thw, keep)
    assert torch.equal(order, keep.nonzero().flatten())
    dev = (out - ref[order]).abs()
    rel = dev.mean() / ref[order].abs().mean()
    with capsys.disabled():
        print(
            f"\n[prevision] {adapter.cfg.path or 'tiny'} keep {keep.sum()}/{len(keep)} groups: kept features' "
            f"max |diff| {dev.max():.4g}, mean |diff| {dev.mean():.4g} ({100 * rel:.1f}% of their mean |value|)"
        )
    assert torch.isfinite(dev).all() and dev.max() > 0


def test_segments_shrink_to_the_kept_patches(adapter):
    """The windows and full-attention units of the pruned tower hold only kept patches, none empty, and the vision
    FLOPs fall accordingly."""
    from score_lit.mllm.vision_prune import pruned_segments

    video = _video(adapter)
    grid_thw = video.model_kwargs["video_grid_thw"][:1]
    t, h, w = video.grid
    visual = adapter.model.model.visual
    keep = torch.zeros(t * h * w, dtype=torch.bool)
    keep[: h * w] = True  # unit 0 whole
    keep[h * w + 3] = True  # one group of unit 1
    order, win, units = pruned_segments(visual, grid_thw, keep)
    assert sorted(order.tolist()) == keep.nonzero().flatten().tolist()
    assert units.tolist() == [4 * h * w, 4] and int(win.sum()) == 4 * (h * w + 1) and (win > 0).all()
    full = adapter.vision_flops(video.grid)
    part = adapter.vision_flops(video.grid, keep)
    assert 0 < part < full / t * 1.2


def test_prevision_method_keeps_gated_tokens_with_pruned_features(adapter):
    from score_lit.compressors import build_compressor
    from score_lit.compressors.prevision import gate_scores
    from score_lit.config import keep_count
    from score_lit.rl.policy import MLPPolicy

    torch.manual_seed(0)
    comp = build_compressor(
        "score_prevision", mllm=adapter, policy=MLPPolicy(2 * adapter.hidden_size, PolicyConfig(name="mlp", hidden=8))
    )
    video = _video(adapter)
    batch_v = video.positions.shape[-1]
    visual, sel, pre = comp.select_video(video, 0.25, None)
    assert int(pre[0].sum()) == keep_count(0.75, batch_v)  # the gate keeps 3x the final budget
    assert pre[:, : visual.grid[1] * visual.grid[2]].all()  # unit 0 always passes
    assert (sel.keep <= pre).all() and (sel.keep.sum(-1) == keep_count(0.25, batch_v)).all()
    # the kept tokens carry the pruned tower's features, not the stock tower's
    from score_lit.mllm.vision_prune import pruned_vision_forward

    px, grid_thw = video.model_kwargs["pixel_values_videos"], video.model_kwargs["video_grid_thw"]
    out, order = pruned_vision_forward(adapter.model.model.visual, px, grid_thw, pre.reshape(-1))
    flat = visual.flat().reshape(-1, out.shape[-1])
    torch.testing.assert_close(flat[order], out)
    # the gate is the pixel residual to the previous unit
    s = gate_scores(adapter.group_inputs(video))
    assert math.isinf(float(s[0, 0])) and s[0, -1] == pytest.approx(
        float((adapter.group_inputs(video)[0, -1, -1] - adapter.group_inputs(video)[0, -2, -1]).norm())
    )


def test_sweep_runs_prevision_on_its_own_pruned_tower(tmp_path):
    """In the sweep, score_prevision encodes the batch itself: at ratio 1.0 its gate keeps everything and it answers as
    score does with the same tokens and tower FLOPs; at 0.25 its vision column holds only the gated groups' tower."""
    from score_lit.config import load_config
    from score_lit.evaluation.sweep import sweep
    from score_lit.rl.policy import build_policy
    from score_lit.toy.export import export_split
    from score_lit.training.checkpoint import save_policy

    export_split(tmp_path / "bench", split="test", n=2, families=["flash", "stitched"], frames=8, size=64)
    pcfg = PolicyConfig(name="mlp", hidden=16)
    ident = {"family": "qwen2_5_vl", "hidden_size": 64, "path": "tiny-random"}
    policy = save_policy(tmp_path / "policy.pt", build_policy(2 * 64, pcfg), pcfg, ident)
    over = [
        "mllm.path=null",
        "eval.benchmark=toy",
        f"eval.root={tmp_path / 'bench'}",
        f"eval.policy={policy}",
        "eval.methods=[score,score_prevision]",
        "eval.ratios=[1.0,0.25]",
        "eval.frames=8",
        "eval.size=64",
        "eval.batch_size=4",
    ]
    res = sweep(load_config(["conf/eval.yaml"], over), progress=False)
    rec = res["record"]
    score, pre = rec.methods[("score", 1.0)], rec.methods[("score_prevision", 1.0)]
    assert pre.correct == score.correct and pre.kept == score.kept and pre.vision_flops == rec.vanilla.vision_flops
    low = rec.methods[("score_prevision", 0.25)]
    assert all(0 < v < full for v, full in zip(low.vision_flops, rec.vanilla.vision_flops))
    assert rec.methods[("score", 0.25)].vision_flops == rec.vanilla.vision_flops  # the whole tower for the others
    by = {(r["method"], r["retention_ratio"], r["family"]): r for r in res["rows"]}
    row = by[("score_prevision", 0.25, "all")]
    assert row["total_tflops"] == pytest.approx(row["vision_tflops"] + row["prefill_tflops"])
    assert row["total_flops_pct_of_vanilla"] < by[("score", 0.25, "all")]["total_flops_pct_of_vanilla"]


def test_vision_tower_flops_by_hand():
    from types import SimpleNamespace

    from score_lit.compressors.flops import vision_tower_flops

    vc = SimpleNamespace(
        hidden_size=2,
        intermediate_size=3,
        spatial_merge_size=2,
        in_channels=1,
        temporal_patch_size=1,
        patch_size=1,
        fullatt_block_indexes=[1],
        depth=2,
        out_hidden_size=5,
    )
    # P = 12 patches in windows of 4 and 8, one unit of 12; G = 3 groups
    patch = 2 * 12 * 1 * 2  # 48
    linear = 2 * (2 * 12 * (4 * 2 * 2 + 3 * 2 * 3))  # 1632
    attention = 4 * 2 * (4 * 4 + 8 * 8) + 4 * 2 * 12 * 12  # block 0 windowed 640, block 1 full 1152
    merger = 2 * 3 * (8 * 8 + 8 * 5)  # 624
    assert vision_tower_flops(vc, [4, 8], [12]) == patch + linear + attention + merger == 4096
