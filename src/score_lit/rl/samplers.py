"""Rollout samplers, registered by name: how the K keep masks of a sample are drawn from the policy's logits,
and the log-probability the policy gradient differentiates.

    masks, budgets = sample_rollouts(name, logits [B, L], K, generator, budgets_choice)   # [B, K, L] bool, [B, K] | None
    logp = rollout_log_prob(logits [B, L], masks [B, K, L], budgets)                          # [B, K, L]

bernoulli (the paper's, the default): m_i ~ Bernoulli(p_i), p_i = sigmoid(l_i), independently per token;
    log pi(m | h) = sum_i m_i log p_i + (1 - m_i) log(1 - p_i); budgets None. Measured on the toy: its rollouts
    drift to keeping about 3% of the tokens while inference keeps the top 5-25% by rank, so the ranking in the
    range evaluation uses is barely trained (docs/RESULTS.md).

budget (ours, not in the paper): rollout k draws a keep budget rho_k uniformly from `choices` (rl.budgets, by
    default the evaluation ratios), and every token of that rollout is shifted by the one c_k that makes the
    expected keep fraction exactly rho_k:

        sum_i sigmoid(l_i + c_k) = rho_k L        (c_k by bisection, to 1e-6 in logit units)
        m_i ~ Bernoulli(q_i),   q_i = sigmoid(l_i + c_k)

    The policy is then pi(m | h, rho) = prod_i Bern(m_i; q_i) with c = c(l, rho) a function of ALL logits. Its
    exact score function, with the implicit derivative dc/dl_j = -w_j, w_j = q_j (1 - q_j) / sum_i q_i (1 - q_i):

        d log pi / d l_j = (m_j - q_j) - w_j sum_i (m_i - q_i)

    `rollout_log_prob` returns log pi with exactly this gradient (c enters as c - sum_j w_j (l_j - stop_grad(l_j)):
    the value of c, the derivative -w). A shift common to every logit changes nothing (sum_j of the gradient is
    0), so training moves only the ranking, which is what inference's top-k reads; and a rollout's kept count
    varies around rho_k L only by Bernoulli noise, so the rewards compare masks of the sizes evaluation uses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from score_lit.config import names
from score_lit.rl.policy import log_prob, sample_masks

Sampler = Callable[[Tensor, int, "torch.Generator | None", "list[float]"], "tuple[Tensor, Tensor | None]"]
SAMPLERS: dict[str, Sampler] = {}


register_sampler = names.registrar(
    SAMPLERS, names.SAMPLERS
)  # @register_sampler("name"): the registry and its torch-free name list


def budget_shift(logits: Tensor, budgets: Tensor, iters: int = 60) -> Tensor:
    """c [B, K]: sum_i sigmoid(logits[b, i] + c[b, k]) = budgets[b, k] * L, by bisection (no grad). logits [B, L],
    budgets [B, K] in (0, 1). The bracket [-(max l) - 40, -(min l) + 40] holds the root for any budget in (0, 1)
    (where every q_i is below 1e-17 / above 1 - 1e-17); 60 halvings leave it to within its width / 2^60."""
    with torch.no_grad():
        lg = logits.detach().double()[:, None, :]  # [B, 1, L]
        target = budgets.double() * logits.shape[-1]  # [B, K]
        lo = (-lg.amax(-1) - 40.0).expand_as(target).clone()
        hi = (-lg.amin(-1) + 40.0).expand_as(target).clone()
        for _ in range(iters):
            mid = (lo + hi) / 2
            above = torch.sigmoid(lg + mid[..., None]).sum(-1) > target  # the sum grows with c
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid)
        return ((lo + hi) / 2).to(logits.dtype)


def shifted_logits(logits: Tensor, budgets: Tensor | None) -> Tensor:
    """[B, K, L] the logits each rollout was sampled from: l (bernoulli, budgets None) or l + c(l, rho) with the
    implicit gradient of c (module docstring)."""
    if budgets is None:
        return logits.unsqueeze(1)
    c = budget_shift(logits, budgets)  # [B, K], no grad
    lg = logits.unsqueeze(1)  # [B, 1, L]
    q = torch.sigmoid(lg.detach() + c[..., None])  # [B, K, L]
    w = q * (1 - q)
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-30)
    c_grad = c - (w * (lg - lg.detach())).sum(-1)  # value c, d c / d l_j = -w_j
    return lg + c_grad[..., None]


def rollout_log_prob(logits: Tensor, masks: Tensor, budgets: Tensor | None = None) -> Tensor:
    """log pi(m^(k) | h) per token [B, K, L] for masks [B, K, L] drawn by the sampler (budgets [B, K] or None:
    the paper's Bernoulli, policy.log_prob)."""
    if budgets is None:
        return log_prob(logits, masks)
    lg = shifted_logits(logits, budgets)
    m = masks.to(lg.dtype)
    return m * F.logsigmoid(lg) + (1.0 - m) * F.logsigmoid(-lg)


@register_sampler("bernoulli")
def bernoulli(
    logits: Tensor, k: int, generator: torch.Generator | None = None, choices: list[float] = ()
) -> tuple[Tensor, None]:
    """m ~ Bernoulli(sigmoid(logits)) per token (policy.sample_masks): masks [B, K, L] bool (no grad), no budgets."""
    return sample_masks(logits, k, generator), None


@register_sampler("budget")
def budget(
    logits: Tensor, k: int, generator: torch.Generator | None = None, choices: list[float] = (0.1,)
) -> tuple[Tensor, Tensor]:
    """Per rollout a budget rho from `choices` (uniform), then m ~ Bernoulli(sigmoid(l + c(l, rho))): masks [B, K, L]
    bool (no grad) and budgets [B, K]."""
    b = logits.shape[0]
    options = torch.tensor(list(choices), dtype=logits.dtype, device=logits.device)
    pick = torch.randint(len(options), (b, k), generator=generator, device=logits.device)
    budgets = options[pick]  # [B, K]
    with torch.no_grad():
        q = torch.sigmoid(shifted_logits(logits.detach(), budgets))  # [B, K, L]
    u = torch.rand(q.shape, generator=generator, device=q.device, dtype=q.dtype)
    return u < q, budgets


def sample_rollouts(
    name: str, logits: Tensor, k: int, generator: torch.Generator | None = None, choices: list[float] = ()
):
    """Dispatch by name (rl.sampler): (masks [B, K, L] bool, budgets [B, K] or None)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown rl.sampler={name!r}; registered: {sorted(SAMPLERS)}")
    return SAMPLERS[name](logits, k, generator, choices)


__all__ = ["SAMPLERS", "register_sampler", "sample_rollouts", "rollout_log_prob", "shifted_logits", "budget_shift"]
