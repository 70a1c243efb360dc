"""Writes tests/data/policy_before_registry_growth.{pt,json}: a seeded hidden-8 `mlp` policy saved by the code of an OLD commit,
and its logits on fixed tokens, for tests/test_checkpoint.py's compatibility test. Run it with that commit's code:

    git worktree add /tmp/old-policy 6473995~1
    PYTHONPATH=/tmp/old-policy/src .venv/bin/python tools/policy_fixture_before_registry_growth.py
"""

import json
from pathlib import Path

import torch

from score_lit.config import PolicyConfig
from score_lit.rl.policy import build_policy
from score_lit.rl.state import surprise_state
from score_lit.training.checkpoint import save_policy

out = Path(__file__).resolve().parents[1] / "tests" / "data"
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)
cfg = PolicyConfig(hidden=8)
pol = build_policy(2 * 6, cfg)
with torch.no_grad():
    for p in pol.parameters():
        p.normal_(std=0.5)
save_policy(
    out / "policy_before_registry_growth.pt",
    pol,
    cfg,
    {"family": "qwen2_5_vl", "hidden_size": 6, "path": "tiny-random"},
)
x = torch.randn(1, 4, 3, 6, generator=torch.Generator().manual_seed(1))  # tokens [B, T, N, D]
logits = pol(surprise_state(x)).flatten().tolist()
(out / "policy_before_registry_growth.json").write_text(
    json.dumps({"tokens": x.flatten().tolist(), "shape": list(x.shape), "logits": logits})
)
print(out / "policy_before_registry_growth.pt")
