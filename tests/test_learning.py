"""The RL step learns: a few real training steps (ScoreModule under a real Lightning Trainer) against a stub
frozen model whose answer CE rises when marked evidence tokens are dropped must raise the policy's keep
probability of exactly those tokens. The smoke fit (tests/test_smoke_fit.py) only shows that parameters change;
this shows that they change the right way: rollouts, rewards, the split estimator and the loss together, with
each rollout sampler (score_lit.rl.samplers).

The stub stands in for the frozen MLLM of this test only (no user runs it): 16 tokens per video, 4 of them
evidence; every token's first feature says which (+2 evidence, -2 other, plus noise), so the policy can see it;
CE = 1 + 3 x (share of the evidence tokens dropped).
"""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from score_lit.config import Config, PolicyConfig
from score_lit.rl.state import surprise_state
from score_lit.training.module import ScoreModule
from score_lit.types import LLMScores, VideoBatch, VisualTokens

T, N, D = 4, 4, 8  # temporal units, tokens per unit, width
EVIDENCE = 4


def evidence_of(sample_id: str) -> torch.Tensor:
    """[T*N] bool: which tokens of this sample carry the answer (fixed per sample, random across samples)."""
    g = torch.Generator().manual_seed(int(sample_id[1:]))
    return torch.zeros(T * N, dtype=torch.bool).index_fill(0, torch.randperm(T * N, generator=g)[:EVIDENCE], True)


class EvidenceStub:
    """The three calls of a training step, nothing else (score_lit.mllm.adapter.VideoMLLM's contract)."""

    family, hidden_size = "stub", D

    def __init__(self):
        self.model = torch.nn.Linear(1, 1).requires_grad_(False)  # ScoreModule registers it for device moves

    def identity(self):
        return {"family": self.family, "hidden_size": D, "path": "stub"}

    def encode(self, batch: VideoBatch) -> VisualTokens:
        rows = []
        for i in batch.ids:
            g = torch.Generator().manual_seed(1000 + int(i[1:]))
            x = torch.randn(T * N, D, generator=g)
            x[:, 0] = torch.where(evidence_of(i), 2.0, -2.0) + 0.3 * x[:, 0]
            rows.append(x.view(T, N, D))
        positions = torch.arange(T * N).expand(len(batch.ids), 1, -1)
        return VisualTokens(tokens=torch.stack(rows), grid=(T, 2, 2), positions=positions)

    def tokenize(self, batch: VideoBatch):
        return list(batch.ids)

    def score(self, visual: VisualTokens, prompts, masks: torch.Tensor) -> LLMScores:
        ev = torch.stack([evidence_of(i) for i in prompts])[:, None]  # [B, 1, V]
        dropped = (ev & ~masks).sum(-1).float() / EVIDENCE  # [B, K]
        return LLMScores(ce=1.0 + 3.0 * dropped, option_logits=torch.zeros(*masks.shape[:2], 0))


def batches(n: int, size: int = 4) -> list[VideoBatch]:
    out = []
    for s in range(n):
        ids = [f"s{s * size + j}" for j in range(size)]
        out.append(
            VideoBatch(
                ids=ids,
                frames=None,
                questions=["q"] * size,
                answers=["a"] * size,
                options=[[]] * size,
                answer_index=torch.full((size,), -1),
            )
        )
    return out


def keep_probability(module: ScoreModule, stub: EvidenceStub, data: list[VideoBatch]) -> tuple[float, float, float]:
    """On held-out samples: mean keep probability of the evidence tokens, of the others, and the share of evidence
    tokens among each video's top-4 logits (what inference's top-k at 4 of 16 tokens would keep)."""
    ev, other, top = [], [], []
    with torch.no_grad():
        for b in data:
            logits = module.policy(surprise_state(stub.encode(b).tokens))  # [B, T*N]
            p = torch.sigmoid(logits)
            m = torch.stack([evidence_of(i) for i in b.ids])
            ev.append(p[m])
            other.append(p[~m])
            top.append(m.gather(1, logits.topk(EVIDENCE, dim=-1).indices).float())
    return float(torch.cat(ev).mean()), float(torch.cat(other).mean()), float(torch.cat(top).mean())


