"""Loss, policy helpers, rewards and the surprise state on hand-computed numbers."""

import math

import pytest
import torch

from score_lit.config import PolicyConfig, keep_count
from score_lit.rl.loss import policy_gradient_loss
from score_lit.rl.policy import build_policy, log_prob, sample_masks, stable_topk_mask, topk_mask
from score_lit.rl.rewards import fidelity_reward, sparsity_reward
from score_lit.rl.state import surprise_norm, surprise_state, temporal_residual


def test_loss_value_and_gradient_by_hand():
    # p = [0.75, 0.5]; masks [1,0] and [0,1]; A = [1, -1]
    logits = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64, requires_grad=True)
    masks = torch.tensor([[[1, 0], [0, 1]]], dtype=torch.bool)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    loss, stats = policy_gradient_loss(logits, masks, adv)
    lp1 = (math.log(0.75) + math.log(0.5)) / 2
    lp2 = (math.log(0.25) + math.log(0.5)) / 2
    assert loss.item() == pytest.approx(-(1 * lp1 - 1 * lp2) / 2, abs=1e-12)
    loss.backward()
    # d/dlogit of mean log pi = (m - p) / L; dL/dlogit_j = -(1/K) sum_k A_k (m_kj - p_j) / L
    torch.testing.assert_close(logits.grad, torch.tensor([[-0.25, 0.25]], dtype=torch.float64))
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))  # noqa: E731
    assert stats["policy/entropy"].item() == pytest.approx((h(0.75) + h(0.5)) / 2, abs=1e-12)


def test_entropy_bonus_lowers_the_loss():
    logits = torch.zeros(1, 3)
    masks = torch.ones(1, 2, 3, dtype=torch.bool)
    adv = torch.zeros(1, 2)
    loss, _ = policy_gradient_loss(logits, masks, adv, entropy_coef=0.5)
    assert loss.item() == pytest.approx(-0.5 * math.log(2.0), abs=1e-6)


def test_log_prob_of_bernoulli():
    lp = log_prob(torch.tensor([[0.0, math.log(4.0)]]), torch.tensor([[[True, False]]]))
    torch.testing.assert_close(lp, torch.tensor([[[math.log(0.5), math.log(0.2)]]]))


def test_rewards_by_hand():
    torch.testing.assert_close(
        fidelity_reward(torch.tensor([[1.5, 2.0]]), torch.tensor([1.0])), torch.tensor([[-0.5, -1.0]])
    )
    masks = torch.tensor([[[1, 1, 0, 0], [1, 0, 0, 0]]], dtype=torch.bool)
    torch.testing.assert_close(sparsity_reward(masks), torch.tensor([[0.5, 0.75]]))


def test_policy_starts_near_init_keep_prob_and_samples_it():
    torch.manual_seed(0)
    pol = build_policy(8, PolicyConfig(name="mlp", hidden=16, init_keep_prob=0.3))
    logits = pol(torch.randn(2, 4, 5, 8))
    assert logits.shape == (2, 20)
    assert torch.sigmoid(logits).mean().item() == pytest.approx(0.3, abs=0.01)
    masks = sample_masks(logits, 64, torch.Generator().manual_seed(1))
    assert masks.shape == (2, 64, 20) and masks.dtype == torch.bool
    assert masks.float().mean().item() == pytest.approx(0.3, abs=0.03)


def test_topk_global_and_per_frame():
    s = torch.tensor([[0.1, 0.9, 0.8, 0.2]])
    assert topk_mask(s, 0.5).tolist() == [[False, True, True, False]]
    # grid (T=2, 1, 2): one token per temporal unit at r = 0.5
    assert topk_mask(s, 0.5, (2, 1, 2), per_frame=True).tolist() == [[False, True, True, False]]
    s2 = torch.tensor([[0.9, 0.8, 0.1, 0.2]])
    assert topk_mask(s2, 0.5).tolist() == [[True, True, False, False]]
    assert topk_mask(s2, 0.5, (2, 1, 2), per_frame=True).tolist() == [[True, False, False, True]]


def test_every_method_breaks_ties_to_the_earlier_token():
    # Equal scores: k = 2 of [0.5, 0.7, 0.5, 0.5] keeps 0.7 and the FIRST 0.5 (index 0), globally and per unit.
    s = torch.tensor([[0.5, 0.7, 0.5, 0.5]])
    assert stable_topk_mask(s, 2).tolist() == [[True, True, False, False]]
    assert topk_mask(s, 0.5).tolist() == [[True, True, False, False]]
    assert topk_mask(torch.zeros(1, 4), 0.5, (2, 1, 2), per_frame=True).tolist() == [[True, False, True, False]]


def test_keep_count_is_ceil_and_rejects_bad_ratios():
    assert keep_count(0.1, 128) == 13 and keep_count(0.25, 128) == 32 and keep_count(1.0, 7) == 7
    assert keep_count(0.001, 10) == 1
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="outside \\(0, 1\\]"):
            keep_count(bad, 10)


