"""The toy MLLM (score_lit.toy_mllm): dense labels from evidence, a --quick training run end to end.

The quick run (tiny widths, a few steps) proves the pipeline, not the accuracy: the saved directory
loads with stock from_pretrained and through the adapter, accuracy.json is well formed, and the same
seed gives bit-identical weights (once through the function, once through the CLI entry).
"""

import json

import pytest
import torch
from safetensors.torch import load_file

from score_lit.config import MLLMConfig
from score_lit.data.synthetic import SOURCES, stitched
from score_lit.mllm import build_mllm
from score_lit.toy_cli import cmd_toy_mllm
from score_lit.toy_mllm import NONE, ToyConfig, dense_labels, quick_config, train_toy_mllm


def test_dense_labels_by_hand():
    # frames [3, 6) overlap temporal units 1 (frames 2-3) and 2 (frames 4-5); cell (1, 2) of a 4x4 grid = token 6.
    lab = dense_labels({"frames": (3, 6), "cell": (1, 2)}, 7, frames=16, size=64)
    assert lab.shape == (8, 16)
    expected = torch.full((8, 16), NONE)
    expected[1, 6] = expected[2, 6] = 7
    assert torch.equal(lab, expected)
    # 15 frames -> 8 units (the processor repeats frame 14 into unit 7); a digit on frame 14 only, cell (3, 3).
    lab = dense_labels({"frames": (14, 15), "cell": (3, 3)}, 0, frames=15, size=64)
    assert lab.shape == (8, 16) and (lab != NONE).sum() == 1 and lab[7, 15] == 0


def test_dense_labels_on_a_real_sample():
    s = stitched(0, "train", 0)
    # Hand-read from this sample: the digit 2 sits on frames [0, 6) at cell (0, 0).
    assert (s.evidence["frames"], s.evidence["cell"], s.answer) == ((0, 6), (0, 0), "2")
    lab = dense_labels(s.evidence, int(s.answer), frames=16, size=64)
    assert lab[:3, 0].tolist() == [2, 2, 2] and (lab != NONE).sum() == 3
    # Every family: the labelled tokens are exactly where the frames carry the pasted digit.
    for name, source in SOURCES.items():
        s = source(0, "train", 3)
        lab = dense_labels(s.evidence, int(s.answer), frames=16, size=64)
        t, n = (lab != NONE).nonzero(as_tuple=True)
        f0, f1 = s.evidence["frames"]
        assert sorted(set(t.tolist())) == list(range(f0 // 2, -(-f1 // 2))), name
        assert set(n.tolist()) == {s.evidence["cell"][0] * 4 + s.evidence["cell"][1]}, name


def test_config_errors():
    with pytest.raises(ValueError, match="unknown toy families"):
        ToyConfig(families=("nope",))
    with pytest.raises(ValueError, match="multiple of 16"):
        ToyConfig(size=40)


@pytest.fixture(scope="module")
def quick_dir(tmp_path_factory):
    return train_toy_mllm(quick_config(out=str(tmp_path_factory.mktemp("toy") / "a"), seed=3))


def test_quick_run_loads_and_reports(quick_dir):
    from transformers import Qwen2_5_VLForConditionalGeneration

    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(quick_dir)
    assert model.config.text_config.hidden_size == quick_config().text_width
    adapter = build_mllm(MLLMConfig(path=str(quick_dir)))
    assert adapter.hidden_size == quick_config().text_width and adapter.identity()["path"] == str(quick_dir)
    report = json.loads((quick_dir / "accuracy.json").read_text())
    assert {"families", "overall", "n_per_family", "seed", "train_seconds"} <= set(report)
    assert set(report["families"]) == set(SOURCES) and report["seed"] == 3
    assert all(0.0 <= a <= 1.0 for a in [*report["families"].values(), report["overall"]])


def test_quick_run_is_deterministic(quick_dir, tmp_path, capsys):
    assert cmd_toy_mllm(["--quick", "--seed", "3", "--out", str(tmp_path / "b")]) == 0
    assert str(tmp_path / "b") in capsys.readouterr().out
    a, b = load_file(quick_dir / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_text_layers_sets_the_toy_llm_depth(quick_dir, tmp_path):
    assert quick_config().text_layers == 1
    assert cmd_toy_mllm(["--quick", "--text-layers", "3", "--out", str(tmp_path / "deep")]) == 0
    cfg = json.loads((tmp_path / "deep" / "config.json").read_text())
    assert cfg["text_config"]["num_hidden_layers"] == 3
    assert json.loads((quick_dir / "config.json").read_text())["text_config"]["num_hidden_layers"] == 1
