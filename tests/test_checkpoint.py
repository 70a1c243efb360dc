"""The policy checkpoint: round trip, compatibility check, atomic writes, clear errors."""

import pytest
import torch

from score_lit.config import ConfigError, PolicyConfig
from score_lit.rl.policy import build_policy
from score_lit.training.checkpoint import load_policy, save_policy

IDENT = {"family": "qwen2_5_vl", "hidden_size": 16, "path": "tiny-random"}


def _policy(seed=0):
    torch.manual_seed(seed)
    return build_policy(32, PolicyConfig(name="mlp", hidden=8))


def test_round_trip_gives_the_same_scores(tmp_path):
    pol = _policy()
    with torch.no_grad():
        pol.net[-1].weight.add_(0.5)  # not the init
    path = save_policy(tmp_path / "policy.pt", pol, PolicyConfig(name="mlp", hidden=8), IDENT, {"global_step": 3})
    loaded, meta = load_policy(path, expect_mllm=IDENT)
    x = torch.randn(2, 3, 4, 32)
    torch.testing.assert_close(loaded(x), pol(x))
    assert meta["meta"]["global_step"] == 3 and meta["mllm"] == IDENT
    assert not loaded.training


def test_width_mismatch_names_both_models(tmp_path):
    path = save_policy(tmp_path / "policy.pt", _policy(), PolicyConfig(name="mlp", hidden=8), IDENT)
    other = {"family": "llava_onevision", "hidden_size": 3584}
    with pytest.raises(ConfigError, match=r"trained for qwen2_5_vl with width 16.*llava_onevision with width 3584"):
        load_policy(path, expect_mllm=other)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "lightning.ckpt")
    with pytest.raises(ConfigError, match="not a score_lit policy checkpoint"):
        load_policy(tmp_path / "lightning.ckpt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not readable"):
        load_policy(tmp_path / "junk.pt")


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = save_policy(tmp_path / "policy.pt", _policy(0), PolicyConfig(name="mlp", hidden=8), IDENT, {"v": 1})
    before = path.read_bytes()
    with pytest.raises(Exception):
        save_policy(path, _policy(1), PolicyConfig(name="mlp", hidden=8), IDENT, {"unpicklable": lambda: 0})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["policy.pt"]  # no temporary left behind


def test_policy_files_get_the_usual_permissions(tmp_path):
    """Written through a private temporary file (mkstemp: 0600), the policy still ends up readable like any file."""
    import os

    from score_lit.durable import atomic_torch_save

    mask = os.umask(0o022)
    try:
        path = atomic_torch_save({"x": 1}, tmp_path / "policy.pt")
    finally:
        os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_ctrl_c_while_a_checkpoint_is_written_comes_after_the_file_is_in_place(tmp_path):
    """SIGINT in the middle of torch.save (here: while pickling one value) used to surface as the zip writer's
    "RuntimeError: unexpected pos" and a half-written temporary file; now the write completes, then the interrupt."""
    import os
    import signal
    import time

    from score_lit.durable import atomic_torch_save

    class CtrlC:
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # Python runs the handler at the next bytecode: here, still inside torch.save
            return (dict, ())

    prev = signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # as in a terminal, even when the suite runs under `&`
    try:
        with pytest.raises(KeyboardInterrupt):
            atomic_torch_save({"step": 7, "value": CtrlC()}, tmp_path / "last.ckpt")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    finally:
        signal.signal(signal.SIGINT, prev)
    assert torch.load(tmp_path / "last.ckpt", weights_only=False) == {"step": 7, "value": {}}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_a_policy_folder_round_trips_like_policy_pt(tmp_path):
    import json

    from safetensors.torch import load_file

    from score_lit.training.checkpoint import save_policy_dir

    pol = _policy()
    with torch.no_grad():
        pol.net[-1].weight.add_(0.5)
    folder = save_policy_dir(tmp_path / "policy", pol, PolicyConfig(name="mlp", hidden=8), IDENT, {"global_step": 3})
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]  # no temps
    config = json.loads((folder / "config.json").read_text())
    assert config["in_dim"] == 32 and config["mllm"] == IDENT and config["policy_config"]["name"] == "mlp"
    assert set(load_file(folder / "model.safetensors")) == set(pol.state_dict())  # plain tensors, no pickle
    loaded, meta = load_policy(folder, expect_mllm=IDENT)
    x = torch.randn(2, 3, 4, 32)
    torch.testing.assert_close(loaded(x), pol(x), rtol=0, atol=0)
    assert meta["meta"]["global_step"] == 3 and not loaded.training
    with pytest.raises(ConfigError, match=r"trained for qwen2_5_vl with width 16.*llava_onevision with width 3584"):
        load_policy(folder, expect_mllm={"family": "llava_onevision", "hidden_size": 3584})


