"""The policy-gradient loss of the method figure, as a pure function returning (loss, stats).

    L_p(theta) = -(1/K) sum_k A^(k) [ (1/(T N)) sum_{t,i} log pi_theta(m^(k)_{t,i} | h_{t,i}) ]
    log pi(m | h) = m log p + (1 - m) log(1 - p)        (the Bernoulli sampler; the budget sampler's log pi and
                                                        its exact gradient: score_lit.rl.samplers)

averaged over the B samples of the batch. The advantages are constants (no grad). Optional entropy
bonus: L - entropy_coef * mean H(p). No KL term: SCORE has no reference policy (docs/METHOD.md).
"""

from __future__ import annotations

import torch
from torch import Tensor

from score_lit.rl.policy import entropy
from score_lit.rl.samplers import rollout_log_prob


def policy_gradient_loss(
    logits: Tensor,  # [B, L] policy logits (with grad), L = T*N
    masks: Tensor,  # [B, K, L] bool sampled keep masks
    advantages: Tensor,  # [B, K]
    entropy_coef: float = 0.0,
    budgets: Tensor | None = None,  # [B, K] the budget sampler's keep fractions; None = Bernoulli rollouts
) -> tuple[Tensor, dict[str, Tensor]]:
    mean_logp = rollout_log_prob(logits, masks, budgets).mean(dim=-1)  # [B, K]: (1/(TN)) sum_{t,i} log pi
    pg = -(advantages.detach() * mean_logp).mean(dim=-1).mean()  # -(1/K) sum_k, then mean over B
    ent = entropy(logits).mean()
    loss = pg - entropy_coef * ent if entropy_coef else pg
    stats = {
        "loss/pg": pg.detach(),
        "policy/entropy": ent.detach(),
        "policy/keep_prob": torch.sigmoid(logits.detach()).mean(),
    }
    return loss, stats
