"""The compressor: a token-wise network p_{t,i} = P(keep | h_{t,i}), registered by name.

Paper: "Policy Model (MLP)" followed by a sigmoid, applied to every token's state h in R^{2D}
independently. Training samples Bernoulli masks from p; inference keeps the top-k tokens by p with
k = ceil(r * T * N), globally over the video (default) or per temporal unit (`per_frame`).

Choices the paper leaves open (docs/METHOD.md): hidden 32 by default (256 in the paper's recipe here,
conf/recipe/paper.yaml), GELU, output bias initialised to logit(init_keep_prob) so that the first rollouts keep
about half the tokens. The default policy is query_mlp (ours), not the paper's mlp (score_lit.config.training).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from score_lit.config import PolicyConfig, keep_count, names

POLICIES: dict[str, Callable[[int, PolicyConfig], nn.Module]] = {}


register_policy = names.registrar(
    POLICIES, names.POLICIES
)  # @register_policy("name"): the registry and its torch-free name list


def build_policy(in_dim: int, cfg: PolicyConfig) -> nn.Module:
    """in_dim is the state width 2D."""
    if cfg.name not in POLICIES:
        raise ValueError(f"unknown policy.name={cfg.name!r}; registered: {sorted(POLICIES)}")
    return POLICIES[cfg.name](in_dim, cfg)


ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _activation(cfg: PolicyConfig) -> type[nn.Module]:
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"unknown policy.activation={cfg.activation!r}; use one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[cfg.activation]


def _last_layer(cfg: PolicyConfig) -> nn.Linear:
    """hidden -> 1 logit, near-zero weights and the bias at logit(init_keep_prob): every policy starts by keeping
    each token with probability init_keep_prob, whatever its state."""
    last = nn.Linear(cfg.hidden, 1)
    nn.init.normal_(last.weight, std=1e-3)
    nn.init.constant_(last.bias, math.log(cfg.init_keep_prob / (1.0 - cfg.init_keep_prob)))
    return last


@register_policy("mlp")
class MLPPolicy(nn.Module):
    """2D -> hidden -> 1 logit per token. state [B, T, N, 2D] -> logits [B, T*N]. The paper's policy: it never sees
    the question (`question` is accepted and ignored, so every policy is called the same way)."""

    needs_question = False

    def __init__(self, in_dim: int, cfg: PolicyConfig):
        super().__init__()
        self.in_dim = in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, cfg.hidden), _activation(cfg)(), _last_layer(cfg))

    def forward(self, state: Tensor, question: Tensor | None = None) -> Tensor:
        b = state.shape[0]
        return self.net(state).reshape(b, -1)


@register_policy("query_mlp")
class QueryPolicy(nn.Module):
    """The MLP policy conditioned on the question by FiLM (ours; the paper names query-adaptive pruning as future
    work): h = W1 state; [gamma; beta] = 1 + W_q LN(q), W_q q; logit = w2 . act(gamma * h + beta) + b2.

    state [B, T, N, 2D], question [B, D] (the mean of the question's input embeddings in the frozen LLM,
    VideoMLLM.question_embedding) -> logits [B, T*N]. W_q starts at zero, so an untrained QueryPolicy is the
    MLPPolicy of the same first and last layers for every question. Cost beyond the MLP: one D x 2h product per
    question and 2 multiply-adds per token and hidden unit."""

    needs_question = True

    def __init__(self, in_dim: int, cfg: PolicyConfig):
        super().__init__()
        self.in_dim, self.hidden = in_dim, cfg.hidden
        self.first = nn.Linear(in_dim, cfg.hidden)
        self.q_norm = nn.LayerNorm(in_dim // 2)
        self.film = nn.Linear(in_dim // 2, 2 * cfg.hidden)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.act = _activation(cfg)()
        self.last = _last_layer(cfg)

    def forward(self, state: Tensor, question: Tensor | None = None) -> Tensor:
        if question is None:
            raise ValueError(
                "policy 'query_mlp' is conditioned on the question: pass question=mllm.question_embedding(prompts) "
                "(score_lit train, eval and the lmms-eval classes do)"
            )
        b = state.shape[0]
        gamma, beta = self.film(self.q_norm(question.to(state.dtype))).chunk(2, dim=-1)  # [B, h] each
        h = self.first(state).reshape(b, -1, self.hidden)  # [B, T*N, h]
        return self.last(self.act((1 + gamma[:, None]) * h + beta[:, None])).reshape(b, -1)


@register_policy("temporal_mlp")
class TemporalPolicy(nn.Module):
    """The MLP policy whose hidden units also see the same spatial position in the neighbouring temporal units
    (ours; the ablation's "small temporal variant", docs/RESULTS.md): h = W1 state [B, T, N, h]; h' = h + dwconv_T(h), a depthwise 1-D
    convolution over T (kernel `TEMPORAL_KERNEL`, zero padding) at every spatial position and hidden unit;
    logit = w2 . act(h') + b2.

    Why: a token's own surprise says how much it changed, not whether its content persists (keeping every copy of
    a persisting object wastes the budget) or is about to leave. The convolution starts at zero, so an untrained
    TemporalPolicy is the MLPPolicy of the same first and last layers. Cost beyond the MLP: per token and hidden
    unit, `TEMPORAL_KERNEL` multiply-adds, the bias and the residual add."""

    needs_question = False
    TEMPORAL_KERNEL = 3

    def __init__(self, in_dim: int, cfg: PolicyConfig):
        super().__init__()
        self.in_dim, self.hidden = in_dim, cfg.hidden
        self.first = nn.Linear(in_dim, cfg.hidden)
        k = self.TEMPORAL_KERNEL
        self.temporal = nn.Conv1d(cfg.hidden, cfg.hidden, k, padding=k // 2, groups=cfg.hidden)
        nn.init.zeros_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)
        self.act = _activation(cfg)()
        self.last = _last_layer(cfg)

    def forward(self, state: Tensor, question: Tensor | None = None) -> Tensor:
        b, t, n, _ = state.shape
        h = self.first(state)  # [B, T, N, h]
        seq = h.permute(0, 2, 3, 1).reshape(b * n, self.hidden, t)  # [B*N, h, T]: one sequence per spatial position
        h = h + self.temporal(seq).reshape(b, n, self.hidden, t).permute(0, 3, 1, 2)  # [B, T, N, h]
        return self.last(self.act(h)).reshape(b, -1)


# ---- pure functions of the logits -----------------------------------------------------------------


def sample_masks(logits: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """m^(k) ~ Bernoulli(sigmoid(logits)). logits [B, L] -> masks [B, K, L] bool (no grad)."""
    p = torch.sigmoid(logits.detach()).unsqueeze(1).expand(-1, k, -1)
    u = torch.rand(p.shape, generator=generator, device=p.device, dtype=p.dtype)
    return u < p


def log_prob(logits: Tensor, masks: Tensor) -> Tensor:
    """log pi(m | h) = m log p + (1 - m) log(1 - p), per token. logits [B, L], masks [B, K, L] -> [B, K, L]."""
    lg = logits.unsqueeze(1)
    m = masks.to(lg.dtype)
    return m * F.logsigmoid(lg) + (1.0 - m) * F.logsigmoid(-lg)


def entropy(logits: Tensor) -> Tensor:
    """Bernoulli entropy per token, nats. [B, L] -> [B, L]."""
    p = torch.sigmoid(logits)
    return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits))


def stable_topk_mask(scores: Tensor, k: int) -> Tensor:
    """Keep the k highest scores of each row, ties to the earlier index (deterministic, the same for every
    method: the policy, FastV and the rule-based baselines all select through this). [..., L] -> [..., L] bool."""
    order = torch.argsort(scores, dim=-1, descending=True, stable=True)[..., :k]
    return torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, True)


def topk_mask(
    scores: Tensor, ratio: float, grid: tuple[int, int, int] | None = None, per_frame: bool = False
) -> Tensor:
    """Keep the top-k tokens by score, k = ceil(ratio * L). scores [B, L] -> mask [B, L] bool (stable_topk_mask).

    per_frame: k_t = ceil(ratio * N) in every temporal unit (needs grid = (T, H', W'))."""
    b, length = scores.shape
    if per_frame:
        if grid is None:
            raise ValueError("per_frame top-k needs the grid (T, H', W')")
        t = grid[0]
        n = length // t
        return stable_topk_mask(scores.reshape(b, t, n), keep_count(ratio, n)).reshape(b, length)
    return stable_topk_mask(scores, keep_count(ratio, length))