@pytest.mark.parametrize("sampler", ["bernoulli", "budget"])
def test_a_few_real_training_steps_raise_the_keep_probability_of_the_evidence_tokens(sampler):
    torch.manual_seed(0)
    cfg = Config()
    cfg.policy = PolicyConfig(name="mlp", hidden=256)  # the paper's policy: the evidence here needs no question
    cfg.rl.group_size, cfg.rl.sparsity_weight = 8, 1.0
    cfg.rl.sampler, cfg.rl.budgets = sampler, [0.25, 0.5]
    cfg.optim.lr = 3e-3
    stub = EvidenceStub()
    module = ScoreModule(cfg, stub)
    held_out = batches(4)[2:]  # ids s8..s15: never trained on
    ev0, other0, top0 = keep_probability(module, stub, held_out)
    trainer = L.Trainer(
        max_steps=40,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    train = DataLoader(batches(20)[4:], batch_size=None, collate_fn=lambda b: b)  # ids s16..: 16 batches per epoch
    trainer.fit(module, train_dataloaders=train)
    ev1, other1, top1 = keep_probability(module, stub, held_out)
    print(
        f"\n{sampler}: keep probability: evidence {ev0:.3f} -> {ev1:.3f}, others {other0:.3f} -> {other1:.3f}; "
        f"evidence share of the top-4: {top0:.2f} -> {top1:.2f}"
    )
    assert trainer.global_step == 40
    assert top0 < 0.5 and top1 > 0.9  # the ranking inference reads puts the evidence first
    if sampler == "bernoulli":
        assert ev1 > ev0 + 0.1  # the evidence tokens are kept more ...
        assert ev1 - other1 > ev0 - other0 + 0.2  # ... and told apart from the rest


# ------------------------------------------------------------------------------------------------
# Query dependence: half the tokens are of class A, half of class B (the second feature says which); the question
# asks for one class, and only the asked class's tokens are evidence. A question-blind policy cannot tell which half
# to keep; the question-conditioned one (policy.name=query_mlp) can.


def asked_class(sample_id: str) -> int:
    return int(sample_id[1:]) % 2


def classes_of(sample_id: str) -> torch.Tensor:
    """[T*N] long in {0, 1}: 8 tokens of each class, in a per-sample random order."""
    g = torch.Generator().manual_seed(500 + int(sample_id[1:]))
    return (torch.randperm(T * N, generator=g) % 2).long()


class QueryStub(EvidenceStub):
    def encode(self, batch: VideoBatch) -> VisualTokens:
        rows = []
        for i in batch.ids:
            g = torch.Generator().manual_seed(1000 + int(i[1:]))
            x = torch.randn(T * N, D, generator=g) * 0.3
            x[:, 1] += torch.where(classes_of(i) == 1, 2.0, -2.0)
            rows.append(x.view(T, N, D))
        positions = torch.arange(T * N).expand(len(batch.ids), 1, -1)
        return VisualTokens(tokens=torch.stack(rows), grid=(T, 2, 2), positions=positions)

    def question_embedding(self, prompts) -> torch.Tensor:
        q = torch.zeros(len(prompts), D)
        q[:, 0] = torch.tensor([2.0 * asked_class(i) - 1.0 for i in prompts])  # +1 asks class 1, -1 class 0
        return q

    def score(self, visual: VisualTokens, prompts, masks: torch.Tensor) -> LLMScores:
        ev = torch.stack([classes_of(i) == asked_class(i) for i in prompts])[:, None]  # [B, 1, V]: 8 evidence tokens
        dropped = (ev & ~masks).sum(-1).float() / ev.sum(-1)
        return LLMScores(ce=1.0 + 3.0 * dropped, option_logits=torch.zeros(*masks.shape[:2], 0))


@pytest.mark.parametrize("policy", ["mlp", "query_mlp"])
def test_only_the_question_conditioned_policy_learns_query_dependent_evidence(policy):
    torch.manual_seed(0)
    cfg = Config()
    cfg.policy = PolicyConfig(name=policy, hidden=256)
    cfg.rl.sampler, cfg.rl.sparsity_weight = "bernoulli", 1.0  # the same training for both: only the policy differs
    cfg.optim.lr = 3e-3
    stub = QueryStub()
    module = ScoreModule(cfg, stub)
    trainer = L.Trainer(
        max_steps=60,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches(20)[4:], batch_size=None, collate_fn=lambda b: b))
    share = []  # held-out: the asked class's share of each video's top-8 logits (8 = the evidence count)
    with torch.no_grad():
        for b in batches(4)[2:]:
            logits = module.policy(surprise_state(stub.encode(b).tokens), module._question(b.ids))
            ev = torch.stack([classes_of(i) == asked_class(i) for i in b.ids])
            share.append(ev.gather(1, logits.topk(8, dim=-1).indices).float())
    share = float(torch.cat(share).mean())
    print(f"\n{policy}: the asked class's share of the top-8 on held-out videos: {share:.2f}")
    if policy == "mlp":
        assert 0.3 < share < 0.7  # question-blind: about half, whatever it learns
    else:
        assert share > 0.9