def test_surprise_state_by_hand():
    # T=3, N=1, D=2
    x = torch.tensor([[[1.0, 3.0]], [[1.0, 3.0]], [[4.0, 0.0]]])
    dx = temporal_residual(x)
    torch.testing.assert_close(dx, torch.tensor([[[1.0, 3.0]], [[0.0, 0.0]], [[3.0, -3.0]]]))
    torch.testing.assert_close(surprise_norm(x), torch.tensor([[math.sqrt(10)], [0.0], [math.sqrt(18)]]))
    h = surprise_state(x)
    assert h.shape == (3, 1, 4)
    # LN of [a, b] without affine is [-1, 1] or [1, -1] (up to eps); LN of [0, 0] is [0, 0]
    torch.testing.assert_close(h[0, 0], torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(h[1, 0], torch.tensor([-1.0, 1.0, 0.0, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(h[2, 0], torch.tensor([1.0, -1.0, 1.0, -1.0]), atol=1e-4, rtol=0)


def test_query_policy_starts_as_the_mlp_and_needs_its_question():
    from score_lit.config import PolicyConfig
    from score_lit.rl.policy import MLPPolicy, QueryPolicy

    cfg = PolicyConfig(name="query_mlp", hidden=8)
    torch.manual_seed(0)
    q, m = QueryPolicy(12, cfg), MLPPolicy(12, PolicyConfig(name="mlp", hidden=8))
    with torch.no_grad():  # the same first and last layers
        m.net[0].weight.copy_(q.first.weight), m.net[0].bias.copy_(q.first.bias)
        m.net[2].weight.copy_(q.last.weight), m.net[2].bias.copy_(q.last.bias)
        q.last.weight.normal_()  # a visible last layer, so equality is not 0 == 0
        m.net[2].weight.copy_(q.last.weight)
    state = torch.randn(2, 3, 4, 12)
    for question in (torch.zeros(2, 6), torch.randn(2, 6)):  # FiLM starts at gamma = 1, beta = 0: any question
        torch.testing.assert_close(q(state, question), m(state), rtol=0, atol=1e-6)
    assert q(state, torch.randn(2, 6)).shape == (2, 12) and q.needs_question and not m.needs_question
    with pytest.raises(ValueError, match="policy 'query_mlp' is conditioned on the question: pass question="):
        q(state)


def test_temporal_policy_starts_as_the_mlp_and_sees_only_its_temporal_neighbours():
    from score_lit.compressors.flops import policy_flops, temporal_policy_flops
    from score_lit.config import PolicyConfig
    from score_lit.rl.policy import MLPPolicy, TemporalPolicy

    torch.manual_seed(0)
    tp, m = (
        TemporalPolicy(12, PolicyConfig(name="temporal_mlp", hidden=8)),
        MLPPolicy(12, PolicyConfig(name="mlp", hidden=8)),
    )
    with torch.no_grad():  # the same first and last layers; a visible last layer, so equality is not 0 == 0
        tp.last.weight.normal_()
        m.net[0].weight.copy_(tp.first.weight), m.net[0].bias.copy_(tp.first.bias)
        m.net[2].weight.copy_(tp.last.weight), m.net[2].bias.copy_(tp.last.bias)
    state = torch.randn(2, 5, 4, 12)  # B=2, T=5, N=4
    torch.testing.assert_close(tp(state), m(state), rtol=0, atol=1e-6)  # the convolution starts at zero
    with torch.no_grad():
        tp.temporal.weight.normal_()
    bumped = state.clone()
    bumped[1, 2, 3] += 1.0  # video 1, unit 2, position 3
    changed = (tp(bumped) != tp(state)).reshape(2, 5, 4).nonzero().tolist()
    assert changed == [[1, 1, 3], [1, 2, 3], [1, 3, 3]]  # kernel 3: units 1..3 at the same position, nothing else
    # FLOPs by hand: T=5, N=4, D=6 (state width 12), h=8, V=20: policy_flops + V h (2*3 + 2) = ... + 20*8*8
    assert temporal_policy_flops(5, 4, 6, 8) - policy_flops(5, 4, 6, 8) == 1280


def test_question_embedding_is_the_mean_of_the_question_token_embeddings():
    from score_lit.config import MLLMConfig
    from score_lit.mllm import build_mllm
    from score_lit.types import VideoBatch

    a = build_mllm(MLLMConfig())
    batch = VideoBatch(
        ids=["x", "y"],
        frames=None,
        questions=["what color is the ball ?", ""],
        answers=["red", "A"],
        options=[[], []],
        answer_index=torch.tensor([-1, -1]),
    )
    prompts = a.tokenize(batch)
    ids = a.tokenizer("what color is the ball ?", add_special_tokens=False)["input_ids"]
    assert prompts.question_ids == [ids, []] and len(ids) == 6
    e = a.question_embedding(prompts)
    torch.testing.assert_close(e[0], a.model.get_input_embeddings().weight[ids].mean(0), rtol=0, atol=0)
    assert e.shape == (2, a.hidden_size) and not e[1].any()  # an empty question: zeros