def test_a_policy_folder_loads_with_and_without_its_card(tmp_path):
    """The card (README.md) is written with every export, from the config.json written after it, and names its
    backbone and fingerprint; loading never reads it: a folder without one (exported before cards existed, or a
    copy that dropped it) loads the same. Its weights' fingerprint is the same from the folder and the policy.pt."""
    import json

    import yaml

    from score_lit.training.checkpoint import save_policy_dir, weights_sha256

    pol, cfg = _policy(2), PolicyConfig(name="mlp", hidden=8)
    folder = save_policy_dir(tmp_path / "policy", pol, cfg, IDENT, {"global_step": 3})
    config = json.loads((folder / "config.json").read_text())
    card = (folder / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["library_name"] == "score_lit" and front["base_model"] == IDENT["path"]
    assert front["score_lit"]["weights_sha256"] == config["weights_sha256"] == weights_sha256(folder)
    assert weights_sha256(save_policy(tmp_path / "policy.pt", pol, cfg, IDENT)) == config["weights_sha256"]
    with_card, _ = load_policy(folder, expect_mllm=IDENT)
    (folder / "README.md").unlink()
    without, meta = load_policy(folder, expect_mllm=IDENT)
    x = torch.randn(2, 3, 4, 32)
    torch.testing.assert_close(without(x), with_card(x), rtol=0, atol=0)
    torch.testing.assert_close(without(x), pol(x), rtol=0, atol=0)
    assert meta["meta"] == {"global_step": 3}


def test_a_bad_policy_folder_is_one_line(tmp_path):
    from score_lit.training.checkpoint import save_policy_dir

    folder = save_policy_dir(tmp_path / "p", _policy(0), PolicyConfig(name="mlp", hidden=8), IDENT)
    other = save_policy_dir(tmp_path / "q", _policy(1), PolicyConfig(name="mlp", hidden=8), IDENT)
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())  # weights of another export
    with pytest.raises(ConfigError, match="model.safetensors is not the one its config.json was written with"):
        load_policy(folder)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")  # a corrupt header
    with pytest.raises(ConfigError, match=r"policy folder .* is not readable \(\w+\): re-export it"):
        load_policy(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="needs config.json and model.safetensors"):
        load_policy(folder)


def test_a_policy_pt_written_before_the_policy_registry_grew_loads_and_selects_as_then():
    """The policy.pt in tests/data was written by the code of commit 6473995~1 (before samplers, query_mlp and
    temporal_mlp), with its logits on fixed tokens in the .json beside it (the tools/policy_fixture_*.py script says
    how); today's load_policy and ScoreCompressor give the same logits and top-k."""
    import json
    from pathlib import Path

    from score_lit.compressors.score import ScoreCompressor
    from score_lit.rl.policy import MLPPolicy, topk_mask
    from score_lit.rl.state import surprise_state
    from score_lit.training.checkpoint import load_policy
    from score_lit.types import VisualTokens

    data = Path(__file__).parent / "data"
    then = json.loads((data / "policy_before_registry_growth.json").read_text())
    x = torch.tensor(then["tokens"]).reshape(then["shape"])
    pol, meta = load_policy(
        data / "policy_before_registry_growth.pt", expect_mllm={"family": "qwen2_5_vl", "hidden_size": 6}
    )
    assert isinstance(pol, MLPPolicy) and meta["policy_config"]["name"] == "mlp"
    with torch.no_grad():
        now = pol(surprise_state(x))
    # the same policy: recorded on another machine, whose CPU may round the last bit differently
    torch.testing.assert_close(now.flatten(), torch.tensor(then["logits"]), rtol=0, atol=1e-6)
    visual = VisualTokens(tokens=x, grid=(4, 1, 3), positions=torch.zeros(1, 3, 12, dtype=torch.long))
    keep = ScoreCompressor(pol).select(visual, 0.25).keep
    assert torch.equal(keep, topk_mask(torch.tensor([then["logits"]]), 0.25)) and int(keep.sum()) == 3
