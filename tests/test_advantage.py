"""Advantage estimators on hand-computed groups, plus a loop-vs-vectorised check."""

import math

import pytest
import torch

from score_lit.config import RLConfig
from score_lit.rl.advantage import ESTIMATORS, compute_advantage, group_zscore


def t(*rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_group_zscore_hand_computed():
    # mean 2.5, population std sqrt(1.25)
    z = group_zscore(t([1.0, 2.0, 3.0, 4.0]), eps=0.0)
    s = math.sqrt(1.25)
    torch.testing.assert_close(z, t([-1.5 / s, -0.5 / s, 0.5 / s, 1.5 / s]))


def test_split_gates_sparsity_by_dce():
    # K=2: any two distinct values z-score to [+-1]. dCE = [0.05, 0.5], tau = 0.1 -> gate [1, 0].
    cfg = RLConfig(estimator="split", sparsity_weight=0.5, gate_tau=0.1, eps=0.0)
    dce = t([0.05, 0.5])
    adv, extras = compute_advantage("split", -dce, t([0.6, 0.2]), dce, cfg)
    torch.testing.assert_close(adv, t([1.0 + 0.5 * 1.0, -1.0]))
    torch.testing.assert_close(extras["gate"], t([1.0, 0.0]))


def test_split_without_gate_open_is_pure_fidelity():
    cfg = RLConfig(sparsity_weight=1.0, gate_tau=0.0, eps=0.0)
    dce = t([0.2, 0.4, 0.6])
    adv, _ = compute_advantage("split", -dce, t([0.9, 0.5, 0.1]), dce, cfg)
    torch.testing.assert_close(adv, group_zscore(-dce, 0.0))


def test_grpo_product_reward():
    # r = exp(-dCE) * s: [1 * 0.5, 0.5 * 0.5] = [0.5, 0.25] -> z = [1, -1]
    cfg = RLConfig(estimator="grpo", sparsity_weight=1.0, eps=0.0)
    dce = t([0.0, math.log(2.0)])
    adv, extras = compute_advantage("grpo", -dce, t([0.5, 0.5]), dce, cfg)
    torch.testing.assert_close(extras["reward"], t([0.5, 0.25]))
    torch.testing.assert_close(adv, t([1.0, -1.0]))


def test_rloo_leave_one_out():
    # tau 0.1, lambda 1: gate [1,0,1]; r = f + g s = [-0.1+0.5, -0.4, 0.0+0.2] = [0.4, -0.4, 0.2]
    # A_k = r_k - mean_{j!=k} r_j = [0.4-(-0.1), -0.4-0.3, 0.2-0.0]
    cfg = RLConfig(estimator="rloo", sparsity_weight=1.0, gate_tau=0.1)
    dce = t([0.1, 0.4, 0.0])
    adv, _ = compute_advantage("rloo", -dce, t([0.5, 0.8, 0.2]), dce, cfg)
    torch.testing.assert_close(adv, t([0.5, -0.7, 0.2]))


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_degenerate_group_has_zero_advantage(name):
    cfg = RLConfig(estimator=name)
    x = torch.full((3, 4), 0.3, dtype=torch.float64)
    adv, _ = compute_advantage(name, -x, x, x, cfg)
    torch.testing.assert_close(adv, torch.zeros_like(adv))


def test_split_vectorised_matches_per_group_loop():
    g = torch.Generator().manual_seed(0)
    dce = torch.rand(5, 8, generator=g, dtype=torch.float64) * 0.3
    sp = torch.rand(5, 8, generator=g, dtype=torch.float64)
    cfg = RLConfig(sparsity_weight=0.7, gate_tau=0.12, eps=1e-6)
    adv, _ = compute_advantage("split", -dce, sp, dce, cfg)
    for b in range(5):
        f, s = (-dce[b]).tolist(), sp[b].tolist()
        mf, ms = sum(f) / 8, sum(s) / 8
        sf = math.sqrt(sum((v - mf) ** 2 for v in f) / 8)
        ss = math.sqrt(sum((v - ms) ** 2 for v in s) / 8)
        for k in range(8):
            gate = 1.0 if dce[b, k] <= 0.12 else 0.0
            want = (f[k] - mf) / (sf + 1e-6) + 0.7 * gate * (s[k] - ms) / (ss + 1e-6)
            assert adv[b, k].item() == pytest.approx(want, abs=1e-12)


def test_unknown_estimator_names_the_registered_ones():
    with pytest.raises(ValueError, match="registered: .*split"):
        compute_advantage("ppo", t([0.0]), t([0.0]), t([0.0]), RLConfig())
