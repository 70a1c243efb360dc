"""Rollout samplers (score_lit.rl.samplers): the budget shift by hand, the exact gradient of the budget policy's
log-probability against finite differences, and the Bernoulli sampler unchanged."""

import math

import pytest
import torch

from score_lit.config import ConfigError, RLConfig
from score_lit.rl.policy import log_prob, sample_masks
from score_lit.rl.samplers import budget_shift, rollout_log_prob, sample_rollouts


def test_budget_shift_by_hand():
    # Equal logits: sum_i sigmoid(0 + c) = rho L  <=>  sigmoid(c) = rho  <=>  c = log(rho / (1 - rho)).
    c = budget_shift(torch.zeros(1, 8), torch.tensor([[0.25, 0.5]]))
    assert c[0, 0].item() == pytest.approx(math.log(0.25 / 0.75), abs=1e-6) and c[0, 1].item() == pytest.approx(
        0.0, abs=1e-6
    )
    # Logits 1, -1 and rho = 1/2: sigmoid(1 + c) + sigmoid(-1 + c) = 1 holds at c = 0 (sigmoid(x) + sigmoid(-x) = 1).
    assert budget_shift(torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5]])).item() == pytest.approx(0.0, abs=1e-6)
    # Any logits: the shifted probabilities sum to rho L, and a common shift of the logits is absorbed by c.
    lg = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 3
    rho = torch.tensor([[0.05, 0.1], [0.15, 0.25], [0.5, 0.9]])
    c = budget_shift(lg, rho)
    torch.testing.assert_close(torch.sigmoid(lg[:, None] + c[..., None]).sum(-1), rho * 50, rtol=0, atol=1e-5)
    torch.testing.assert_close(budget_shift(lg + 7.0, rho), c - 7.0, rtol=0, atol=1e-5)


def exact_log_prob(lg: torch.Tensor, m: torch.Tensor, rho: float) -> float:
    """log pi(m | l, rho) of the budget policy in float64, c solved afresh for these logits."""
    c = budget_shift(lg[None].double(), torch.tensor([[rho]], dtype=torch.float64))[0, 0]
    x = lg.double() + c
    return float((m * torch.nn.functional.logsigmoid(x) + (1 - m) * torch.nn.functional.logsigmoid(-x)).sum())


def test_the_budget_log_prob_has_the_exact_gradient_of_the_composite_policy():
    # d log pi / d l_j, c = c(l, rho) included, by central differences vs autograd of rollout_log_prob.
    lg = torch.tensor([1.5, -0.5, 0.3, -2.0, 0.8], dtype=torch.float64)
    m = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    rho = 0.3
    x = lg.clone().requires_grad_(True)
    rollout_log_prob(x[None], m.bool()[None, None], torch.tensor([[rho]], dtype=torch.float64)).sum().backward()
    h = 1e-5
    fd = torch.tensor(
        [
            (exact_log_prob(lg + h * e, m, rho) - exact_log_prob(lg - h * e, m, rho)) / (2 * h)
            for e in torch.eye(5, dtype=torch.float64)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(x.grad, fd, rtol=0, atol=1e-6)
    assert abs(float(x.grad.sum())) < 1e-9  # a common shift of the logits changes nothing: only the ranking trains
    # ... while holding c fixed (the naive estimator) would push every logit: its gradient does not sum to 0
    c = budget_shift(lg[None], torch.tensor([[rho]], dtype=torch.float64))[0, 0]
    naive = m - torch.sigmoid(lg + c)
    assert abs(float(naive.sum())) > 0.1 and not torch.allclose(naive, fd, atol=1e-3)


def test_budget_rollouts_keep_their_budget_on_average():
    lg = torch.randn(2, 400, generator=torch.Generator().manual_seed(1)) * 2
    masks, budgets = sample_rollouts("budget", lg, 64, torch.Generator().manual_seed(2), [0.05, 0.25])
    assert (
        masks.shape == (2, 64, 400)
        and budgets.shape == (2, 64)
        and {round(b, 6) for b in budgets.unique().tolist()} == {0.05, 0.25}
    )
    frac = masks.float().mean(-1)
    for rho in (0.05, 0.25):  # Bernoulli noise of a mean over 400 tokens: std <= sqrt(0.25 * 0.75 / 400) = 0.022
        assert abs(float(frac[(budgets - rho).abs() < 1e-6].mean()) - rho) < 0.01
    # the tokens kept are the high-logit ones: the kept share of the top-20 tokens is far above the budget's
    top = lg.argsort(-1, descending=True)[:, :20]
    kept_top = masks.gather(2, top[:, None].expand(-1, 64, -1)).float().mean()
    assert float(kept_top) > 0.5


def test_the_bernoulli_sampler_is_the_papers():
    lg = torch.randn(2, 30, generator=torch.Generator().manual_seed(3))
    masks, budgets = sample_rollouts("bernoulli", lg, 4, torch.Generator().manual_seed(4))
    assert budgets is None and torch.equal(masks, sample_masks(lg, 4, torch.Generator().manual_seed(4)))
    torch.testing.assert_close(rollout_log_prob(lg, masks), log_prob(lg, masks), rtol=0, atol=0)


def test_sampler_names_and_budgets_are_checked_at_load():
    with pytest.raises(ConfigError, match=r"rl.sampler='budgt' is not registered \(did you mean rl.sampler=budget\?\)"):
        RLConfig(sampler="budgt")
    with pytest.raises(ConfigError, match=r"rl.budgets=\[0.1, 1.0\]: give keep fractions strictly between 0 and 1"):
        RLConfig(sampler="budget", budgets=[0.1, 1.0])
