"""The frozen video-MLLM adapter protocol: everything the RL loop asks of a multimodal LLM.

A training step touches the frozen model twice (../docs/METHOD.md, "Training step"):

    encode(batch)            -> VisualTokens      vision tower + projector, once per batch
    tokenize(batch)          -> PromptBatch        text around the video, answer span, option ids
    score(visual, prompts, masks [B, K, T*N]) -> LLMScores   all B*K rollouts in ONE padded LLM batch

An adapter wraps a loaded Hugging Face model instance (it never patches transformers classes), keeps
it frozen (`requires_grad_(False)`, `eval()`), and follows the model's device: after
`adapter.model.to(device)` every call puts its inputs there. The frozen model is not part of the
policy's parameters, optimizer or checkpoints; `identity()` is what a policy checkpoint records so
that loading it next to a different MLLM can be refused.

Contract of `score` (what makes pruning faithful): each row is pre-text + the kept visual tokens in
their original order + post-text; every kept token carries the position id it has in the FULL,
unpruned sequence, so dropping tokens never shifts the text's positions relative to training.
Rows are right-padded with a 2-D attention mask. CE is the mean teacher-forced cross-entropy over
the answer tokens only; option logits are read at the position that predicts the first answer token.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from score_lit.types import LLMScores, VideoBatch, VisualTokens


@runtime_checkable
class VideoMLLM(Protocol):
    """A frozen video MLLM behind the three calls of a training step. Implementations: score_lit.mllm.qwen_vl, score_lit.mllm.llava_onevision."""

    family: str  # registry name, e.g. "qwen2_5_vl"
    hidden_size: int  # D, the LLM width = the visual tokens' width
    model: nn.Module  # the frozen Hugging Face model (requires_grad False, eval mode)

    def identity(self) -> dict[str, Any]:
        """{'family', 'hidden_size', 'path'} ('path' = checkpoint dir or 'tiny-random'): stored with a policy."""
        ...

    def encode(self, batch: VideoBatch) -> VisualTokens:
        """No grad. frames [B, F, 3, H, W] uint8 (all videos one shape) -> tokens [B, T, N, D] and the
        full-grid position ids relative to the video start ([B, 3, T*N] M-RoPE, or [B, 1, T*N] for 1-D RoPE)."""
        ...

    def tokenize(self, batch: VideoBatch) -> Any:
        """Text of the batch -> an adapter-defined PromptBatch (opaque to callers; pass it to `score`)."""
        ...

    def score(self, visual: VisualTokens, prompts: Any, masks: Tensor) -> LLMScores:
        """No grad. masks [B, K, T*N] bool (True = keep) -> ce [B, K], option_logits [B, K, C],
        from one padded LLM batch of B*K rows."""
        ...
