"""The dataclasses that travel through one training step.

One step flows one way:

    VideoBatch --encode--> VisualTokens --state--> [B, T, N, 2D] --policy--> logits [B, T*N]
      --sample K masks--> Rollout(masks) --frozen MLLM--> Rollout(ce) --rewards--> --advantage--> --loss-->

Shapes use: B samples, K rollouts per sample (the RL group), F frames, T temporal units
(Qwen2/2.5-VL: one temporal patch = 2 frames), N visual tokens per unit after the projector
(merged grid rows x cols), D the LLM width, C answer options per sample.
Every tensor field has its shape in a comment; the group axis stays explicit as [B, K].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor


@dataclass
class VideoBatch:
    """What a DataModule yields: raw frames and text; the MLLM adapter does all model-specific processing."""

    ids: list[str]  # [B] stable sample ids: the key of the baseline-CE cache
    frames: Tensor | None  # [B', F, 3, H, W] uint8 RGB of the rows not in `features` (B' = B without a feature cache)
    questions: list[str]  # [B]
    answers: list[str]  # [B] the reference answer text (teacher-forced for CE)
    options: list[list[str]]  # [B][C] candidate answers; accuracy = argmax over their first-token logits
    answer_index: Tensor  # [B] long, index of `answers[b]` in `options[b]`; -1 = open-ended (no accuracy)
    # [B] seconds between sampled frames, for time-scaled M-RoPE (Qwen2.5-VL); None -> config. A list, not a
    # tensor: precision plugins (bf16-mixed under DeepSpeed) cast float tensors of a batch, and positions must not round.
    seconds_per_frame: list[float] | None = None
    features: list[dict | None] | None = (
        None  # [B] cached projector output per row (score_lit.data.feature_cache); None = encode
    )
    prompts: Any = None  # the tokenized text (score_lit.mllm.sequence.PromptBatch) when the collate built it, else None
    skipped: list[Any] = field(
        default_factory=list
    )  # data.common.Problem for each bad sample skipped to fill this batch

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class VisualTokens:
    """Frozen projector output for a batch of equally-shaped videos (no grad)."""

    tokens: Tensor  # [B, T, N, D] projector output, raster order (row-major over the merged grid) per unit
    grid: tuple[int, int, int]  # (T, H', W'): temporal units, merged rows, merged cols; N = H' * W'
    positions: Tensor  # [B, 3, T*N] long, M-RoPE (t, h, w) ids of the full grid relative to the video start (Qwen);
    #                    [B, 1, T*N] 1-D offsets from the video start for 1-D RoPE models (LLaVA-OneVision);
    #                    [B, 3, T*N] (0, r, c) per unit for Qwen3-VL / Qwen3.5 (each unit its own t=1 grid)
    # [B, S, T*N, D] DeepStack features (Qwen3-VL): S vision-layer features that the LLM adds to each visual
    # token's hidden state after its decoder layers 0..S-1; a pruned row carries those of its kept tokens. None
    # for families without DeepStack.
    deepstack: Tensor | None = None

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def flat(self) -> Tensor:
        """[B, T*N, D] view of the tokens in sequence order."""
        b, t, n, d = self.tokens.shape
        return self.tokens.reshape(b, t * n, d)


@dataclass
class Selection:
    """What a compressor (score_lit.compressors) returns for a batch at one retention ratio."""

    keep: Tensor  # [B, T*N] bool: True = this visual token goes to the LLM (at its original position)
    # [B, T*N, D] values fed at the kept slots, for methods that MERGE tokens (pooling, VisionZip's
    # contextual tokens, DyCoke): a kept slot carries the merge of the tokens it represents, at the
    # representative's position. None = the original projector output.
    tokens: Tensor | None = None


@dataclass
class LLMScores:
    """What the frozen LLM says about B x K (text + kept visual tokens) sequences, from one padded batch."""

    ce: Tensor  # [B, K] teacher-forced cross-entropy of the answer tokens (mean over answer tokens), nats
    option_logits: Tensor  # [B, K, C] logits of each option's first token at the first answer position


@dataclass
class Rollout:
    """One RL group per sample: K sampled keep masks and what the frozen MLLM made of them."""

    masks: Tensor  # [B, K, T*N] bool, m^(k): True = keep
    ce: Tensor  # [B, K] CE_k of the answer with the kept tokens
    ce_base: Tensor  # [B] CE_base of the answer with all tokens (cached per sample id)
    budgets: Tensor | None = (
        None  # [B, K] keep fraction each rollout was drawn for (rl.sampler=budget); None = Bernoulli
    )
    fidelity: Tensor | None = None  # [B, K] f_k = -(CE_k - CE_base)
    sparsity: Tensor | None = None  # [B, K] s_k = 1 - keep_fraction(m^(k))
    advantages: Tensor | None = None  # [B, K] A_k from the configured estimator
    extras: dict[str, Any] = field(default_factory=dict)  # estimator-specific diagnostics (e.g. gate [B, K])

    @property
    def dce(self) -> Tensor:
        """[B, K] dCE_k = CE_k - CE_base."""
        return self.ce - self.ce_base.unsqueeze(-1)

    @property
    def keep_fraction(self) -> Tensor:
        """[B, K] share of visual tokens each mask keeps."""
        return self.masks.float().mean(dim=-1)
