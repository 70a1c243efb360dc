"""Advantage estimators, registered by name: adding one is one function (verl's core_algos style).

Each takes the group's rewards and returns per-rollout advantages [B, K] plus diagnostics.
Groups are the K rollouts of one sample (axis -1); nothing crosses samples or devices.
z(v) = (v - mean_K v) / (std_K v + eps), with the population std (correction 0).

split (default; docs/METHOD.md step 5, the paper's split-advantage estimator):
    A_k = z(f)_k + lambda * g_k * z(s)_k,      g_k = 1[dCE_k <= tau]
    Sparsity counts only in rollouts that kept the answer's likelihood.
grpo (the figure's product form, one combined reward, z-scored):
    r_k = exp(-dCE_k) * s_k^lambda,            A_k = z(r)_k
    exp(-dCE) is the kept / baseline likelihood of the answer (geometric mean per token); the
    paper draws the product of the two terms but not their exact form: this is our choice.
rloo (leave-one-out baseline on the gated additive reward; no normalisation):
    r_k = f_k + lambda * g_k * s_k,            A_k = r_k - mean_{j != k} r_j
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from score_lit.config import RLConfig, names

Estimator = Callable[[Tensor, Tensor, Tensor, RLConfig], tuple[Tensor, dict[str, Tensor]]]
ESTIMATORS: dict[str, Estimator] = {}


register_estimator = names.registrar(
    ESTIMATORS, names.ESTIMATORS
)  # @register_estimator("name"): the registry and its torch-free name list


def compute_advantage(name: str, fidelity: Tensor, sparsity: Tensor, dce: Tensor, cfg: RLConfig):
    """Dispatch by name. All inputs [B, K]; returns (advantages [B, K], extras)."""
    if name not in ESTIMATORS:
        raise ValueError(f"unknown rl.estimator={name!r}; registered: {sorted(ESTIMATORS)}")
    return ESTIMATORS[name](fidelity, sparsity, dce, cfg)


def group_zscore(v: Tensor, eps: float) -> Tensor:
    """(v - mean) / (std + eps) over the group axis -1. [B, K] -> [B, K]."""
    return (v - v.mean(-1, keepdim=True)) / (v.std(-1, keepdim=True, correction=0) + eps)


def fidelity_gate(dce: Tensor, tau: float) -> Tensor:
    """g_k = 1[dCE_k <= tau] as float. [B, K] -> [B, K]."""
    return (dce <= tau).to(dce.dtype)


@register_estimator("split")
def split_advantage(fidelity: Tensor, sparsity: Tensor, dce: Tensor, cfg: RLConfig):
    gate = fidelity_gate(dce, cfg.gate_tau)
    adv = group_zscore(fidelity, cfg.eps) + cfg.sparsity_weight * gate * group_zscore(sparsity, cfg.eps)
    return adv, {"gate": gate}


@register_estimator("grpo")
def grpo_advantage(fidelity: Tensor, sparsity: Tensor, dce: Tensor, cfg: RLConfig):
    reward = torch.exp(-dce) * sparsity.clamp_min(0.0) ** cfg.sparsity_weight
    return group_zscore(reward, cfg.eps), {"reward": reward}


@register_estimator("rloo")
def rloo_advantage(fidelity: Tensor, sparsity: Tensor, dce: Tensor, cfg: RLConfig):
    gate = fidelity_gate(dce, cfg.gate_tau)
    reward = fidelity + cfg.sparsity_weight * gate * sparsity
    k = reward.shape[-1]
    if k < 2:
        return torch.zeros_like(reward), {"gate": gate, "reward": reward}
    loo_mean = (reward.sum(-1, keepdim=True) - reward) / (k - 1)
    return reward - loo_mean, {"gate": gate, "reward": reward}
